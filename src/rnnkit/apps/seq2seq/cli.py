"""The encoder-decoder's commands: ``train seq2seq`` and ``translate``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ...commands.shared import add_training_options, torchrun, train_flag
from ...configs import add_options, override
from ...training.config import TrainConfig
from .config import PRESETS, PairsConfig, Seq2SeqConfig


def cmd_train_seq2seq(args: argparse.Namespace) -> int:
    """Train an encoder-decoder on a generated task; report the exact match on held-out pairs."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return torchrun(args.nproc, args.argv)
    from rnnkit.training import distributed

    from .run import train_seq2seq

    model, train, pairs = configs(args)
    report = train_seq2seq(
        args.task, args.out, model, train, pairs, resume=args.resume,
        progress=not args.no_progress, beam=args.beam,
    )  # fmt: skip
    if not distributed.is_main():
        return 0  # rank 0 reports for all
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"trained {report['steps']} steps -> {report['run_dir']}: exact match "
            f"{report['exact_match']:.2%} "
            f"on {report['test_pairs']:,} held-out pairs ({report['parameters']:,} parameters, "
            f"{report['elapsed_s']:.0f} s)"
        )
    return 0


def configs(args: argparse.Namespace) -> tuple[Seq2SeqConfig, TrainConfig, PairsConfig]:
    """The task's preset (numbers before a task is known), with the flags given on top."""
    model, train, pairs = PRESETS[args.task if args.task in PRESETS else "numbers"]
    return override(model, args), override(train, args), override(pairs, args)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument(
        "--task", choices=list(PRESETS),
        help="numbers: 'three hundred and forty-two' -> 'trois cent quarante-deux' (words); addition: "
        "'123+45' -> '168' (characters)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    add_options(p, Seq2SeqConfig, PRESETS["numbers"][0])
    train_flag(p, "batch_size", "pairs per step", PRESETS["numbers"][1])
    train_flag(p, "steps", "optimizer steps in all (numbers 2000, addition 12000)")
    train_flag(p, "lr", "AdamW learning rate", PRESETS["numbers"][1])
    train_flag(p, "seed", "random seed: the pairs drawn, the weights, the shuffling", PRESETS["numbers"][1])
    add_options(
        p, PairsConfig
    )  # the defaults differ by task: numbers 40000/1000/2000, 6; addition 45000/1000/4000, 3
    p.add_argument("--beam", type=int, default=1, help="test-set beam width (default 1)")
    add_training_options(p, sampling=True)
    # for the error boundary: the run it makes, what a fresh run needs, its sizes for the memory check
    p.set_defaults(func=cmd_train_seq2seq, makes_run="seq2seq", fresh_needs=("task",), configs=configs)


def cmd_translate(args: argparse.Namespace) -> int:
    """Decode one input with a trained seq2seq model; optionally draw its attention."""
    from . import run as translation

    trained = translation.load_seq2seq(args.run_dir, which=args.checkpoint)
    result = translation.translate(trained, args.text, beam=args.beam, alpha=args.alpha)
    plot = str(translation.plot_attention(result, args.plot)) if args.plot else None
    if args.json:
        print(json.dumps({"run_dir": str(trained.run_dir), "text": result.text,
                          "translation": result.translation, "tokens": result.output, "score": result.score,
                          "finished": result.output[-1:] == ["</s>"], "plot": plot}))  # fmt: skip
    else:
        print(result.translation)
        if plot:
            print(f"attention heat map: {plot}", file=sys.stderr)
    return 0


def translate(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train seq2seq`")
    p.add_argument("text", help="the input, written as the training sources are")
    p.add_argument("--beam", type=int, default=1, help="beam width (default 1: greedy)")
    p.add_argument("--alpha", type=float, default=0.6, help="beam search's length penalty (0.6)")
    p.add_argument("--plot", metavar="FILE", help="draw the attention weights as a heat map (PNG)")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_translate, needs_run="seq2seq")
