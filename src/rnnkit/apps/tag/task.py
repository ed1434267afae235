"""Tagging every character: random windows of a text, the loss summed over time steps."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.casing import tag_scores
from ...errors import InputError
from ...training.batches import random_windows
from ...training.task import Task, evaluating

EVAL_WINDOW = 512  # validation reads the text in windows this long (context on both sides inside each)


class TagTask(Task):
    """Random windows of ``window`` characters from the training text; loss summed over time steps and
    averaged over the batch. Step k's windows depend only on (seed, k), so the state is the step count."""

    def __init__(self, train: tuple[Tensor, Tensor], valid: tuple[Tensor, Tensor, Tensor],
                 batch_size: int, window: int, seed: int, device: torch.device) -> None:  # fmt: skip
        (self.x, self.y), (self.vx, self.vy, self.vletters) = train, valid
        self.batch_size, self.window, self.seed, self.device = batch_size, window, seed, device
        self.step, self.columns = 0, slice(None)

    def shard(self, rank: int, world: int) -> None:
        if self.batch_size % world:
            raise InputError(
                f"batch_size {self.batch_size} must be divisible by the number of processes, {world}"
            )
        b = self.batch_size // world
        self.columns = slice(rank * b, (rank + 1) * b)

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        starts = random_windows(len(self.x), self.window, self.batch_size, self.seed, self.step)[self.columns]
        self.step += 1
        idx = starts[None, :] + torch.arange(self.window)[:, None]  # (T, b)
        x, y = self.x[idx].to(self.device), self.y[idx].to(self.device)
        scores = model(x)  # (T, b, K)
        # per-step losses summed over time, averaged over the batch
        loss = F.cross_entropy(scores.flatten(0, 1), y.flatten(), reduction="sum") / x.shape[1]
        with torch.no_grad():
            accuracy = (scores.argmax(-1) == y).float().mean().item()
        return loss, {"accuracy": accuracy, "items": float(y.numel())}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        pred, scores = predict_tags(model, self.vx, self.device)
        loss = F.cross_entropy(scores, self.vy).item()  # per character
        return {"loss": loss, **tag_scores(pred, self.vy, self.vletters)}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]


@torch.no_grad()
def predict_tags(model: nn.Module, ids: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Tags (N,) and scores (N, K) for a whole text, read in windows of :data:`EVAL_WINDOW`."""
    with evaluating(model):
        n, w = len(ids), EVAL_WINDOW
        count = math.ceil(n / w)
        padded = torch.zeros(count * w, dtype=torch.long)
        padded[:n] = ids
        lengths = torch.full((count,), w)
        lengths[-1] = n - (count - 1) * w
        scores = []
        for chunk in range(0, count, 256):  # (w, b) at a time
            x = padded.view(count, w)[chunk : chunk + 256].t().to(device)
            s = model(x, lengths=lengths[chunk : chunk + 256])  # (w, b, K)
            scores.append(s.transpose(0, 1).reshape(-1, s.shape[-1]).cpu())
    out = torch.cat(scores)[:n]  # (N, K)
    return out.argmax(-1), out
