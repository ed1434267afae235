"""The encoder-decoder's commands: ``train seq2seq`` and ``translate``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ...commands.shared import add_training_options, torchrun, train_flag, training


def cmd_train_seq2seq(args: argparse.Namespace) -> int:
    """Train an encoder-decoder on a generated task; report the exact match on held-out pairs."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return torchrun(args.nproc, args.argv)
    from rnnkit.apps import seq2seq as translation
    from rnnkit.training import distributed

    model_opts, train_opts, data_opts = translation.options_from(
        args.task, attention=args.attention, cell=args.cell, hidden=args.hidden, layers=args.layers,
        bidirectional=args.bidirectional, dropout=args.dropout, n_train=args.train_pairs,
        n_valid=args.valid_pairs, n_test=args.test_pairs,
        **{"max_digits" if args.task == "numbers" else "digits": args.digits},
    )  # fmt: skip
    train_opts.update(training(args))  # the TrainConfig flags given, on top of the preset
    report = translation.train_seq2seq(
        args.task, args.out, model_opts, train_opts, data_opts, resume=args.resume,
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


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument(
        "--task", required=True, choices=["numbers", "addition"],
        help="numbers: 'three hundred and forty-two' -> 'trois cent quarante-deux' (words); addition: "
        "'123+45' -> '168' (characters)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    p.add_argument(
        "--attention", choices=["none", "additive", "dot", "general"],
        help="none: the context vector only (Sutskever 2014); additive (Bahdanau 2015, the default); dot "
        "or general (Luong 2015)",
    )  # fmt: skip
    p.add_argument("--cell", choices=["lstm", "gru", "rnn"], help="the recurrent cell (default lstm)")
    p.add_argument("--hidden", type=int, help="hidden (and embedding) size (default 128)")
    p.add_argument("--layers", type=int, help="stacked layers of the encoder and the decoder (default 1)")
    p.add_argument("--bidirectional", action="store_true", default=None, help="a bidirectional encoder")
    p.add_argument("--dropout", type=float, help="dropout between layers and before the readout")
    train_flag(p, "batch_size", "pairs per step (default 64)")
    train_flag(p, "steps", "optimizer steps in all")
    train_flag(p, "lr", "AdamW learning rate")
    train_flag(p, "seed", "random seed: the pairs drawn, the weights, the shuffling")
    p.add_argument("--train-pairs", type=int, help="training pairs to draw (numbers 40000, addition 45000)")
    p.add_argument(
        "--digits", type=int,
        help="numbers: below 10^N (default 6, up to 12 = hundreds of billions); addition: operands of up to "
        "N digits (default 3)",
    )  # fmt: skip
    p.add_argument("--valid-pairs", type=int, help="validation pairs, scored during training (1000)")
    p.add_argument("--test-pairs", type=int, help="held-out test pairs (numbers 2000, addition 4000)")
    p.add_argument("--beam", type=int, default=1, help="test-set beam width (default 1)")
    add_training_options(p, sampling=True)
    p.set_defaults(func=cmd_train_seq2seq)


def cmd_translate(args: argparse.Namespace) -> int:
    """Decode one input with a trained seq2seq model; optionally draw its attention."""
    from rnnkit.apps import seq2seq as translation

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
    p.set_defaults(func=cmd_translate)
