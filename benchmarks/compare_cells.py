"""RNN vs GRU vs LSTM: character language models on tinyshakespeare at equal parameter count and equal
wall time (issue 5). Trains one model per cell, one after the other, each for the same budget, and draws
validation loss against wall time.

    RNNKIT_DATA_DIR=../shared/data python benchmarks/compare_cells.py --minutes 5

Writes ``<out>/<cell>/`` run directories, ``<out>/compare_cells.json`` and ``docs/cell_comparison.png``.
Run it on an otherwise idle machine: the budget is wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from rnnkit.apps.lm import train_language_model
from rnnkit.apps.lm.model import LanguageModel, LMConfig
from rnnkit.training.plots import read_metrics

VOCAB = 65  # tinyshakespeare's characters


def parameters(cell: str, hidden: int) -> int:
    return sum(p.numel() for p in LanguageModel(LMConfig(VOCAB, cell, hidden=hidden)).parameters())


def matched_hidden(cell: str, target: int) -> int:
    """The hidden size whose model has the parameter count closest to ``target``."""
    lo, hi = 1, 4096  # the count grows with h: bisect for the last h at or under target, then compare
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if parameters(cell, mid) <= target else (lo, mid - 1)
    return min((lo, lo + 1), key=lambda h: abs(parameters(cell, h) - target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="tinyshakespeare")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-time budget per cell")
    parser.add_argument("--lstm-hidden", type=int, default=256, help="the LSTM's size sets the budget")
    parser.add_argument("--out", default="runs/compare_cells")
    parser.add_argument("--plot", default="docs/cell_comparison.png")
    args = parser.parse_args()

    target = parameters("lstm", args.lstm_hidden)
    results = {}
    for cell in ("rnn", "gru", "lstm"):
        hidden = matched_hidden(cell, target)
        run_dir = Path(args.out) / cell
        train_opts = {"steps": 10**6, "minutes": args.minutes, "batch_size": 32, "seq_len": 64, "lr": 3e-3,
                      "eval_every": 100, "checkpoint_every": 10**6, "plots": False}  # fmt: skip
        report = train_language_model(args.data, run_dir, {"cell": cell, "hidden": hidden}, train_opts,
                                      progress=True)  # fmt: skip
        _, valid = read_metrics(run_dir)
        results[cell] = {
            "hidden": hidden,
            "parameters": report["parameters"],
            "steps": report["steps"],
            "best_valid_loss": report["best_valid_loss"],
            "final_valid_loss": report["valid_loss"],
            "curve": [[r["elapsed_s"], r["valid_loss"]] for r in valid],
        }
        print(cell, {k: v for k, v in results[cell].items() if k != "curve"}, flush=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}  # fmt: skip
    out = {"machine": machine, "minutes": args.minutes, "data": args.data, "cells": results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "compare_cells.json").write_text(json.dumps(out, indent=1) + "\n")
    draw(out, Path(args.plot))


def draw(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for cell, color in (("rnn", "tab:red"), ("gru", "tab:green"), ("lstm", "tab:blue")):
        r = out["cells"][cell]
        t, loss = zip(*r["curve"], strict=True)
        ax.plot([s / 60 for s in t], loss, "o-", markersize=3, color=color,
                label=f"{cell.upper()} H={r['hidden']} ({r['parameters'] / 1e3:.0f}K params): "
                      f"best {r['best_valid_loss']:.3f}")  # fmt: skip
    ax.axhline(1.5226, color="gray", linestyle="--", label="Kneser-Ney 6-gram (1.523)")
    ax.set(xlabel="wall time (minutes, 2 CPU cores)", ylabel="validation loss (nats/char)",
           title=f"{out['data']}: equal parameters, equal time", ylim=(1.4, 2.6))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
