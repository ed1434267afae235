"""minGRU and minLSTM against the LSTM: character language models on tinyshakespeare at about equal
parameter count and equal wall time (issue 8). One model per cell, one after the other, each for the
same budget; validation loss against wall time.

    RNNKIT_DATA_DIR=../shared/data python benchmarks/compare_minimal.py --minutes 4

The minimal cells' gates read only the input, so one layer of them is a gated moving average of input
features; the paper stacks them. Here they get ``--min-layers`` layers (default 3) and the hidden size
that brings the model's parameter count closest to the LSTM's (one layer, ``--lstm-hidden``). All runs
share the training options of ``compare_cells.py`` (batch 32, truncated BPTT over 64 characters,
AdamW at 3e-3).

Writes ``<out>/<cell>/`` run directories, ``<out>/compare_minimal.json`` and ``docs/minimal_vs_lstm.png``.
The budget is wall time: note the machine's load (it is recorded before and after each run).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from rnnkit.apps.lm import train_language_model
from rnnkit.apps.lm.model import LanguageModel, LMConfig
from rnnkit.bench import machine
from rnnkit.training.checkpoint import atomic_write
from rnnkit.training.plots import read_metrics

VOCAB = 65  # tinyshakespeare's characters
COLORS = {"lstm": "tab:blue", "mingru": "tab:orange", "minlstm": "tab:green"}


def parameters(cell: str, hidden: int, layers: int) -> int:
    model = LanguageModel(LMConfig(VOCAB, cell, hidden=hidden, layers=layers))
    return sum(p.numel() for p in model.parameters())


def matched_hidden(cell: str, layers: int, target: int) -> int:
    """The hidden size whose model has the parameter count closest to ``target``."""
    lo, hi = 1, 4096  # the count grows with h: bisect for the last h at or under target, then compare
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if parameters(cell, mid, layers) <= target else (lo, mid - 1)
    return min((lo, lo + 1), key=lambda h: abs(parameters(cell, h, layers) - target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="tinyshakespeare")
    parser.add_argument("--minutes", type=float, default=4.0, help="wall-time budget per cell")
    parser.add_argument("--lstm-hidden", type=int, default=256, help="the LSTM's size sets the budget")
    parser.add_argument("--min-layers", type=int, default=3, help="layers of minGRU / minLSTM")
    parser.add_argument("--cells", nargs="+", default=["lstm", "mingru", "minlstm"], choices=list(COLORS))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a busy machine)"
    )
    parser.add_argument("--out", default="runs/compare_minimal")
    parser.add_argument("--plot", default="docs/minimal_vs_lstm.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    target = parameters("lstm", args.lstm_hidden, 1)
    results = {}
    for cell in args.cells:
        layers = 1 if cell == "lstm" else args.min_layers
        hidden = args.lstm_hidden if cell == "lstm" else matched_hidden(cell, layers, target)
        run_dir = Path(args.out) / cell
        train_opts = {"steps": 10**6, "minutes": args.minutes, "batch_size": 32, "seq_len": 64, "lr": 3e-3,
                      "eval_every": 100, "checkpoint_every": 10**6, "plots": False}  # fmt: skip
        load_before = os.getloadavg()[0]
        report = train_language_model(args.data, run_dir, {"cell": cell, "hidden": hidden, "layers": layers},
                                      train_opts, progress=True)  # fmt: skip
        _, valid = read_metrics(run_dir)
        results[cell] = {
            "hidden": hidden,
            "layers": layers,
            "parameters": report["parameters"],
            "steps": report["steps"],
            "best_valid_loss": report["best_valid_loss"],
            "final_valid_loss": report["valid_loss"],
            "load_1min": [load_before, os.getloadavg()[0]],
            "curve": [[r["elapsed_s"], r["valid_loss"]] for r in valid],
        }
        print(cell, {k: v for k, v in results[cell].items() if k != "curve"}, flush=True)
    out = {"machine": machine(), "minutes": args.minutes, "data": args.data, "cells": results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(args.out) / "compare_minimal.json", (json.dumps(out, indent=1) + "\n").encode())
    draw(out, Path(args.plot))


def draw(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    for cell, r in out["cells"].items():
        t, loss = zip(*r["curve"], strict=True)
        name = {"lstm": "LSTM", "mingru": "minGRU", "minlstm": "minLSTM"}[cell]
        ax.plot([s / 60 for s in t], loss, "o-", markersize=3, color=COLORS[cell],
                label=f"{name} {r['layers']}x{r['hidden']} ({r['parameters'] / 1e3:.0f}K params, "
                      f"{r['steps']} steps): best {r['best_valid_loss']:.3f}")  # fmt: skip
    ax.axhline(1.5226, color="gray", linestyle="--", label="Kneser-Ney 6-gram (1.523)")
    ax.set(xlabel=f"wall time (minutes, {out['machine']['torch_threads']} torch thread(s), shared machine)",
           ylabel="validation loss (nats/char)", title=f"{out['data']}: minimal RNNs vs LSTM, equal "
           "parameters, equal time", ylim=(1.4, 3.0))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
