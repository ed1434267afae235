"""Experiment 1 of issue 7: the adding problem at several lengths, tanh Elman vs IRNN vs LSTM vs GRU.

    python benchmarks/experiments/adding.py --lengths 50 100 200 --minutes 10

Each (cell, T) trains for the same wall-time budget (``rnnkit train task``); the table (test MSE against
the baseline's 0.167, steps, gradient ratio before/after) goes to ``<out>/adding.json`` and the
gradient-flow curves at initialisation and after training to ``docs/adding_gradient_flow.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rnnkit.apps.synthetic import train_synthetic
from rnnkit.diagnostics.plots import plot_gradient_flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--cells", nargs="+", default=["rnn", "irnn", "lstm", "gru"])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time budget per run")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--out", default="runs/adding")
    parser.add_argument("--plot", default="docs/adding_gradient_flow.png")
    args = parser.parse_args()

    rows = []
    for length in args.lengths:
        for cell in args.cells:
            lr = 1e-4 if cell == "irnn" else 1e-3  # Le et al. 2015 train the IRNN with a small step
            options = {"steps": 10**6, "minutes": args.minutes, "lr": lr, "eval_every": 200, "plots": False}
            r = train_synthetic("adding", Path(args.out) / f"{cell}-T{length}", cell=cell, hidden=args.hidden,
                                length=length, train_options=options, progress=True)  # fmt: skip
            rows.append(r)
            print(f"T={length} {cell}: test MSE {r['test']['loss']:.4f} after {r['steps']} steps", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "adding.json").write_text(json.dumps(rows, indent=1) + "\n")
    longest = max(args.lengths)
    curves = {}
    for r in rows:
        if r["length"] == longest:
            curves[f"{r['cell']} at init"] = r["gradient_norms_before"]
            curves[f"{r['cell']} trained (MSE {r['test']['loss']:.3f})"] = r["gradient_norms_after"]
    plot_gradient_flow(curves, args.plot, title=f"adding problem, T={longest}: ||dL/dh_t||")


if __name__ == "__main__":
    main()
