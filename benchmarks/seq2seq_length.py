"""Exact match against input length: does the fixed-length context vector forget long inputs?

Scores trained ``rnnkit train seq2seq`` run directories on their own held-out test pairs (drawn again from
each run's data.json and seed), grouped by the source's length in tokens, and draws one line per run.

    python benchmarks/seq2seq_length.py runs/num_none runs/num_additive --out docs/seq2seq_length.png

Prints one JSON object: per run, the attention form, the overall exact match and {length: [matches,
count]}.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from rnnkit.apps.seq2seq import decode_pairs, exact_match, load_seq2seq, load_splits


def by_length(run_dir: str) -> dict:
    trained = load_seq2seq(run_dir)
    splits = load_splits(run_dir)
    results = decode_pairs(trained, splits.test)
    groups: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for src, ref, hyp in results:
        n = len(trained.src_vocab.split(src))
        groups[n][0] += ref == hyp
        groups[n][1] += 1
    config = trained.model.config
    label = {"none": "context vector only"}.get(config.attention, f"{config.attention} attention")
    label += f", {config.cell.upper()} {config.hidden}" + (", bidirectional" if config.bidirectional else "")
    return {
        "run_dir": run_dir,
        "attention": label,
        "exact_match": exact_match(results),
        "by_length": {n: groups[n] for n in sorted(groups)},
        "failures": [(s, r, h) for s, r, h in results if r != h][:10],
    }


def plot(reports: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for r in reports:
        lengths = list(r["by_length"])
        rate = [100 * r["by_length"][n][0] / r["by_length"][n][1] for n in lengths]
        ax.plot(lengths, rate, marker="o", label=f"{r['attention']}: {100 * r['exact_match']:.1f}% overall")
    ax.set_ylabel("exact match on held-out pairs (%)")
    ax.set_title("English -> French number words (held-out numbers): exact match against input length")
    ax.grid(alpha=0.3)
    ax.legend()
    first = reports[0]["by_length"]
    hist.bar(list(first), [first[n][1] for n in first], color="gray")
    hist.set_xlabel("input length (word tokens)")
    hist.set_ylabel("test pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="run directories of `rnnkit train seq2seq`")
    parser.add_argument("--out", default="docs/seq2seq_length.png", help="the PNG to write")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reports = [by_length(d) for d in args.run_dirs]
    plot(reports, Path(args.out))
    print(json.dumps({"plot": args.out, "runs": reports}))


if __name__ == "__main__":
    main()
