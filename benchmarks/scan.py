"""minGRU / minLSTM over whole sequences: the parallel scan against sequential loops, side by side.

Contenders, all one layer (input size = hidden size H), the same parameters, forward + backward of
``y.sum()`` (``--infer``: forward only, under ``torch.no_grad()``):

- ``scan``: ``Recurrent(cell)`` with impl="auto", i.e. ``kernels/scan.run_scan``: per block of steps
  (``BLOCK_ELEMENTS``: 256 steps at B=16, H=256) one input product, then the odd-even linear scan
  with its reverse-scan backward;
- ``one block``: the same with the whole sequence as one block (what the block size is measured by);
- ``reference``: ``Recurrent(cell, impl="reference")``, the loop over ``cell.step`` (a product per step);
- ``sequential``: the same coefficients as the scan (one product for all steps), then a plain Python
  loop ``h = a[t] * h + b[t]`` with autograd: what the scan replaces, and nothing else;
- ``log-space`` (minGRU only): the paper's log-space scan (Heinsen 2023): ``log h_t = a*_t +
  logcumsumexp(log b_t - a*_t)``, ``a*_t = cumsum(log a_t)``, autograd through torch's ops; kept here
  as the measured reason rnnkit's scan runs in linear space (``--no-log-space`` drops it).

Each round runs every contender once, in turn; after a warm-up round the median of ``--repeats``
rounds is reported, with each contender's ratio to the scan (> 1: the scan is faster). The largest
relative difference of each contender's outputs from the scan's is reported too.

    python benchmarks/scan.py --out benchmarks/results/scan.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rnnkit import MinGRUCell, MinLSTMCell, Recurrent
from rnnkit.bench import machine
from rnnkit.kernels import scan
from rnnkit.kernels.scan import scan_kernel


def sequential(layer: Recurrent, x: torch.Tensor) -> torch.Tensor:
    cell = layer.cells[0]
    a, b = scan_kernel(cell)(cell, x)  # (T, B, H) each
    h, hs = torch.zeros_like(a[0]), []
    for a_t, b_t in zip(a.unbind(0), b.unbind(0), strict=True):  # unbind: indexing a[t] would make
        h = a_t * h + b_t  # autograd write a full (T, B, H) gradient for every step
        hs.append(h)
    return torch.stack(hs)


def log_space(layer: Recurrent, x: torch.Tensor) -> torch.Tensor:
    """The paper's log-space minGRU (Appendix B) from h_0 = 0: log a = log(1 - z) = -softplus(k_z),
    log b = log z + log g(k_h)."""
    cell = layer.cells[0]
    k_z, k_h = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(2, -1)
    log_g = torch.where(k_h >= 0, (F.relu(k_h) + 0.5).log(), -F.softplus(-k_h))
    a_star = torch.cumsum(-F.softplus(k_z), 0)
    return torch.exp(a_star + torch.logcumsumexp(-F.softplus(-k_z) + log_g - a_star, 0))


def one_block(layer: Recurrent, x: torch.Tensor) -> torch.Tensor:
    block, scan.BLOCK_ELEMENTS = scan.BLOCK_ELEMENTS, x.numel() * 4
    try:
        return layer(x)[0]
    finally:
        scan.BLOCK_ELEMENTS = block


def contenders(cell: str, H: int, log: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    Cell = {"minGRU": MinGRUCell, "minLSTM": MinLSTMCell}[cell]
    fast = Recurrent(Cell(H, H))
    ref = Recurrent(Cell(H, H), impl="reference")
    ref.load_state_dict(fast.state_dict())
    out = {
        "scan": lambda x: fast(x)[0],
        "one block": lambda x: one_block(fast, x),
        "reference": lambda x: ref(x)[0],
        "sequential": lambda x: sequential(fast, x),
    }
    if log and cell == "minGRU":
        out["log-space"] = lambda x: log_space(fast, x)
    return out


def timed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, train: bool) -> float:
    start = time.perf_counter()
    if train:
        fn(x).sum().backward()
    else:
        with torch.no_grad():
            fn(x)
    return time.perf_counter() - start


def measure(cell: str, T: int, B: int, H: int, repeats: int, train: bool, log: bool) -> dict:
    fns = contenders(cell, H, log)
    x = torch.randn(T, B, H, requires_grad=train)
    with torch.no_grad():
        y = fns["scan"](x).double()
        error = {k: float((f(x).double() - y).abs().max() / y.abs().max()) for k, f in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for round in range(repeats + 1):  # round 0 warms up
        for k, f in fns.items():
            t = timed(f, x, train)
            if round:
                times[k].append(t)
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {"cell": cell, "T": T, "B": B, "H": H, "pass": "fwd+bwd" if train else "fwd", "ms": ms,
            "vs_scan": {k: v / ms["scan"] for k, v in ms.items()}, "max_rel_diff": error}  # fmt: skip


def table(rows: list[dict]) -> str:
    names = ["scan", "one block", "reference", "sequential", "log-space"]
    lines = ["| cell | pass | T | " + " | ".join(f"{n} ms" for n in names) + " | "
             + " | ".join(f"{n} / scan" for n in names[1:]) + " |", "|---" * 12 + "|"]  # fmt: skip
    for r in rows:
        ms = [f"{r['ms'][n]:.1f}" if n in r["ms"] else "-" for n in names]
        ratio = [f"{r['vs_scan'][n]:.2f}" if n in r["vs_scan"] else "-" for n in names[1:]]
        lines.append(f"| {r['cell']} | {r['pass']} | {r['T']} | " + " | ".join(ms + ratio) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["minGRU", "minLSTM"], choices=["minGRU", "minLSTM"])
    p.add_argument("--T", nargs="+", type=int, default=[128, 512, 2048, 8192])
    p.add_argument("--B", type=int, default=16)
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--infer", action="store_true", help="also time forward only, under no_grad")
    p.add_argument("--no-log-space", action="store_true", help="leave out the log-space contender")
    p.add_argument("--log-space-max-T", type=int, default=2048, help="the log-space scan only up to this T")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's); 1 is steadier on a busy machine",
    )
    p.add_argument("--out", help="write the rows and the machine here (JSON)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    load = [os.getloadavg()[0]]
    for train in (True, False) if args.infer else (True,):
        for cell in args.cells:
            for T in args.T:
                log = not args.no_log_space and args.log_space_max_T >= T
                rows.append(measure(cell, T, args.B, args.H, args.repeats, train, log))
                load.append(os.getloadavg()[0])
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    report = {"machine": machine(), "load_1min": [min(load), max(load)], "rows": rows}
    print(table(rows))
    print(f"load average (1 min) during the run: {min(load):.1f} to {max(load):.1f}")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
