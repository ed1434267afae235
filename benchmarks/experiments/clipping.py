"""Experiment 2 of issue 7: exploding gradients, and what clipping by global norm does about them.

    python benchmarks/experiments/clipping.py [--cell irnn] [--scale 1.1] [--steps 600]

An Elman RNN whose recurrent weights are scaled up (spectral norm above 1) is trained on the adding
problem twice from the same initial weights: without clipping and with ``clip_norm``. ReLU is the
default because tanh saturates, and a saturated unit's gradient vanishes instead of exploding. The
pre-clip gradient norm of every step and the loss go to ``docs/clipping.png``, and the numbers to
``<out>/clipping.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from rnnkit.apps.synthetic import SyntheticTask
from rnnkit.apps.synthetic.model import TaskModel
from rnnkit.errors import TrainingError
from rnnkit.training.plots import read_metrics, smooth
from rnnkit.training.trainer import TrainConfig, fit


def run(out: Path, cell: str, scale: float, clip: float | None, steps: int, length: int, lr: float) -> dict:
    torch.manual_seed(0)
    model = TaskModel("adding", cell, hidden=64)
    with torch.no_grad():
        w = model.rnn.layer_cells()[0].weight_hh
        w.mul_(scale / torch.linalg.matrix_norm(w, ord=2))  # spectral norm = scale
    config = TrainConfig(steps=steps, batch_size=64, lr=lr, clip_norm=clip, eval_every=steps // 6,
                         checkpoint_every=steps, optimizer="sgd", momentum=0.9, plots=False,
                         max_bad_steps=steps)  # fmt: skip
    task = SyntheticTask("adding", length, config.batch_size, config.seed)
    error = None
    try:
        report = fit(model, task, config, out, progress=False)
    except TrainingError as e:
        report, error = {}, str(e)
    train, valid = read_metrics(out)
    return {
        "clip_norm": clip, "scale": scale, "error": error, "skipped": report.get("skipped_steps"),
        "grad_norm": [r.get("grad_norm") for r in train], "loss": [r.get("loss") for r in train],
        "valid": [[r["step"], r["valid_loss"]] for r in valid],
        "final_test_mse": task.evaluate(model)["loss"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="irnn", choices=["rnn", "irnn"],
                        help="irnn: ReLU (no saturation, so large weights explode); rnn: tanh")  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.1, help="spectral norm of W_hh at the start")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.01, help="SGD with momentum 0.9")
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--out", default="runs/clipping")
    parser.add_argument("--plot", default="docs/clipping.png")
    args = parser.parse_args()

    runs = [run(Path(args.out) / name, args.cell, args.scale, clip, args.steps, args.length, args.lr)
            for name, clip in (("no-clip", None), ("clip", args.clip))]  # fmt: skip
    (Path(args.out) / "clipping.json").write_text(json.dumps(runs) + "\n")
    for r in runs:
        finite = [g for g in r["grad_norm"] if g is not None]
        note = f" ({r['error'][:80]})" if r["error"] else ""
        print(f"clip_norm={r['clip_norm']}: max ||g|| {max(finite):.3g}, skipped {r['skipped']}, "
              f"final test MSE {r['final_test_mse']:.4f}{note}")  # fmt: skip

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.3))
    for r, color in zip(runs, ("tab:red", "tab:blue"), strict=True):
        label = "no clipping" if r["clip_norm"] is None else f"clip_norm = {r['clip_norm']:g}"
        norms = [g if g is not None else float("nan") for g in r["grad_norm"]]
        a.plot(
            norms, color=color, alpha=0.6, linewidth=0.8, label=label, marker="o" if r["skipped"] else None
        )
        losses = [v if v is not None else float("nan") for v in r["loss"]]
        # a skipped (non-finite) step is a gap in the line, not the last finite mean carried on
        curve = [m if v == v else float("nan") for m, v in zip(smooth(losses, 20), losses, strict=True)]
        b.plot(
            curve, color=color, label=label + (f" ({r['skipped']} steps non-finite)" if r["skipped"] else "")
        )
    if args.clip:
        a.axhline(args.clip, color="gray", linestyle="--", label="threshold")
    a.set(yscale="log", xlabel="step", ylabel="||g|| before clipping", title="gradient norm")
    b.axhline(1 / 6, color="gray", linestyle=":", label="predict 1 (MSE 0.167)")
    b.set(yscale="log", xlabel="step", ylabel="training MSE (mean of 20)", title="loss")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    kind = "ReLU RNN (W_hh = scale x identity)" if args.cell == "irnn" else "tanh RNN"
    fig.suptitle(f"{kind}, ||W_hh|| = {args.scale:g} at the start, adding problem T={args.length}, SGD")
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
