"""The classifier's commands: ``train classify`` and ``predict``, for series (.ts) and texts (.csv, .tsv,
.jsonl: chosen by the --train file's extension), and ``diagnose attention`` (called by
:mod:`rnnkit.commands.diagnose_cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from ...commands.shared import add_training_options, torchrun, train_flag
from ...configs import add_options, given, override
from ...training.config import TrainConfig
from .config import PRESETS, TEXT_PRESET, ClassifierConfig, TextClassifierConfig, TextOptions

SERIES_ONLY = ("model", "input_noise")  # ClassifierConfig's fields a text classifier has not
TEXT_ONLY = ("text_column", "label_column", "tokenizer", "min_count", "vocab_size", "max_tokens", "embed")


def cmd_train_classify(args: argparse.Namespace) -> int:
    """Train a sequence classifier on a .ts file; report train and test accuracy."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return torchrun(args.nproc, args.argv)
    from rnnkit.data.labelled_text import is_text_file
    from rnnkit.training import distributed

    if args.train and is_text_file(args.train):
        return cmd_train_text(args)
    _refuse(args, TEXT_ONLY, f"only for text files (.csv, .tsv, .jsonl); --train is {args.train}")
    from .run import train_classifier

    model, train = configs(args)
    data, test = (args.data, args.data) if args.data else (args.train, args.test)  # a name: both splits
    report = train_classifier(
        data, test, args.out, model, train, epochs=args.epochs,
        valid_fraction=args.valid_fraction or 0.0, resume=args.resume, progress=not args.no_progress,
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


def _refuse(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    """Refuse the flags of the other kind of data (a flag not given leaves no attribute)."""
    typed = ["--" + n.replace("_", "-") for n in names if hasattr(args, n)]
    if typed:
        raise ValueError(f"{', '.join(typed)}: {why}")


def cmd_train_text(args: argparse.Namespace) -> int:
    """``train classify`` on a text file: report test accuracy, macro F1 and per-class scores."""
    from rnnkit.training import distributed

    from .text import train_text_classifier

    _refuse(args, SERIES_ONLY, f"only for .ts series; --train is a text file ({args.train})")
    shape = given(args, TextClassifierConfig)
    shape.pop("vocab_size", None)  # --vocab-size caps the tokenizer (TextOptions); the model's is derived
    model, train = dataclasses.replace(TEXT_PRESET[0], **shape), override(TEXT_PRESET[1], args)
    report = train_text_classifier(
        args.train, args.test, args.out, model, train, TextOptions(**given(args, TextOptions)),
        valid_fraction=args.valid_fraction, epochs=args.epochs, resume=args.resume,
        progress=not args.no_progress,
    )  # fmt: skip
    report["run_dir"] = str(report["run_dir"])
    if not distributed.is_main():
        return 0
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"trained {report['steps']} steps -> {report['run_dir']}: train accuracy "
        f"{report['train']['accuracy']:.4f} ({report['parameters']:,} parameters, a vocabulary of "
        f"{report['vocab_size']:,}, weights of {report['checkpoint']}, {report['elapsed_s']:.1f} s)"
    )
    if "test" in report:
        print(format_scores(report["test"]))
    return 0


def format_scores(scores: dict[str, Any]) -> str:
    """Accuracy, macro F1 and a per-class table, for people."""
    lines = [
        f"test: accuracy {scores['accuracy']:.4f}, macro F1 {scores['macro_f1']:.4f} on "
        f"{scores['count']} texts"
    ]
    width = max(5, *(len(c) for c in scores["per_class"]))
    lines.append(f"  {'class':{width}}  precision  recall      F1  support")
    for name, s in scores["per_class"].items():
        lines.append(
            f"  {name:{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:6.4f}  {s['support']:7d}"
        )
    return "\n".join(lines)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument(
        "--train", help="labelled training data: a .ts file of series, or a .csv/.tsv/.jsonl file of texts "
        "(columns text and label); or --data",
    )  # fmt: skip
    p.add_argument("--test", help="labelled test data of the same kind, scored once at the end")
    p.add_argument(
        "--data", metavar="NAME",
        help="a UEA/UCR problem by name, e.g. JapaneseVowels: its train and test splits (offline for the "
        "ones the aeon package ships; others are downloaded through aeon)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    add_options(p, ClassifierConfig, PRESETS["rnn"][0])
    p.add_argument(
        "--valid-fraction", type=float,
        help="hold out this fraction of each class for validation, the best checkpoint and --patience "
        "(default: .ts 0, validate on the training series; texts 0.1)",
    )  # fmt: skip
    length = p.add_mutually_exclusive_group()
    train_flag(length, "steps", "optimizer steps in all (default 800; mlp: 1000)")
    length.add_argument("--epochs", type=float, help="passes over the training series (instead of --steps)")
    train_flag(p, "batch_size", "series per step (default 32)")
    train_flag(
        p, "lr", "peak learning rate (default 5e-3: 30 warmup steps, then cosine to 0; texts 3e-3, weight "
        "decay 0.01; mlp: 1e-3 constant)",
    )  # fmt: skip
    train_flag(p, "seed", "random seed: initial weights, shuffling, dropout (default 0)")
    text = p.add_argument_group(
        "text files (--train/--test .csv, .tsv or .jsonl)",
        "the model flags above apply too; for texts their defaults are hidden 64, layers 1, dropout 0.3",
    )
    add_options(text, TextOptions, TextOptions())
    add_options(text, TextClassifierConfig, TEXT_PRESET[0])
    add_training_options(p)
    # for the error boundary: the run it makes, what a fresh run needs, its sizes for the memory check
    p.set_defaults(func=cmd_train_classify, makes_run="classifier", fresh_needs=("train", "data"),
                   configs=configs)  # fmt: skip


def cmd_predict(args: argparse.Namespace) -> int:
    """Label the series of a .ts file, or texts, with a trained classifier (and score them if labelled)."""
    from .text import is_text_run

    if args.text or args.file or is_text_run(args.run_dir):
        return cmd_predict_text(args)
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


def cmd_predict_text(args: argparse.Namespace) -> int:
    """``rnnkit predict RUN --text ... | --file F``: each text's label and class probabilities."""
    from .text import predict_texts

    if args.data is not None and args.file is not None:
        raise ValueError("give the texts' file once: as the positional argument or as --file")
    report = predict_texts(args.run_dir, args.text, args.file or args.data, which=args.checkpoint)
    if args.json:
        print(json.dumps(report))
        return 0
    for p in report["predictions"]:  # one line per text, in order
        ranked = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])
        print(f"{p['label']}\t" + "  ".join(f"{c} {v:.3f}" for c, v in ranked))
    if "scores" in report:
        print(format_scores(report["scores"]), file=sys.stderr)
    return 0


def predict(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train classify`")
    p.add_argument(
        "data", nargs="?",
        help="a .ts file (or, for a text classifier, a file of texts); its labels are optional (with them, "
        "accuracy is reported)",
    )  # fmt: skip
    p.add_argument(
        "--data",
        dest="data_option",
        metavar="NAME",
        help="a UEA/UCR problem by name (e.g. JapaneseVowels): label and score its test split",
    )
    p.add_argument("--text", action="append", help="a text to classify (repeatable)")
    p.add_argument(
        "--file",
        help="texts to classify: a .csv/.tsv/.jsonl file (scored if it has labels), or any text file with "
        "one text per line",
    )  # fmt: skip
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_predict, needs_run="classifier")


def cmd_attention(args: argparse.Namespace) -> int:
    """``rnnkit diagnose attention --run RUN --text ...``: the attention weights per token, as a PNG."""
    from .text import attention_map

    if not args.run:
        raise ValueError(
            "diagnose attention needs --run, a run of `rnnkit train classify` with --pool attention"
        )
    text = args.text
    if args.text_file:
        from rnnkit.data import read_text

        text = read_text(args.text_file)
    if text is None:
        raise ValueError("diagnose attention needs --text or --text-file: the text to look at")
    report = attention_map(args.run, text, args.out or "attention.png")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"attention: {report['label']} -> {report['plot']}")
    top = sorted(zip(report["tokens"], report["weights"], strict=True), key=lambda tw: -tw[1])[:10]
    print("  most weight: " + ", ".join(f"{t.strip() or repr(t)} {w:.3f}" for t, w in top))
    return 0
