"""`rnnkit tune`: measure ``impl="auto"``'s choices for a grid of cases ahead of time and print them.

The command table registers its flags with :func:`register`; :func:`cmd_tune` validates and calls
:func:`tune_grid`, which fills the tuning file (:mod:`rnnkit.kernels.tuning`) later processes read.
The grid lives here, above the layers, because it builds ``Recurrent`` layers to time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..kernels.dispatch import static_name
from ..kernels.tuning import MAX_STEPS, tune_case  # noqa: F401  (MAX_STEPS: named in a docstring)

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


# -- ahead of time: `rnnkit tune` ------------------------------------------------------------------------

GRID_CELLS = ("lstm", "gru", "rnn", "lstm-layernorm", "gru-textbook", "lstm-peephole", "mingru")


def _grid_layer(name: str, H: int, layers: int) -> torch.nn.Module:
    from ..cells import GRUCell, LSTMCell, registry
    from ..layers import Recurrent

    extra = {
        "lstm-layernorm": lambda: LSTMCell(H, H, layer_norm=True),
        "lstm-peephole": lambda: LSTMCell(H, H, peephole=True),
        "gru-textbook": lambda: GRUCell(H, H, reset_after=False),
    }
    if name not in extra and name not in registry.CELLS:
        raise ValueError(
            f"cell must be one of {', '.join(GRID_CELLS)} (or {', '.join(registry.CELLS)}); got {name!r}"
        )
    cell = extra[name]() if name in extra else registry.build(name, H, H)
    return Recurrent(cell, num_layers=layers)


def tune_grid(
    cells: Sequence[str] = ("lstm", "gru", "rnn"),
    batches: Sequence[int] = (1, 16, 64),
    hiddens: Sequence[int] = (128, 256, 512),
    layers: Sequence[int] = (1,),
    modes: Sequence[str] = ("infer", "train"),
    dtypes: Sequence[torch.dtype] = (torch.float32,),
    seq_len: int = 100,
    fresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Fill the tuning file for a grid of cases (``rnnkit tune``): one row per case with the choice,
    what the static rules would have run (``static``), and each candidate's time (ms, forward or
    forward + backward of ``min(seq_len, MAX_STEPS)`` steps; empty when the case has one candidate).
    Cases already in the file are read back, not measured again, unless ``fresh``."""
    from ..layers.recurrent import run_cell

    for m in modes:
        if m not in ("infer", "train"):
            raise ValueError(f"mode must be 'infer' or 'train', got {m!r}")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, n_layers, H, B, dtype, mode in itertools.product(
        cells, layers, hiddens, batches, dtypes, modes
    ):
        layer = _grid_layer(name, H, n_layers).to(dtype)
        layer.requires_grad_(mode == "train")
        stack = layer.layer_cells()
        x = torch.randn(seq_len, B, H, generator=gen).to(dtype)
        with torch.set_grad_enabled(mode == "train"):
            static = static_name(stack, layer.merge, run_cell, x)
            found = tune_case(stack, layer.merge, run_cell, x, lambda s=static: s, fresh=fresh)
        choice, ms = (found[0].name, found[1].get("ms", {})) if found else (static, {})
        row = {"cell": name, "layers": n_layers, "H": H, "B": B, "dtype": str(dtype).removeprefix("torch."),
               "mode": mode, "choice": choice, "static": static, "ms": ms}  # fmt: skip
        rows.append(row)
        if progress is not None:
            progress(format_row(row))
    return rows


def format_row(row: dict[str, Any]) -> str:
    ms = row["ms"]
    gain = ms[row["static"]] / ms[row["choice"]] if row["static"] in ms and ms.get(row["choice"]) else 1.0
    times = "  ".join(f"{k} {v:.2f}" for k, v in ms.items())
    return (
        f"{row['cell']:<15} {row['layers']:>2} {row['H']:>5} {row['B']:>4} {row['dtype']:<9} {row['mode']:<6}"
        f" {row['choice']:<13} {row['static']:<13} {gain:>5.2f}x  {times}"
    )


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`tune_grid` as text: ``gain`` = static path's time / chosen path's time."""
    head = (
        f"{'cell':<15} {'L':>2} {'H':>5} {'B':>4} {'dtype':<9} {'mode':<6} {'choice':<13} {'static':<13}"
        f" {'gain':>6}  ms per candidate"
    )
    return "\n".join([head, *(format_row(r) for r in rows)])
