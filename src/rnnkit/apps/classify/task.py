"""Many-to-one: shuffled minibatches of padded series, and the classifier's scoring."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import InputError, check_int
from ...training import distributed
from ...training.task import Task, evaluating


class ClassifyTask(Task):
    """Many-to-one classification of padded, variable-length series: shuffled minibatches, cross-entropy.

    Every epoch visits the training series in a fresh random order, ``batch_size`` at a time (the last
    batch of an epoch may be smaller). The order of epoch e is a permutation drawn from a generator
    seeded with ``(seed, e)`` alone, so the task's place is just ``(epoch, position)``: a resumed run
    draws the same batches without storing a generator, and the draws do not touch torch's global
    generator (which drives dropout).

    Arguments:
        x, lengths, y: the training series, (N, T, C) float zero-padded batch first (or (N, T) int64
            token ids), (N,) int64 true lengths and (N,) int64 class ids.
        valid: the same three for the series :meth:`evaluate` scores.
        batch_size: B series per step (the global batch; each of W ranks takes its share).
        seed: the shuffling seed.
    """

    def __init__(
        self,
        x: Tensor,
        lengths: Tensor,
        y: Tensor,
        valid: tuple[Tensor, Tensor, Tensor],
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        check_int("batch_size", batch_size)
        check_int("seed", seed, minimum=0)
        for name, (a, n, t) in {"training": (x, lengths, y), "validation": valid}.items():
            if a.dim() not in (2, 3) or n.shape != (a.shape[0],) or t.shape != (a.shape[0],):
                raise InputError(
                    f"the {name} series must be x (N, T, C) or token ids (N, T), lengths (N,) and y (N,); "
                    f"got {tuple(a.shape)}, {tuple(n.shape)}, {tuple(t.shape)}"
                )
            if a.shape[0] == 0:
                raise InputError(f"no {name} series")
        self.x, self.lengths, self.y = x, lengths, y
        self.valid = valid
        self.batch_size, self.seed = batch_size, seed
        self.device = torch.device(device)
        self.epoch, self.position = 0, 0  # the next batch starts at order(epoch)[position]
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        if self.batch_size < world:
            raise InputError(
                f"batch_size {self.batch_size} must be at least the number of processes, {world}"
            )
        self.rank, self.world = rank, world

    def order(self, epoch: int) -> Tensor:
        """(N,) the order of the training series in ``epoch``."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.x.shape[0], generator=generator)

    def _next_batch(self) -> Tensor:
        if self.position >= self.x.shape[0]:
            self.epoch, self.position = self.epoch + 1, 0
        index = self.order(self.epoch)[self.position : self.position + self.batch_size]  # (B,)
        self.position += len(index)
        return index.tensor_split(self.world)[self.rank]  # this rank's share

    def _batch(self, x: Tensor, lengths: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        lengths = lengths[index]
        T = int(lengths.max())  # cut the padding no series in this batch needs
        return x[index, :T].to(self.device), lengths.to(self.device)

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        index = self._next_batch()
        x, lengths = self._batch(self.x, self.lengths, index)  # (b, T, C), (b,)
        y = self.y[index].to(self.device)  # (b,)
        logits, _ = model(x, lengths)  # (b, K)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == y).float().mean().item()
        return loss, {"accuracy": accuracy, "items": float(len(index))}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        x, lengths, y = self.valid
        share = torch.arange(x.shape[0]).tensor_split(self.world)[self.rank]
        total, correct = evaluate_classifier(model, x[share], lengths[share], y[share])
        total, correct, count = distributed.all_reduce_sum([total, correct, float(len(share))], self.device)
        return {"loss": total / count, "accuracy": correct / count}

    def state_dict(self) -> dict[str, Any]:
        return {"classify": {"epoch": self.epoch, "position": self.position, "seed": self.seed}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        place = state["classify"]
        if place["seed"] != self.seed:
            raise InputError(f"the checkpoint shuffled with seed {place['seed']}, this task with {self.seed}")
        self.epoch, self.position = place["epoch"], place["position"]


@torch.no_grad()
def predict_classes(model: nn.Module, x: Tensor, lengths: Tensor, batch_size: int = 256) -> Tensor:
    """Logits (N, K) of a classifier for series x (N, T, C) with lengths (N,), in eval mode, in
    batches (each cut to its longest series). Uses no randomness."""
    with evaluating(model):
        device = next(model.parameters()).device
        out = []
        for start in range(0, x.shape[0], batch_size):
            n = lengths[start : start + batch_size]
            T = int(n.max())
            logits, _ = model(x[start : start + batch_size, :T].to(device), n.to(device))  # (b, K)
            out.append(logits.float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_classifier(model: nn.Module, x: Tensor, lengths: Tensor, y: Tensor) -> tuple[float, float]:
    """Summed cross-entropy (nats) and number of correct argmax predictions over the series x (N, T, C)."""
    if x.shape[0] == 0:
        return 0.0, 0.0
    logits = predict_classes(model, x, lengths)  # (N, K)
    total = F.cross_entropy(logits, y, reduction="sum").item()
    return total, float((logits.argmax(-1) == y).sum())
