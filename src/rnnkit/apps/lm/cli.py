"""The language model's commands: ``train lm``, ``generate`` (``sample``), ``export``, ``evaluate``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ...commands.shared import add_training_options, torchrun, train_flag, unescape
from ...configs import add_options, override
from ...training.config import TrainConfig
from .config import PRESETS, TOKENIZERS, LMConfig


def cmd_train_lm(args: argparse.Namespace) -> int:
    """Train a character- or word-level language model; report the validation loss per token."""
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return torchrun(args.nproc, args.argv)
    from rnnkit.training import distributed

    from . import run

    model, train = configs(args)
    report = run.train_language_model(
        args.data, args.out, model, train, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        reset_on=unescape(args.reset_text), resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    report["run_dir"] = str(report["run_dir"])
    if not distributed.is_main():
        return 0  # rank 0 reports for all
    if args.json:
        print(json.dumps(report))
    else:
        unit = run.token_unit(report["run_dir"])
        print(
            f"trained {report['steps']} steps -> {report['run_dir']}: valid loss {report['valid_loss']:.4f} "
            f"nats/{unit}, {report['valid_bpc']:.4f} bits/{unit} ({report['parameters']:,} parameters, "
            f"a vocabulary of {report['vocab_size']:,} {unit}s)"
        )
    return 0


def configs(args: argparse.Namespace) -> tuple[LMConfig, TrainConfig]:
    """The preset's model and training configs, with the flags given on top."""
    preset_model, preset_train = PRESETS[args.preset or "quick"]
    return override(preset_model, args), override(preset_train, args)


def train(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--data", help="a named dataset (tinyshakespeare, shakespeare) or a path (required)")
    p.add_argument("--out", required=True, help="the run directory to create (or resume)")
    p.add_argument("--preset", choices=list(PRESETS), help="a set of options (default: quick)")
    p.add_argument(
        "--tokenizer", choices=TOKENIZERS,
        help="one token per character (default), or per word or punctuation mark (with its leading space)",
    )  # fmt: skip
    p.add_argument(
        "--vocab-size", type=int,
        help="with --tokenizer word: keep the N most frequent tokens of the training text (two of them "
        "<unk>); rarer words become <unk> (default: every word)",
    )  # fmt: skip
    p.add_argument(
        "--reset-on", metavar="TOKEN", dest="reset_text",  # reset_on is the id TrainConfig gets
        help="a token that starts each document (e.g. '\\f'; backslash escapes allowed): the hidden "
        "state restarts there instead of running from one document into the next",
    )  # fmt: skip
    add_options(p, LMConfig, PRESETS["quick"][0])
    train_flag(p, "seq_len", "truncated BPTT window (tau)", PRESETS["quick"][1])
    train_flag(p, "batch_size", "parallel streams per step", PRESETS["quick"][1])
    train_flag(p, "steps", "optimizer steps in all", PRESETS["quick"][1])
    train_flag(p, "lr", "AdamW learning rate", PRESETS["quick"][1])
    train_flag(p, "seed", "random seed", PRESETS["quick"][1])
    add_training_options(p, bptt=True, sampling=True)
    # for the error boundary: the run it makes, what a fresh run needs, its sizes for the memory check
    p.set_defaults(func=cmd_train_lm, makes_run="language-model", fresh_needs=("data",), configs=configs)


def cmd_sample(args: argparse.Namespace) -> int:
    """Generate text from a trained language model's run directory, printed as it is sampled."""
    import torch

    from rnnkit import generate

    from . import run as lm

    trained = lm.load_language_model(args.run_dir, which=args.checkpoint)
    generator = torch.Generator().manual_seed(args.seed)
    # every option and the prime are checked here, before anything is printed
    pieces = generate.iter_text(
        trained.model, trained.tokenizer, args.prime, args.length, stop=args.stop,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
        generator=generator,
    )  # fmt: skip
    if args.json:  # one object at the end, nothing streamed
        new = list(pieces)
        text = args.prime + "".join(new)
        stopped = args.stop is not None and args.stop in text[len(args.prime) :]
        print(json.dumps({"run_dir": str(trained.run_dir), "prime": args.prime, "text": text,
                          "tokens": len(new), "stopped": stopped}))  # fmt: skip
        return 0
    try:
        sys.stdout.write(args.prime)
        for piece in pieces:  # one sampling step per piece: flush it before taking the next
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other Unix tools do
        pieces.close()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    return 0


def generate(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train lm`")
    p.add_argument("--prime", default="\n", help="text to start from (default: a newline)")
    p.add_argument(
        "--length", type=int, default=500, help="tokens to generate: characters, or words (default 500)"
    )
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (default 0.8)")
    p.add_argument("--top-k", type=int, help="sample from the k most likely tokens only")
    p.add_argument("--top-p", type=float, help="nucleus sampling: the smallest set with this mass")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument(
        "--stop", metavar="STRING",
        help="stop as soon as the generated text contains STRING (printed through its end)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument(
        "--json", action="store_true",
        help="print one JSON object on stdout at the end (text, tokens, stopped) instead of streaming",
    )  # fmt: skip
    p.set_defaults(func=cmd_sample, needs_run="language-model")


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained language model to ONNX (ONNX Runtime) or torch.export; report the file."""
    from . import export

    try:
        report = export.export_run(args.run_dir, args.out, args.format, which=args.checkpoint)
    except ModuleNotFoundError as e:  # the [export] extra is not installed
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report))
    else:
        inputs = ", ".join(s["name"] for s in report["inputs"])
        outputs = ", ".join(s["name"] for s in report["outputs"])
        kind = report["format"] + (f" opset {report['opset']}" if report["opset"] else "")
        print(f"{report['path']}: {kind}, {report['size']:,} bytes; ({inputs}) -> ({outputs})")
    return 0


def export(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train lm`")
    p.add_argument(
        "--format", choices=["onnx", "torch"], default="onnx",
        help="onnx (default: ONNX's LSTM/GRU/RNN operators, for ONNX Runtime) or torch (torch.export, .pt2)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="the file to write (atomically), e.g. model.onnx")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_export, needs_run="language-model")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score any text with a trained language model (its own vocabulary)."""
    from . import run as lm

    report = lm.evaluate_text(args.run_dir, args.data, which=args.checkpoint)
    if args.json:
        print(json.dumps(report))
    else:
        unit = lm.token_unit(args.run_dir)
        print(
            f"{args.data}: {report['loss']:.4f} nats/{unit}, {report['bits_per_token']:.4f} bits/{unit}, "
            f"perplexity {report['perplexity']:.3f} over {report['tokens']:,} {unit}s "
            f"({report['unknown']} unknown)"
        )
    return 0


def evaluate(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("run_dir", help="a run directory made by `rnnkit train lm`")
    p.add_argument("--data", required=True, help="a text file to score")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or step-NNNNNN")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_evaluate, needs_run="language-model")
