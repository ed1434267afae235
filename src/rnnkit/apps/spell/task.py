"""One-to-many: shuffled minibatches of (image, word), a per-character loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InputError
from ...training.batches import EpochBatches
from ...training.task import Task, evaluating
from .model import Speller

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class SpellTask(Task):
    """Shuffled minibatches of (image, word); the loss is the per-step cross-entropy summed over the
    word's characters and its <eos> (padding ignored), averaged over the batch."""

    def __init__(self, model: Speller, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                 batch_size: int, seed: int) -> None:  # fmt: skip
        self.x, self.y = train
        self.tx, self.ty = test
        self.targets, self.mask = targets_for(model, self.y)
        self.test_targets, self.test_mask = targets_for(model, self.ty)
        self.batches = EpochBatches(len(self.y), batch_size, seed)

    def shard(self, rank: int, world: int) -> None:
        raise InputError("rnnkit train spell runs in one process (the data set is 1,797 images)")

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        idx = self.batches.next()
        targets, mask = self.targets[:, idx], self.mask[:, idx]
        scores = model(self.x[idx], targets, teacher_forcing=teacher_forcing)  # (L, b, V)
        loss = masked_loss(scores, targets, mask) / len(idx)
        return loss, {"items": float(mask.sum())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        with evaluating(model):
            scores = model(self.tx, self.test_targets)
            loss = masked_loss(scores, self.test_targets, self.test_mask) / len(self.ty)
            words = model.spell(self.tx)
        exact = sum(w == WORDS[int(d)] for w, d in zip(words, self.ty, strict=True)) / len(words)
        return {"loss": loss.item(), "exact_match": exact}

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])


def targets_for(model: Speller, digits: Tensor) -> tuple[Tensor, Tensor]:
    """Target ids (L, N) and a mask (L, N), True up to and including each word's <eos>."""
    words = [WORDS[int(d)] for d in digits]
    targets = model.encode_words(words)  # (L, N)
    lengths = torch.tensor([len(w) + 1 for w in words])
    mask = torch.arange(targets.shape[0])[:, None] < lengths[None, :]
    return targets, mask


def masked_loss(scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    per_step = F.cross_entropy(scores.flatten(0, 1), targets.flatten(), reduction="none")
    return (per_step * mask.flatten()).sum()
