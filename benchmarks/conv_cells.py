"""ConvLSTM / ConvGRU: the input convolution of all steps at once (impl="auto", kernels/conv.py) against
the plain loop over cell.step (impl="reference"), side by side in one process.

    python benchmarks/conv_cells.py [--repeats 7] [--threads 2]

Contenders alternate run by run after 2 warm-up runs each; the table gives the median of the timed runs
and the speedup (reference time / auto time). Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnnkit import ConvGRUCell, ConvLSTMCell, Recurrent

# (label, cell, T, B, C_in, C_hid, frame side, kernel, layers)
CONFIGS = [
    ("moving-digits encoder", ConvLSTMCell, 10, 16, 16, 32, 8, 3, 2),
    ("ConvLSTM 32x32", ConvLSTMCell, 10, 8, 8, 32, 32, 3, 1),
    ("ConvGRU 32x32", ConvGRUCell, 10, 8, 8, 32, 32, 3, 1),
    ("ConvLSTM 16x16 wide input", ConvLSTMCell, 20, 16, 64, 32, 16, 5, 1),
]


def run(layer: Recurrent, x: torch.Tensor, backward: bool) -> float:
    start = time.perf_counter()
    if backward:
        y, _ = layer(x)
        y.sum().backward()
    else:
        with torch.no_grad():
            layer(x)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| model | T | B | C_in | C_hid | frame | kernel | layers | pass | auto ms | reference ms | speedup |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, make, T, B, C_in, C_hid, side, k, layers in CONFIGS:
        torch.manual_seed(0)
        fast = Recurrent(make(C_in, C_hid, k), num_layers=layers)
        ref = Recurrent(make(C_in, C_hid, k), num_layers=layers, impl="reference")
        ref.load_state_dict(fast.state_dict())
        x = torch.randn(T, B, C_in, side, side)
        for backward in (False, True):
            times: dict[str, list[float]] = {"auto": [], "reference": []}
            for i in range(args.repeats + 2):
                for name, layer in (("auto", fast), ("reference", ref)):
                    elapsed = run(layer, x, backward)
                    if i >= 2:
                        times[name].append(elapsed)
            a, r = (1000 * statistics.median(times[n]) for n in ("auto", "reference"))
            kind = "fwd+bwd" if backward else "fwd"
            print(f"| {label} | {T} | {B} | {C_in} | {C_hid} | {side}x{side} | {k} | {layers} | {kind} "
                  f"| {a:.1f} | {r:.1f} | {r / a:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
