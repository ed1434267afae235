"""`rnnkit tune`: measure ``impl="auto"``'s choices for a grid of cases ahead of time and print them.

The command table registers its flags with :func:`register`; :func:`cmd_tune` validates and calls
:func:`rnnkit.commands.tune_grid.tune_grid`, which fills the tuning file (:mod:`rnnkit.kernels.tuning`)
later processes read. (This module imports nothing heavy: building the CLI's parser stays instant.)
"""

from __future__ import annotations

import argparse
import json
import sys

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def register(p: argparse.ArgumentParser) -> None:
    """The flags of ``rnnkit tune`` (the command table calls this on first use)."""
    p.add_argument(
        "--cell",
        nargs="+",
        default=["lstm", "gru", "rnn"],
        help="cells to tune: lstm gru rnn mingru minlstm lstm-layernorm lstm-peephole gru-textbook",
    )
    p.add_argument(
        "--batch",
        dest="batches",
        type=int,
        nargs="+",
        default=[1, 16, 64],
        help="batch sizes (one per power of 2)",
    )
    p.add_argument(
        "--hidden",
        dest="hiddens",
        type=int,
        nargs="+",
        default=[128, 256, 512],
        help="hidden sizes (= input size)",
    )
    p.add_argument(
        "--layers", dest="layer_counts", type=int, nargs="+", default=[1], help="numbers of layers"
    )
    p.add_argument(
        "--mode",
        nargs="+",
        default=["infer", "train"],
        choices=["infer", "train"],
        help="forward only (infer) and/or forward + backward (train)",
    )
    p.add_argument(
        "--dtype", nargs="+", default=["fp32"], choices=sorted(DTYPES), help="parameter/input dtypes"
    )
    p.add_argument("--seq-len", type=int, default=100, help="T of the inputs (at most 32 steps are timed)")
    p.add_argument("--fresh", action="store_true", help="measure again cases the tuning file already has")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_tune)  # fmt: skip


def cmd_tune(args: argparse.Namespace) -> int:
    """Fill the tuning file for the grid; print the table (or one JSON object)."""
    import torch

    from rnnkit.kernels import tuning

    from .tune_grid import table, tune_grid

    for flag, values in (("batch", args.batches), ("hidden", args.hiddens), ("layers", args.layer_counts)):
        if min(values) < 1:  # (dests differ from the flags: cli.main checks single ints by name)
            print(f"rnnkit: error: --{flag} must be >= 1", file=sys.stderr)
            return 2
    if not tuning.enabled():
        print(f"rnnkit: error: measuring is off ({tuning.ENV}=0); unset it to tune", file=sys.stderr)
        return 2
    dtypes = [getattr(torch, DTYPES[d]) for d in dict.fromkeys(args.dtype)]
    quiet = args.json
    rows = tune_grid(
        args.cell, args.batches, args.hiddens, args.layer_counts, args.mode, dtypes, args.seq_len, args.fresh,
        progress=None if quiet else lambda line: print(line, file=sys.stderr, flush=True),
    )  # fmt: skip
    report = {"machine": tuning.machine(), "file": str(tuning.path()), "rows": rows}
    if args.json:
        print(json.dumps(report))
    else:
        m = report["machine"]
        print(f"machine: {m['cpu']} ({m['capability']}), {m['threads']} threads, torch {m['torch']}")
        print(f"tuning file: {report['file']}")
        print(table(rows))
    return 0
