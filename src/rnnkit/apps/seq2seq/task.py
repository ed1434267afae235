"""Sequence to sequence: shuffled minibatches of (source, target) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InputError, check_int
from ...training import distributed
from ...training.task import Task, evaluating


class Seq2SeqTask(Task):
    """Sequence to sequence: shuffled minibatches of (source, target) pairs, a new order every epoch.

    Each step takes the next ``batch_size`` pairs of the epoch's order (a permutation drawn from the
    task's own generator, seeded with ``seed``; the last partial batch of an epoch is dropped, so every
    step sees the same number of pairs), and returns the mean cross-entropy over the real target tokens
    (``</s>`` included, padding not). Below teacher forcing 1 the model feeds its own samples
    (``Seq2Seq.forward(..., teacher_forcing=p)``).

    Exact resume: the state is the epoch, the position in it and the generator's state at the epoch's
    start (the permutation is drawn again from it, not stored).

    Arguments:
        train, valid: encoded pairs ``(source ids, target ids)``, without ``<s>`` and ``</s>``.
        batch_size: B pairs per step (the global batch; each of W ranks takes B / W of them).
        seed: seeds the shuffling.
        eval_batch: pairs per validation batch.
    """

    def __init__(
        self,
        train: Sequence[tuple[list[int], list[int]]],
        valid: Sequence[tuple[list[int], list[int]]],
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        eval_batch: int = 500,
    ) -> None:
        self.train, self.valid = list(train), list(valid)
        self.batch_size = check_int("batch_size", batch_size)
        check_int("eval_batch", eval_batch)
        if len(self.train) < self.batch_size:
            raise InputError(f"batch_size {batch_size} is larger than the {len(self.train)} training pairs")
        if not self.valid:
            raise InputError("valid is empty: evaluation needs at least one pair")
        self.device, self.eval_batch = torch.device(device), eval_batch
        self.generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
        self.rows, self.valid_rows = slice(None), slice(None)  # this rank's share
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self.epoch_rng = self.generator.get_state()  # enough to draw this epoch's order again on resume
        self.order = torch.randperm(len(self.train), generator=self.generator).tolist()

    def shard(self, rank: int, world: int) -> None:
        B = self.batch_size
        if B % world:
            raise InputError(f"batch_size {B} must be divisible by the number of processes, {world}")
        self.rows = slice(rank * (B // world), (rank + 1) * (B // world))
        self.valid_rows = slice(rank, None, world)

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        from ...data.pairs import make_batch

        if self.position + self.batch_size > len(self.train):
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()
        picked = self.order[self.position : self.position + self.batch_size][self.rows]
        self.position += self.batch_size
        batch = make_batch([self.train[i] for i in picked])
        src, tgt = batch.src.to(self.device), batch.tgt.to(self.device)  # (S, b), (T + 2, b)
        logits, _ = model(src, batch.lengths, tgt[:-1], teacher_forcing=teacher_forcing)  # (T + 1, b, V)
        y = tgt[1:]  # (T + 1, b): the target and </s>, then padding
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=0)
        with torch.no_grad():
            real = y != 0
            accuracy = ((logits.argmax(-1) == y) & real).sum().item() / max(1, int(real.sum()))
        return loss, {"accuracy": accuracy, "items": float(real.sum())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Teacher-forced loss and token accuracy, and the exact match of greedy decoding, over ``valid``."""
        from ...data.pairs import make_batch
        from ...generate import greedy_decode

        with evaluating(model):
            pairs = self.valid[self.valid_rows]
            total = correct = tokens = exact = 0.0
            for start in range(0, len(pairs), self.eval_batch):
                chunk = pairs[start : start + self.eval_batch]
                batch = make_batch(chunk)
                src, tgt = batch.src.to(self.device), batch.tgt.to(self.device)
                logits, _ = model(src, batch.lengths, tgt[:-1])  # (T + 1, b, V)
                y = tgt[1:]
                real = y != 0
                nats = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=0, reduction="sum")
                total += nats.item()
                correct += ((logits.argmax(-1) == y) & real).sum().item()
                tokens += real.sum().item()
                longest = max(len(t) for _, t in chunk) + 1  # a longer output cannot match any target here
                decoded = greedy_decode(model, src, batch.lengths, max_len=longest)
                exact += sum(out == t for out, (_, t) in zip(decoded.tokens, chunk, strict=True))
        sums = distributed.all_reduce_sum([total, correct, tokens, exact], self.device)
        total, correct, tokens, exact = sums
        return {"loss": total / tokens, "accuracy": correct / tokens, "exact_match": exact / len(self.valid)}

    def state_dict(self) -> dict[str, Any]:
        return {"pairs": {"epoch": self.epoch, "position": self.position, "rng": self.epoch_rng}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["pairs"]
        self.generator.set_state(saved["rng"])
        self._start_epoch()
        self.epoch, self.position = int(saved["epoch"]), int(saved["position"])
