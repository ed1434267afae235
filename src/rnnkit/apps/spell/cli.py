"""The speller's command: ``train spell``."""

from __future__ import annotations

import argparse
import json

from ...commands.shared import add_training_options, train_flag, training


def cmd_train_spell(args: argparse.Namespace) -> int:
    """Train a decoder that spells the digit in an 8x8 image (one-to-many); report held-out exact match."""
    from rnnkit.apps import spell as spelling

    model_opts, train_opts = spelling.options(
        cell=args.cell, hidden=args.hidden, dropout=args.dropout,
    )  # fmt: skip
    train_opts.update(training(args))  # the TrainConfig flags given, on top of the preset
    report = spelling.train_speller(
        args.out, model_opts, train_opts, resume=args.resume, progress=not args.no_progress
    )
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


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    p.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="the decoder's cell (default gru)")
    p.add_argument("--hidden", type=int, help="code and decoder size (default 128)")
    p.add_argument("--dropout", type=float, help="dropout in the encoder")
    train_flag(p, "batch_size", "images per step")
    train_flag(p, "steps", "optimizer steps in all (default 1000)")
    train_flag(p, "lr", "learning rate")
    train_flag(p, "seed", "random seed")
    add_training_options(p, sampling=True)
    p.set_defaults(func=cmd_train_spell)
