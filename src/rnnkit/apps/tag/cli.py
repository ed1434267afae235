"""The case tagger's commands: ``train tag`` and ``tag``."""

from __future__ import annotations

import argparse
import json
import os
from argparse import SUPPRESS

from ...commands.shared import add_training_options, torchrun, train_flag
from ...configs import add_options, override
from ...training.config import TrainConfig
from .config import MODEL, TRAIN, TaggerConfig


def cmd_train_tag(args: argparse.Namespace) -> int:
    """Train a tagger that restores letter case; report its scores next to the rule baseline's."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return torchrun(args.nproc, args.argv)
    from rnnkit.training import distributed

    from . import run

    model, train = configs(args)
    report = run.train_case_tagger(args.data, args.out, model, train, resume=args.resume,
                                   progress=not args.no_progress)  # fmt: skip
    if not distributed.is_main():
        return 0
    if args.json:
        print(json.dumps(report))
    else:
        b = report["baseline"]
        kind = "bidirectional" if report["bidirectional"] else "unidirectional"
        print(
            f"{kind} tagger, {report['steps']} steps -> {report['run_dir']}\n"
            f"  model: accuracy {report['accuracy']:.4f} (letters {report['letter_accuracy']:.4f}), "
            f"uppercase F1 {report['upper_f1']:.4f}\n"
            f"  rule:  accuracy {b['accuracy']:.4f} (letters {b['letter_accuracy']:.4f}), "
            f"uppercase F1 {b['upper_f1']:.4f}"
        )
    return 0


def configs(args: argparse.Namespace) -> tuple[TaggerConfig, TrainConfig]:
    """The preset, with the flags given on top."""
    return override(MODEL, args), override(TRAIN, args)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--data", default="shakespeare", help="a named dataset or a path (default shakespeare)")
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    add_options(p, TaggerConfig, MODEL, skip={"bidirectional"})  # its pair of flags follows
    direction = p.add_mutually_exclusive_group()
    direction.add_argument(
        "--bidirectional", action="store_true", default=SUPPRESS, help="read both ways (default)"
    )
    direction.add_argument("--unidirectional", dest="bidirectional", action="store_false", default=SUPPRESS,
                           help="read left to right only")  # fmt: skip
    train_flag(p, "seq_len", "training window length", TRAIN)
    train_flag(p, "batch_size", "windows per step", TRAIN)
    train_flag(p, "steps", "optimizer steps in all", TRAIN)
    train_flag(p, "lr", "learning rate", TRAIN)
    train_flag(p, "seed", "random seed", TRAIN)
    add_training_options(p)
    p.set_defaults(func=cmd_train_tag, makes_run="tagger", configs=configs)  # for the error boundary


def cmd_tag(args: argparse.Namespace) -> int:
    """Restore the letter case of a text with a trained tagger."""
    from ...data.checks import check_text, read_stdin_text
    from .run import restore_case

    text = check_text(" ".join(args.text), "the text") if args.text else read_stdin_text()
    restored = restore_case(args.run_dir, text, which=args.checkpoint)
    print(json.dumps({"text": restored}) if args.json else restored)
    return 0


def tag(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train tag`")
    p.add_argument("text", nargs="*", help="the text (default: read standard input)")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_tag, needs_run="tagger")
