"""The command-line side of text classification: its options and its three commands.

``cli.py`` hands over here when ``rnnkit train classify --train`` names a .csv/.tsv/.jsonl file, when
``rnnkit predict`` gets ``--text`` / ``--file`` or a text classifier's run, and for ``rnnkit diagnose
attention``. Only argparse is imported at module level, so ``rnnkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# flags that only .ts series take, and flags that only text files take (each refused on the other path)
SERIES_ONLY = {"model": "--model", "input_noise": "--input-noise"}
TEXT_ONLY = {
    "text_column": "--text-column", "label_column": "--label-column", "tokenizer": "--tokenizer",
    "min_count": "--min-count", "vocab_size": "--vocab-size", "max_tokens": "--max-tokens",
    "embed": "--embed",
}  # fmt: skip


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options of ``train classify`` for text files."""
    g = p.add_argument_group("text files (--train/--test .csv, .tsv or .jsonl)")
    g.add_argument(
        "--text-column", help="the column (CSV/TSV) or key (JSONL) holding the text (default text)"
    )
    g.add_argument("--label-column", help="the column or key holding the class label (default label)")
    g.add_argument(
        "--tokenizer", choices=["word", "char"],
        help="word (default): words and punctuation marks; char: one token per character",
    )  # fmt: skip
    g.add_argument(
        "--min-count", type=int, help="tokens seen fewer times in --train become <unk> (default 2)"
    )
    g.add_argument("--vocab-size", type=int, help="keep at most the N most frequent tokens (default: all)")
    g.add_argument("--max-tokens", type=int, help="read at most this many tokens of each text (default 400)")
    g.add_argument("--embed", type=int, help="embedding size (default 64)")


def add_predict_options(p: argparse.ArgumentParser) -> None:
    """``predict``'s options for a text classifier's run."""
    p.add_argument("--text", action="append", help="a text to classify (repeatable)")
    p.add_argument(
        "--file",
        help="texts to classify: a .csv/.tsv/.jsonl file (scored if it has labels), or any text file with "
        "one text per line",
    )  # fmt: skip


def check_series_args(args: argparse.Namespace) -> None:
    """Refuse text-only flags on the .ts path."""
    given = [flag for name, flag in TEXT_ONLY.items() if getattr(args, name, None) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: only for text files (.csv, .tsv, .jsonl); --train is {args.train}"
        )


def train(args: argparse.Namespace, training_overrides: dict[str, Any]) -> int:
    """``rnnkit train classify`` on a text file: report test accuracy, macro F1 and per-class scores."""
    from rnnkit import text_classify
    from rnnkit.training import distributed

    given = [flag for name, flag in SERIES_ONLY.items() if getattr(args, name, None) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only for .ts series; --train is a text file ({args.train})")
    text_opts = text_classify.TextOptions(**{
        name: getattr(args, name) for name in TEXT_ONLY if name != "embed" and getattr(args, name) is not None
    })  # fmt: skip
    model_opts, train_opts = text_classify.options_from(
        embed=args.embed, cell=args.cell, hidden=args.hidden, layers=args.layers,
        bidirectional=args.bidirectional, pool=args.pool, dropout=args.dropout, batch_size=args.batch,
        steps=args.steps, lr=args.lr, seed=args.seed, minutes=args.minutes, **training_overrides,
    )  # fmt: skip
    if args.clip_norm == 0:
        train_opts["clip_norm"] = None  # 0 turns clipping off (a None override would keep the preset's)
    report = text_classify.train_text_classifier(
        args.train, args.test, args.out, model_opts, train_opts, text_opts,
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
        f"{report['train']['accuracy']:.4f} "
        f"({report['parameters']:,} parameters, a vocabulary of {report['vocab_size']:,}, weights of "
        f"{report['checkpoint']}, {report['elapsed_s']:.1f} s)"
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


def wants_text(args: argparse.Namespace) -> bool:
    """Whether ``predict`` is for a text classifier: --text / --file given, or the run is one."""
    from rnnkit.text_classify import is_text_run

    return bool(args.text or args.file) or is_text_run(args.run_dir)


def predict(args: argparse.Namespace) -> int:
    """``rnnkit predict RUN --text ... | --file F``: each text's label and class probabilities."""
    from rnnkit import text_classify

    if args.data is not None and args.file is not None:
        raise ValueError("give the texts' file once: as the positional argument or as --file")
    report = text_classify.predict_texts(
        args.run_dir, args.text, args.file or args.data, which=args.checkpoint
    )
    if args.json:
        print(json.dumps(report))
        return 0
    for p in report["predictions"]:  # one line per text, in order
        ranked = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])
        print(f"{p['label']}\t" + "  ".join(f"{c} {v:.3f}" for c, v in ranked))
    if "scores" in report:
        print(format_scores(report["scores"]), file=sys.stderr)
    return 0


def attention(args: argparse.Namespace) -> int:
    """``rnnkit diagnose attention --run RUN --text ...``: the attention weights per token, as a PNG."""
    from rnnkit import text_classify

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
    report = text_classify.attention_map(args.run, text, args.out or "attention.png")
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"attention: {report['label']} -> {report['plot']}")
    top = sorted(zip(report["tokens"], report["weights"], strict=True), key=lambda tw: -tw[1])[:10]
    print("  most weight: " + ", ".join(f"{t.strip() or repr(t)} {w:.3f}" for t, w in top))
    return 0
