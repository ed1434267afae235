"""bf16 against fp32, side by side in one process: forward + backward at T=100, B=64, H=512.

For LSTM, GRU and RNN: torch.nn and rnnkit.nn, each in fp32, in pure bf16 (parameters and input
``.bfloat16()``) and under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (fp32 master weights, what
``--precision bf16`` trains with); for rnnkit's layer-norm LSTM (no torch.nn peer) the same three.
Contenders are alternated round by round after a warm-up; the median of ``--repeats`` rounds is
reported, and every speedup is against the row's fp32 baseline (torch.nn fp32; for the layer-norm
LSTM, rnnkit fp32). The machine's load average is recorded before and after.

    python benchmarks/bf16.py [--repeats 5] [--threads N] [--json FILE] [--tune]

By default measured dispatch is off (RNNKIT_TUNE=0: the static rules, so the run is reproducible);
``--tune`` lets ``impl="auto"`` measure as a user's process would.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

T, B, H = 100, 64, 512


def contenders(name: str) -> dict[str, Callable[[], Callable[[], None]]]:
    """label -> a builder of one forward + backward run."""
    import rnnkit.nn as rnn
    from rnnkit import LSTMCell, Recurrent

    peers = {
        "LSTM": (torch.nn.LSTM, rnn.LSTM),
        "GRU": (torch.nn.GRU, rnn.GRU),
        "RNN": (torch.nn.RNN, rnn.RNN),
    }
    if name in peers:
        torch_cls, ours = peers[name]
        factories = {"torch.nn": lambda: torch_cls(H, H), "rnnkit": lambda: ours(H, H)}
    else:
        factories = {"rnnkit": lambda: Recurrent(LSTMCell(H, H, layer_norm=True))}
    out = {}
    for who, make in factories.items():
        for mode in ("fp32", "bf16", "autocast"):
            out[f"{who} {mode}"] = lambda make=make, mode=mode: runner(make(), mode)
    return out


def runner(model: torch.nn.Module, mode: str) -> Callable[[], None]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, H, generator=gen)
    if mode == "bf16":
        model, x = model.bfloat16(), x.bfloat16()
    x.requires_grad_()
    params = list(model.parameters())

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            y = model(x)[0]
        torch.autograd.grad(y, [x, *params], torch.ones_like(y))

    return run


def time_row(name: str, repeats: int) -> dict[str, float]:
    runs = {label: build() for label, build in contenders(name).items()}
    for run in runs.values():  # warm-up: packing, allocations, tuning if on
        run()
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[label].append(time.perf_counter() - start)
    return {label: statistics.median(s) for label, s in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="+", default=["LSTM", "GRU", "RNN", "LSTM layernorm"])
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--tune", action="store_true", help="let impl='auto' measure (RNNKIT_TUNE on)")
    p.add_argument("--threads", type=int, help="torch threads (1 is steadier on a busy machine)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.tune:
        os.environ["RNNKIT_TUNE"] = "0"
    from rnnkit import bench
    from rnnkit.kernels import precision, tuning

    info = {**bench.machine(), "bf16_hardware": precision.bf16_fast(), "tuning": tuning.enabled(),
            "load_before": os.getloadavg()}  # fmt: skip
    rows = {}
    for name in args.models:
        ms = time_row(name, args.repeats)
        base = ms["torch.nn fp32"] if "torch.nn fp32" in ms else ms["rnnkit fp32"]
        rows[name] = {
            label: {"ms": round(s * 1e3, 1), "speedup": round(base / s, 2)} for label, s in ms.items()
        }
        cells = "  ".join(
            f"{label} {v['ms']:.0f} ms ({v['speedup']:.2f}x)" for label, v in rows[name].items()
        )
        print(f"{name:<15} {cells}", flush=True)
    info["load_after"] = os.getloadavg()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} threads, torch "
        f"{info['torch']}, bf16 hardware {info['bf16_hardware']}; load {info['load_before']} -> "
        f"{info['load_after']}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "config": {"T": T, "B": B, "H": H}, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
