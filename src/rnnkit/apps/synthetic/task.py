"""The synthetic long-range tasks: a fresh batch every step from a generator seeded by (seed, step)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ...data.synthetic import make_batch
from ...errors import InputError
from ...training.task import Task, evaluating
from .model import TASK_SHAPES, TaskModel

TEST_SEED = 10**6  # the test batch's seed: far from any training step's


def baseline(task: str, length: int, x: Tensor, y: Tensor) -> dict[str, float]:
    """The trivial baseline's score on the test set (see each task's docstring)."""
    from ...data import synthetic as tasks

    if task == "adding":
        return {"mse": float(((y - 1.0) ** 2).mean())}
    if task == "copy":
        return {"loss": tasks.copy_memory_baseline(length)}
    if task == "sine":
        return {"mse": tasks.sine_baseline_mse(x, y)}
    return {"accuracy": 0.5}


class SyntheticTask(Task):
    def __init__(self, task: str, length: int, batch_size: int, seed: int, test_size: int = 1000) -> None:
        if task not in TASK_SHAPES:
            raise InputError(f"task must be one of {', '.join(TASK_SHAPES)}; got {task!r}")
        self.task, self.length, self.batch_size, self.seed = task, length, batch_size, seed
        self.test = make_batch(task, test_size, length, TEST_SEED + seed)
        self.step = 0

    def shard(self, rank: int, world: int) -> None:
        raise InputError("rnnkit train task runs in one process")

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        x, y = make_batch(self.task, self.batch_size, self.length, self.seed * 1_000_003 + self.step)
        self.step += 1
        return model.loss(model(x, teacher_forcing), y), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        with evaluating(model):
            x, y = self.test
            prediction = model(x)
        scores = {"loss": float(model.loss(prediction, y))}
        if model.loss_kind == "ce":
            scores["accuracy"] = float((prediction.argmax(-1) == y).float().mean())
        if model.autoregressive:
            scores["free_mse"] = free_running_mse(model, x, y).mean().item()
        return scores

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]


@torch.no_grad()
def free_running_mse(model: TaskModel, x: Tensor, y: Tensor, prime: float = 0.2) -> Tensor:
    """Squared error per generated step (T - P + 1,), averaged over the batch: the model reads the first
    P = ``prime`` * T true values, then only its own predictions (generation; the first generated value
    is predicted from the true values alone). Compare it with the teacher-forced MSE, where every step
    reads the truth: the gap is the distribution shift."""
    P = max(1, int(prime * x.shape[0]))
    truth = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
    truth[:P] = True
    with evaluating(model):
        prediction = model.feed_back(x, truth)  # (T, B, 1)
    return ((prediction[P - 1 :] - y[P - 1 :]) ** 2).mean((1, 2))
