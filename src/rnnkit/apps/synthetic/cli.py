"""The synthetic tasks' command: ``train synthetic`` (also ``train task``, its older name)."""

from __future__ import annotations

import argparse
import json

from ...commands.shared import add_training_options, train_flag
from ...configs import add_options, override
from ...training.config import TrainConfig
from .config import MODEL, TASK_SHAPES, TRAIN, SyntheticConfig


def cmd_train_task(args: argparse.Namespace) -> int:
    """Train a fresh model on a synthetic long-range task; report its test score, the baseline's, and
    the gradient flow before and after."""
    from .run import train_synthetic

    model, train = configs(args)
    report = train_synthetic(
        args.task, args.out, cell=model.cell, hidden=model.hidden, length=model.length, train_options=train,
        resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        test = ", ".join(f"{k} {v:.4f}" for k, v in report["test"].items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in report["baseline"].items())
        print(
            f"{model.cell} on {args.task} (T={model.length}), {report['steps']} steps: test {test} "
            f"(baseline {base}); ||dL/dh_0||/||dL/dh_T|| {report['gradient_ratio_before']:.3g} before, "
            f"{report['gradient_ratio_after']:.3g} after"
        )
    return 0


def configs(args: argparse.Namespace) -> tuple[SyntheticConfig, TrainConfig]:
    """The preset, with the flags given on top."""
    return override(MODEL, args), override(TRAIN, args)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--task", required=True, choices=tuple(TASK_SHAPES))
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    add_options(p, SyntheticConfig, MODEL)
    train_flag(p, "batch_size", "sequences per step", TRAIN)
    train_flag(p, "steps", "optimizer steps", TRAIN)
    train_flag(p, "lr", "learning rate", TRAIN)
    train_flag(p, "seed", "random seed", TRAIN)
    add_training_options(p, sampling=True)
    # for the error boundary: the run it makes, its sizes for the memory check
    p.set_defaults(func=cmd_train_task, makes_run="synthetic-task", configs=configs,
                   data_sizes=lambda model: TASK_SHAPES[model.task][:2])  # fmt: skip
