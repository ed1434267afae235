"""Experiment 4 of issue 7: scheduled sampling vs teacher forcing, and the train/test gap of generation.

    python benchmarks/experiments/scheduled_sampling.py [--steps 3000] [--seeds 0 1 2]

A GRU learns next-value prediction on sine waves of random frequency, phase and amplitude
(``rnnkit.data.synthetic.sine_waves``). Trained with teacher forcing it only ever reads true values; at
generation time it reads its own predictions, whose small errors it never saw in training, and the errors
compound (the distribution shift, or exposure bias). Scheduled sampling (Bengio et al. 2015) feeds the
model its own predictions during training with a probability that grows from 0 (inverse-sigmoid decay of
the teacher-forcing probability, down to ``--floor``).

Both runs start from the same weights and see the same batches. On the same test waves the script
measures the teacher-forced MSE (every step reads the truth) and the free-running MSE (20% of the wave
read, the rest generated), per generated step. Numbers go to ``<out>/scheduled_sampling.json``, the plot
to ``docs/scheduled_sampling.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rnnkit.apps.synthetic import SyntheticTask, free_running_mse
from rnnkit.apps.synthetic.model import TaskModel
from rnnkit.training.trainer import TrainConfig, fit

SCHEDULES = {"teacher forcing": "always", "scheduled sampling": "inverse_sigmoid"}


def run(out: Path, schedule: str, seed: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    model = TaskModel("sine", args.cell, hidden=args.hidden)
    k = args.steps / 10  # inverse sigmoid: p = k / (k + exp(step / k)); ~0.5 at 2/3 of the run
    config = TrainConfig(steps=args.steps, batch_size=64, lr=3e-3, eval_every=args.steps // 10,
                         checkpoint_every=args.steps, plots=False, seed=seed, teacher_forcing=schedule,
                         tf_k=k if schedule != "always" else None, tf_floor=args.floor)  # fmt: skip
    task = SyntheticTask("sine", args.length, config.batch_size, seed)
    start = time.perf_counter()
    fit(model, task, config, out, progress=False)
    seconds = time.perf_counter() - start
    x, y = task.test
    scores = task.evaluate(model)
    per_step = free_running_mse(model, x, y)  # (generated steps,)
    with torch.no_grad():
        truth = torch.zeros(x.shape[:2], dtype=torch.bool)
        truth[: int(0.2 * x.shape[0])] = True
        example = model.eval().feed_back(x[:, :3], truth[:, :3])[..., 0].t().tolist()  # 3 generated waves
    return {"schedule": schedule, "seed": seed, "seconds": round(seconds, 1),
            "teacher_forced_mse": scores["loss"], "free_running_mse": scores["free_mse"],
            "free_mse_per_step": per_step.tolist(), "example": example,
            "truth": y[:, :3, 0].t().tolist()}  # fmt: skip


def plot(results: list[dict], path: Path, prime: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = {"always": "tab:red", "inverse_sigmoid": "tab:blue"}
    for name, schedule in SCHEDULES.items():
        runs = [r for r in results if r["schedule"] == schedule]
        curves = torch.tensor([r["free_mse_per_step"] for r in runs])
        steps = range(1, curves.shape[1] + 1)
        left.plot(steps, curves.mean(0), color=colors[schedule],
                  label=f"{name}: free-running MSE {curves.mean():.3f}")  # fmt: skip
        low, high = curves.min(0).values, curves.max(0).values
        left.fill_between(steps, low, high, color=colors[schedule], alpha=0.2)
        first = runs[0]
        right.plot(first["example"][0], color=colors[schedule], label=f"generated ({name})")
    right.plot(results[0]["truth"][0], color="black", lw=1, ls="--", label="true wave")
    right.axvspan(0, prime - 1, color="grey", alpha=0.15, label="read (true values)")
    left.set(xlabel="generated step", ylabel="squared error (mean over 1000 test waves)", yscale="log",
             title="Error of generation, by how far it has run")  # fmt: skip
    right.set(xlabel="step", ylabel="value", title="One test wave, generated after 20 true values")
    left.legend(fontsize=8)
    right.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="gru", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--floor", type=float, default=0.0, help="the teacher-forcing probability's floor")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/scheduled_sampling")
    parser.add_argument("--plot", default="docs/scheduled_sampling.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    results = []
    for seed in args.seeds:
        for name, schedule in SCHEDULES.items():
            r = run(out / f"{schedule}-{seed}", schedule, seed, args)
            results.append(r)
            print(f"seed {seed} {name:20s} teacher-forced MSE {r['teacher_forced_mse']:.5f}  free-running "
                  f"MSE {r['free_running_mse']:.4f}  ({r['seconds']} s)", flush=True)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "scheduled_sampling.json").write_text(json.dumps(results))
    plot(results, Path(args.plot), int(0.2 * args.length))
    print(f"wrote {args.plot} and {out / 'scheduled_sampling.json'}")


if __name__ == "__main__":
    main()
