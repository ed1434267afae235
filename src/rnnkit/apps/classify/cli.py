"""The classifier's commands: ``train classify`` and ``predict``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ...commands.shared import add_training_options, torchrun, train_flag
from ...configs import add_options, override
from ...training.config import TrainConfig
from .config import PRESETS, ClassifierConfig


def cmd_train_classify(args: argparse.Namespace) -> int:
    """Train a sequence classifier on a .ts file; report train and test accuracy."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return torchrun(args.nproc, args.argv)
    from rnnkit.training import distributed

    from .run import train_classifier

    model, train = configs(args)
    data, test = (args.data, args.data) if args.data else (args.train, args.test)  # a name: both splits
    report = train_classifier(
        data, test, args.out, model, train, epochs=args.epochs,
        valid_fraction=args.valid_fraction, resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    report["run_dir"] = str(report["run_dir"])
    if not distributed.is_main():
        return 0  # rank 0 reports for all
    if args.json:
        print(json.dumps(report))
    else:
        test = f"test accuracy {report['test_accuracy']:.4f}, " if "test_accuracy" in report else ""
        print(
            f"trained {report['steps']} steps -> {report['run_dir']}: {test}train accuracy "
            f"{report['train_accuracy']:.4f} ({report['parameters']:,} parameters, weights of "
            f"{report['checkpoint']}, {report['elapsed_s']:.1f} s)"
        )
    return 0


def configs(args: argparse.Namespace) -> tuple[ClassifierConfig, TrainConfig]:
    """The preset of ``--model`` (rnn or mlp), with the flags given on top."""
    preset_model, preset_train = PRESETS[getattr(args, "model", "rnn")]
    return override(preset_model, args), override(preset_train, args)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--train", help="a .ts file of labelled training series (or --data)")
    p.add_argument("--test", help="a .ts file of labelled test series, scored once at the end")
    p.add_argument(
        "--data", metavar="NAME",
        help="a UEA/UCR problem by name, e.g. JapaneseVowels: its train and test splits (offline for the "
        "ones the aeon package ships; others are downloaded through aeon)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    add_options(p, ClassifierConfig, PRESETS["rnn"][0])
    p.add_argument(
        "--valid-fraction", type=float, default=0.0,
        help="hold out this fraction of each class for validation, the best checkpoint and --patience "
        "(default 0: validate on the training series)",
    )  # fmt: skip
    length = p.add_mutually_exclusive_group()
    train_flag(length, "steps", "optimizer steps in all (default 800; mlp: 1000)")
    length.add_argument("--epochs", type=float, help="passes over the training series (instead of --steps)")
    train_flag(p, "batch_size", "series per step (default 32)")
    train_flag(
        p, "lr", "peak learning rate (default 5e-3: 30 warmup steps, then cosine to 0; mlp: 1e-3 constant)"
    )
    train_flag(p, "seed", "random seed: initial weights, shuffling, dropout (default 0)")
    add_training_options(p)
    # for the error boundary: the run it makes, what a fresh run needs, its sizes for the memory check
    p.set_defaults(func=cmd_train_classify, makes_run="classifier", fresh_needs=("train", "data"),
                   configs=configs)  # fmt: skip


def cmd_predict(args: argparse.Namespace) -> int:
    """Label the series of a .ts file with a trained classifier (and score them if labelled)."""
    from .run import predict

    data = args.data_option or args.data
    if data is None:
        raise ValueError("predict needs the series: a .ts file, or --data NAME (a UEA problem's test split)")
    report = predict(args.run_dir, data, which=args.checkpoint)
    if args.json:
        print(json.dumps(report))
        return 0
    print("\n".join(report["predictions"]))  # one label per series, in the file's order
    if "accuracy" in report:
        print(
            f"accuracy {report['accuracy']:.4f} ({report['correct']}/{report['series']}) on {report['file']}",
            file=sys.stderr,
        )
    return 0


def predict(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train classify`")
    p.add_argument(
        "data", nargs="?", help="a .ts file; its class labels are optional (with them, accuracy is reported)"
    )
    p.add_argument(
        "--data",
        dest="data_option",
        metavar="NAME",
        help="a UEA/UCR problem by name (e.g. JapaneseVowels): label and score its test split",
    )
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_predict, needs_run="classifier")
