"""Experiment 3 of issue 7: the truncation length tau of truncated BPTT against the length of a dependency.

    python benchmarks/experiments/truncation.py [--delay 20] [--taus 5 10 20 25 30 40 60] [--seeds 0 1]

A character-level LSTM language model reads a stream of segments ``s f f ... f ? s``
(``rnnkit.data.synthetic.delayed_recall``): the token after the cue ``?`` repeats the symbol ``s`` seen
``delay + 1`` steps earlier; the fillers are noise. It trains with truncated BPTT exactly as ``rnnkit
train lm`` does (B streams, chunks of tau tokens, the state carried across chunks, gradients cut at chunk
boundaries), every run for the same number of optimizer steps.

The state is carried forward, so the symbol *could* reach the cue; but a loss at a cue receives gradient
only from the steps of its own chunk. Below tau = delay + 1 no chunk holds both the symbol and its cue, so
no gradient ever connects them; above it, the chunks that hold both teach a rule that then works across
chunk boundaries too. (Measured, short chunks still learn a little of it: see docs/results.md.) Numbers
to ``<out>/truncation.json``, the plot to ``docs/truncation.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from rnnkit.apps.lm.model import LanguageModel, LMConfig
from rnnkit.apps.lm.run import train_lm
from rnnkit.data.synthetic import delayed_recall, recall_cue
from rnnkit.training.config import TrainConfig

SYMBOLS, FILLERS = 8, 4


@torch.no_grad()
def recall_scores(model: LanguageModel, ids: torch.Tensor, streams: int = 16) -> dict[str, float]:
    """Accuracy and cross-entropy of the token after each cue, the test stream read in one pass per
    stream (state carried all the way, as at evaluation)."""
    model.eval()
    n = ids.numel() // streams
    x = ids[: n * streams].view(streams, n).t()  # (T, B)
    logits, _ = model(x[:-1])
    at_cue = x[:-1] == recall_cue(SYMBOLS, FILLERS)
    target = x[1:][at_cue]
    picked = logits[at_cue]
    return {
        "recall_accuracy": (picked.argmax(-1) == target).float().mean().item(),
        "recall_loss": torch.nn.functional.cross_entropy(picked, target).item(),
    }


def run(out: Path, tau: int, seed: int, args: argparse.Namespace, train: torch.Tensor,
        valid: torch.Tensor) -> dict:  # fmt: skip
    torch.manual_seed(seed)
    model = LanguageModel(LMConfig(recall_cue(SYMBOLS, FILLERS) + 1, "lstm", hidden=args.hidden))
    steps = args.steps
    config = TrainConfig(steps=steps, batch_size=args.batch, seq_len=tau, lr=args.lr, plots=False, seed=seed,
                         eval_every=max(1, steps // 5), checkpoint_every=steps)  # fmt: skip
    start = time.perf_counter()
    train_lm(model, train, valid, config, out, progress=False)
    return {"tau": tau, "seed": seed, "steps": steps, "seconds": round(time.perf_counter() - start, 1),
            **recall_scores(model, valid)}  # fmt: skip


def plot(results: list[dict], delay: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = sorted({r["tau"] for r in results})
    fig, ax = plt.subplots(figsize=(7, 4))
    by_tau = [[r["recall_accuracy"] for r in results if r["tau"] == t] for t in taus]
    ax.plot(taus, [sum(a) / len(a) for a in by_tau], "o-", color="tab:blue", label="LSTM, mean over seeds")
    for t, accs in zip(taus, by_tau, strict=True):
        ax.scatter([t] * len(accs), accs, color="tab:blue", alpha=0.35, s=14)
    ax.axhline(1 / SYMBOLS, color="grey", ls="--", label=f"chance (1/{SYMBOLS})")
    ax.axvline(delay + 1, color="tab:red", ls=":", label=f"dependency length ({delay + 1} steps)")
    ax.set(xlabel="truncation length tau (tokens per chunk)", ylabel="accuracy of the recalled symbol",
           ylim=(0, 1.05), xscale="log",
           title=f"Recall of a {delay + 1}-step dependency vs the truncation length")  # fmt: skip
    ax.set_xticks(taus, [str(t) for t in taus])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay", type=int, default=20, help="fillers + 1 between a symbol and its cue")
    parser.add_argument("--taus", type=int, nargs="+", default=[5, 10, 20, 25, 30, 40, 60])
    parser.add_argument("--steps", type=int, default=3000, help="optimizer steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", default="runs/truncation")
    parser.add_argument("--plot", default="docs/truncation.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    segments = args.steps * args.batch * max(args.taus) // (args.delay + 2) + 1
    train = delayed_recall(segments, args.delay, seed=0, symbols=SYMBOLS, fillers=FILLERS)
    valid = delayed_recall(2000, args.delay, seed=1, symbols=SYMBOLS, fillers=FILLERS)
    out, results = Path(args.out), []
    for tau, seed in [(t, s) for s in args.seeds for t in args.taus]:
        r = run(out / f"tau{tau}-seed{seed}", tau, seed, args, train, valid)
        results.append(r)
        print(f"tau {tau:4d} seed {seed}: recall accuracy {r['recall_accuracy']:.3f}, "
              f"loss {r['recall_loss']:.3f} "
              f"(chance {1 / SYMBOLS:.3f}, {math.log(SYMBOLS):.3f}); {r['steps']} steps, {r['seconds']} s",
              flush=True)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "truncation.json").write_text(json.dumps({"delay": args.delay, "runs": results}))
    plot(results, args.delay, Path(args.plot))
    print(f"wrote {args.plot} and {out / 'truncation.json'}")


if __name__ == "__main__":
    main()
