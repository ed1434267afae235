"""Run a chosen slice of the benchmark grid and write JSON + a Markdown table.

    python benchmarks/layers.py --models LSTM GRU RNN --batch 1 16 64 --hidden 128 256 512 \\
        --out benchmarks/results/standard.json

The full grid (both layer counts, both directions) is ``rnnkit bench``; this script exists to
record slices for docs/benchmarks.md on a 2-core machine in minutes rather than hours.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from dataclasses import asdict

import torch
from tqdm import tqdm

from rnnkit import bench


def wait_for_load(limit: float, patience: float = 900) -> float:
    """Sleep until the 1-minute load average is below ``limit`` (or ``patience`` seconds passed)."""
    start = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - start < patience:
        time.sleep(10)
    return os.getloadavg()[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["LSTM", "GRU", "RNN"])
    p.add_argument("--batch", nargs="+", type=int, default=[1, 16, 64])
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 256, 512])
    p.add_argument("--layers", nargs="+", type=int, default=[1])
    p.add_argument("--bidirectional", nargs="+", type=int, default=[0])
    p.add_argument(
        "--peers", nargs="+", default=["torch", "loop"], help="torch, loop, python-loops (see bench.compare)"
    )
    p.add_argument("--passes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--clock",
        default="wall",
        choices=list(bench.CLOCKS),
        help="wall time, or this process's CPU time (with --threads 1, on a machine other work keeps busy)",
    )
    p.add_argument(
        "--wait-load",
        type=float,
        default=None,
        help="before each row wait (up to 15 min) until the 1-minute load average is below this "
        "(shared machines); each row records the load it started at",
    )
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs = []
    passes = [p == "fwd+bwd" for p in args.passes]
    for B, H, n, bi, backward in itertools.product(
        args.batch, args.hidden, args.layers, args.bidirectional, passes
    ):
        cfg = {"T": 100, "B": B, "H": H, "D": H, "layers": n, "bidirectional": bool(bi), "backward": backward}
        jobs += [(m, cfg) for m in args.models]
    rows = []
    for name, cfg in tqdm(jobs, desc="bench"):
        load = wait_for_load(args.wait_load) if args.wait_load else os.getloadavg()[0]
        cfg = dict(cfg, load=round(load, 2), threads=torch.get_num_threads(), clock=args.clock)
        rows += bench.compare(name, cfg, args.repeats, tuple(args.peers), args.clock)
    report = {
        "machine": bench.machine(),
        "packed_gemm_gflops": bench.gemm_rate(),
        "rows": [asdict(r) for r in rows],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(os.path.abspath(args.out)), delete=False) as f:
        json.dump(report, f, indent=1)
    os.replace(f.name, args.out)  # atomic: a killed run never leaves half a file
    print(bench.table(report))


if __name__ == "__main__":
    main()
