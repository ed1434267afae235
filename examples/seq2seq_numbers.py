"""English number words -> French number words with an attention encoder-decoder, end to end.

    python examples/seq2seq_numbers.py            # about a minute on one CPU core; --steps to change

Draws disjoint train / valid / test numbers, trains with rnnkit's one training loop (``fit``), then
translates the held-out numbers greedily and with beam search.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from rnnkit.apps.seq2seq.model import Seq2Seq, Seq2SeqConfig
from rnnkit.apps.seq2seq.task import Seq2SeqTask
from rnnkit.data.pairs import encode_pairs, make_batch, numbers_task
from rnnkit.generate import beam_search, greedy_decode
from rnnkit.training.trainer import TrainConfig, fit


def main(steps: int, pairs: int) -> None:
    torch.set_num_threads(1)  # small matrices: one thread is faster on a shared machine
    splits = numbers_task(n_train=pairs, n_valid=200, n_test=500, max_digits=6, seed=0)
    src, tgt = splits.src_vocab, splits.tgt_vocab
    train, valid = (encode_pairs(p, src, tgt) for p in (splits.train, splits.valid))

    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src.vocab_size, tgt.vocab_size, hidden=96, attention="general"))
    config = TrainConfig(steps=steps, batch_size=64, lr=3e-3, eval_every=max(1, steps // 2), plots=False)
    with tempfile.TemporaryDirectory() as run_dir:
        fit(model, Seq2SeqTask(train, valid, config.batch_size), config, run_dir, progress=False)

    batch = make_batch(encode_pairs(splits.test, src, tgt))
    greedy = greedy_decode(model, batch.src, batch.lengths, max_len=30)
    beam = beam_search(model, batch.src, batch.lengths, beam=4, max_len=30)
    for name, out in (("greedy", greedy), ("beam 4", beam)):
        right = sum(tgt.decode(o) == t for o, (_, t) in zip(out.tokens, splits.test, strict=True))
        print(f"{name}: exact match {right / len(splits.test):.1%} on {len(splits.test)} unseen numbers")
    for (english, french), out in list(zip(splits.test, greedy.tokens, strict=True))[:5]:
        print(f"  {english!r} -> {tgt.decode(out)!r} (expected {french!r})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=800, help="training steps (default 800)")
    parser.add_argument("--pairs", type=int, default=20000, help="training pairs (default 20000)")
    args = parser.parse_args()
    main(args.steps, args.pairs)
