"""The synthetic tasks' command: ``train task``."""

from __future__ import annotations

import argparse
import json

from ...commands.shared import add_training_options, train_flag, training


def cmd_train_task(args: argparse.Namespace) -> int:
    """Train a fresh model on a synthetic long-range task; report its test score, the baseline's, and
    the gradient flow before and after."""
    from rnnkit.apps import synthetic

    options = training(args)  # the TrainConfig flags given
    report = synthetic.train_synthetic(
        args.task, args.out, cell=args.cell, hidden=args.hidden, length=args.length, train_options=options,
        resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        test = ", ".join(f"{k} {v:.4f}" for k, v in report["test"].items())
        base = ", ".join(f"{k} {v:.4f}" for k, v in report["baseline"].items())
        print(
            f"{args.cell} on {args.task} (T={args.length}), {report['steps']} steps: test {test} "
            f"(baseline {base}); ||dL/dh_0||/||dL/dh_T|| {report['gradient_ratio_before']:.3g} before, "
            f"{report['gradient_ratio_after']:.3g} after"
        )
    return 0


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--task", required=True, choices=["adding", "copy", "binary_addition", "parity", "sine"])
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn", "irnn"], help="default lstm")
    p.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    p.add_argument("--length", type=int, default=100, help="sequence length T (copy: the delay)")
    train_flag(p, "batch_size", "sequences per step (default 64)")
    train_flag(p, "steps", "optimizer steps (default 2000)")
    train_flag(p, "lr", "learning rate (default 1e-3)")
    train_flag(p, "seed", "random seed")
    add_training_options(p, sampling=True)
    p.set_defaults(func=cmd_train_task)
