"""The ``rnnkit serve`` subcommand: its options, then one call to :func:`rnnkit.serve.serve`.
(Imports nothing heavy: building the CLI's parser stays instant.)"""

from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to its parser (the command table in cli.py names this function)."""
    p.add_argument("run_dir", help="a run directory (language model; classifier and seq2seq runs: curves, "
                   "attention)")  # fmt: skip
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--text", action="append", metavar="FILE", help="a text file to offer in the page (repeatable)"
    )
    p.add_argument(
        "--max-chars", type=int, default=5000, help="longest text a request may trace (characters)"
    )
    p.add_argument(
        "--max-generate", type=int, default=2000, help="longest sample a request may ask for (tokens)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import serve

    for name in ("max_chars", "max_generate"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    serve(args.run_dir, args.host, args.port, texts=args.text, max_chars=args.max_chars,
          max_generate=args.max_generate)  # fmt: skip
    return 0
