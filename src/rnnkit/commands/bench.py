"""``rnnkit bench``: rnnkit against torch.nn and a Python loop, side by side."""

from __future__ import annotations

import argparse
import json


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the side-by-side benchmark grid and print a table (or one JSON object)."""
    from rnnkit import bench

    report = bench.run(
        quick=args.quick,
        models=args.model or None,
        repeats=args.repeats,
        progress=not args.no_progress,
        stream=not args.no_stream,
        options=args.options or args.options_only,
        grid_rows=not args.options_only,
        peers=("torch", "loop", "python-loops") if args.python_loops else ("torch", "loop"),
    )
    if args.json:
        print(json.dumps(report))
    else:
        m = report["machine"]
        print(
            f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); "
            f"packed GEMM {report['packed_gemm_gflops']:.0f} GFLOP/s"
        )
        print(bench.table(report))
    return 0


def register(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--quick", action="store_true", help="one grid point (T=100, B=64, H=256)")
    p.add_argument("--model", action="append", help="only this model (repeatable), e.g. LSTM, GRU")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per contender (median; default 7)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--no-stream", action="store_true", help="skip the streaming rows (one step at B=1, H=512, 2 layers)"
    )
    p.add_argument(
        "--options",
        action="store_true",
        help="also time each regularisation/state option of LSTM and GRU against the same layer without it "
        "(training, fwd+bwd, T=100, B=64, H=256)",
    )
    p.add_argument("--options-only", action="store_true", help="only the option rows (implies --options)")
    p.add_argument(
        "--python-loops",
        action="store_true",
        help="also time rnnkit with its compiled loops switched off (what kernels/compiled.py gains)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_bench)
