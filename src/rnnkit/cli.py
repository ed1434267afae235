"""The ``rnnkit`` command line: a table of commands; each one's flags and code live with what it runs.

A command is ``(name, "module:register", help)``: ``register(parser)`` adds the command's flags and
sets ``func``, the function that validates them and calls the library. ``main`` imports only the module
of the command it runs, so ``rnnkit --help`` imports neither torch nor any application.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

# (command, "module:register function", help), in the order --help lists them
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("demo", "rnnkit.commands.demo:register", "build one model per cell family and print shapes"),
    ("train lm", "rnnkit.apps.lm.cli:train", "a character- or word-level language model on a text corpus"),
    (
        "train classify",
        "rnnkit.apps.classify.cli:train",
        "a classifier of labelled series (.ts) or texts (.csv, .tsv, .jsonl)",
    ),
    ("predict", "rnnkit.apps.classify.cli:predict", "label series (.ts) or texts with a trained classifier"),
    (
        "train seq2seq",
        "rnnkit.apps.seq2seq.cli:train",
        "an encoder-decoder on a generated task: number words English -> French, addition",
    ),
    (
        "translate",
        "rnnkit.apps.seq2seq.cli:translate",
        "decode one input with a model from `rnnkit train seq2seq`",
    ),
    ("train tag", "rnnkit.apps.tag.cli:train", "a tagger that restores letter case (many-to-many)"),
    (
        "train spell",
        "rnnkit.apps.spell.cli:train",
        "spell the digit in an 8x8 image, letter by letter (one-to-many)",
    ),
    (
        "train synthetic",
        "rnnkit.apps.synthetic.cli:train",
        "a fresh model on a synthetic long-range task (adding, copy, ...)",
    ),
    ("tag", "rnnkit.apps.tag.cli:tag", "restore the letter case of a text with a trained tagger"),
    (
        "diagnose",
        "rnnkit.commands.diagnose_cli:register",
        "look inside an RNN: gradient flow, Jacobians, gates, PCA, units, attention",
    ),
    (
        "plot",
        "rnnkit.commands.plot:register",
        "draw a run's loss, gradient-norm and learning-rate curves (PNG)",
    ),
    (
        "serve",
        "rnnkit.serve.command:register",
        "explore a trained run in the browser (generate, units, search, PCA, curves)",
    ),
    ("generate", "rnnkit.apps.lm.cli:generate", "generate text from a trained language model"),
    ("export", "rnnkit.apps.lm.cli:export", "export a trained language model to ONNX or torch.export"),
    ("evaluate", "rnnkit.apps.lm.cli:evaluate", "score a text with a trained language model"),
    (
        "ngram",
        "rnnkit.commands.ngram:register",
        "Kneser-Ney character n-gram baseline: fit on one text, score another",
    ),
    (
        "bench",
        "rnnkit.commands.bench:register",
        "time rnnkit against torch.nn and a Python loop, side by side",
    ),
    (
        "tune",
        "rnnkit.commands.tune:register",
        "time impl='auto''s candidates for a grid of cases; record the fastest for this machine",
    ),
)
ALIASES = {"generate": ["sample"], "train synthetic": ["task"]}  # the older names stay

__all__ = ["COMMANDS", "build_parser", "main"]


def __getattr__(name: str) -> Any:
    """rnnkit.training.schedules' names (a test checks they agree), loaded only when asked for."""
    if name in ("LR_SCHEDULES", "OPTIMIZERS", "TEACHER_FORCING"):
        from .training import config

        return getattr(config, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CommandParser(argparse.ArgumentParser):
    """A command's parser, filled in by its register function on first use (parsing or help)."""

    spec: str | None = None  # "module:function" that adds the flags

    def _fill(self) -> None:
        if self.spec is not None:
            module, name = self.spec.split(":")
            self.spec = None
            getattr(importlib.import_module(module), name)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._fill()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._fill()
        return super().format_help()


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The whole parser; with ``lazy`` a command's flags are added only when it is used."""
    from rnnkit import __version__  # no torch import: rnnkit's names load lazily

    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (anywhere; or RNNKIT_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    groups: dict[str, Any] = {}
    for name, register, help in COMMANDS:
        group, _, leaf = name.rpartition(" ")
        if group and group not in groups:
            groups[group] = sub.add_parser(group, help="train a model").add_subparsers(
                dest="task", required=True, parser_class=_CommandParser
            )
        p = (groups[group] if group else sub).add_parser(leaf, help=help, aliases=ALIASES.get(name, []))
        p.spec = register
        p.set_defaults(command_name=name)  # the table's name, e.g. "train lm" (the error boundary reads it)
        if not lazy:
            p._fill()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .commands.boundary import debug_requested, run_command
    from .errors import OptionError

    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser(lazy=True).parse_args(argv)
    except OptionError as e:  # a flag below its minimum (e.g. --hidden 0)
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    args.argv = argv
    for name in ("seq_len", "batch", "features", "hidden", "repeats", "layers", "order", "nproc",
                 "beam", "train_pairs", "valid_pairs", "test_pairs", "digits", "threads"):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"rnnkit: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(args.threads)
    return run_command(args.func, args, debug)  # one line on stderr for any failure; exit 1, 2 or 130


if __name__ == "__main__":
    sys.exit(main())
