"""``rnnkit ngram``: the Kneser-Ney character n-gram baseline."""

from __future__ import annotations

import argparse
import json


def cmd_ngram(args: argparse.Namespace) -> int:
    """Fit a Kneser-Ney character n-gram on one text and score another: the Markov baseline."""
    import torch

    from rnnkit.baselines import KneserNeyLM
    from rnnkit.data import CharTokenizer, read_text

    train, evaluation = read_text(args.train), read_text(args.eval)
    tokenizer = CharTokenizer.fit(train, allow_unknown=bool(set(evaluation) - set(train)))
    model = KneserNeyLM(order=args.order).fit(tokenizer.encode(train), vocab_size=tokenizer.vocab_size)
    report = model.evaluate(tokenizer.encode(evaluation, source=args.eval))
    report["order"] = args.order
    if args.generate:
        prime = tokenizer.encode(args.prime).tolist()
        new = model.sample(prime, args.generate, generator=torch.Generator().manual_seed(args.seed))
        report["text"] = args.prime + tokenizer.decode(new)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.order}-gram: {report['loss']:.4f} nats/char, {report['bits_per_token']:.4f} bits/char, "
            f"perplexity {report['perplexity']:.3f} over {report['tokens']:,} characters"
        )
        if args.generate:
            print(report["text"])
    return 0


def register(p: argparse.ArgumentParser) -> None:
    """The flags of this command."""
    p.add_argument("--order", type=int, default=6, help="n (default 6)")
    p.add_argument("--train", required=True, help="text file to fit on")
    p.add_argument("--eval", required=True, help="text file to score")
    p.add_argument("--generate", type=int, default=0, help="also sample this many characters")
    p.add_argument("--prime", default="\n", help="text to start sampling from (default: a newline)")
    p.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_ngram)
