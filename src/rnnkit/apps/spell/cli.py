"""The speller's command: ``train spell``."""

from __future__ import annotations

import argparse
import json

from ...commands.shared import add_training_options, train_flag
from ...configs import add_options, override
from ...training.config import TrainConfig
from .config import MODEL, TRAIN, SpellerConfig


def cmd_train_spell(args: argparse.Namespace) -> int:
    """Train a decoder that spells the digit in an 8x8 image (one-to-many); report held-out exact match."""
    from .run import train_speller

    model, train = configs(args)
    report = train_speller(args.out, model, train, resume=args.resume, progress=not args.no_progress)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['steps']} steps -> {report['run_dir']}: exact match {report['exact_match']:.4f} on "
            f"{report['test_examples']} held-out images"
        )
        for e in report["errors"][:10]:
            print(f"  a {e['truth']} spelled {e['spelled']!r}")
    return 0


def configs(args: argparse.Namespace) -> tuple[SpellerConfig, TrainConfig]:
    """The preset, with the flags given on top."""
    return override(MODEL, args), override(TRAIN, args)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    add_options(p, SpellerConfig, MODEL)
    train_flag(p, "batch_size", "images per step", TRAIN)
    train_flag(p, "steps", "optimizer steps in all", TRAIN)
    train_flag(p, "lr", "learning rate", TRAIN)
    train_flag(p, "seed", "random seed", TRAIN)
    add_training_options(p, sampling=True)
    p.set_defaults(func=cmd_train_spell, makes_run="speller", configs=configs)  # for the error boundary
