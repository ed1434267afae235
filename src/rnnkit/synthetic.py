"""Training on the synthetic long-range tasks of :mod:`rnnkit.data.tasks`, with the gradient flow
measured before and after (``rnnkit train task``).

Each step draws a fresh batch from a generator seeded by (seed, step), so there is no data position to
save beyond the step count, and no example is seen twice. The test set is a fixed batch from another
seed.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from .data.tasks import make_batch
from .diagnostics.core import gradient_flow
from .errors import InputError
from .models.sequence_model import TASK_SHAPES, TaskModel
from .training.tasks import evaluating
from .training.trainer import TrainConfig, fit

TEST_SEED = 10**6  # the test batch's seed: far from any training step's


def baseline(task: str, length: int, x: Tensor, y: Tensor) -> dict[str, float]:
    """The trivial baseline's score on the test set (see each task's docstring)."""
    from .data import tasks

    if task == "adding":
        return {"mse": float(((y - 1.0) ** 2).mean())}
    if task == "copy":
        return {"loss": tasks.copy_memory_baseline(length)}
    if task == "sine":
        return {"mse": tasks.sine_baseline_mse(x, y)}
    return {"accuracy": 0.5}


class SyntheticTask:
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

    def after_backward(self) -> None:
        pass

    def reset(self) -> None:
        pass

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


def flow(model: TaskModel, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Gradient flow on (a slice of) the test batch: ``||dL/dh_t||`` per step, and first/last."""
    x, y = x[:, :64], y[:64] if not model.every_step else y[:, :64]
    return gradient_flow(model.rnn, model.features(x).detach(), lambda out: model.loss(model.head(out), y))


def train_synthetic(task: str, out: str | os.PathLike[str], *, cell: str = "lstm", hidden: int = 64,
                    length: int = 100, train_options: dict[str, Any] | None = None, resume: bool = False,
                    progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train a :class:`TaskModel` on ``task`` with sequences of ``length``; report the test score next
    to the baseline's, and the gradient flow at initialisation and after training."""
    options = {"steps": 2000, "batch_size": 64, "lr": 1e-3, "eval_every": 200, "checkpoint_every": 1000,
               **(train_options or {})}  # fmt: skip
    config = TrainConfig(**options)
    torch.manual_seed(config.seed)
    model = TaskModel(task, cell, hidden)
    if config.teacher_forcing != "always" and not model.autoregressive:
        raise InputError(
            f"teacher_forcing={config.teacher_forcing!r} needs a task whose next input is its target "
            f"(sine); {task}'s inputs are not the model's predictions"
        )
    data = SyntheticTask(task, length, config.batch_size, config.seed)
    x, y = data.test
    before = flow(model, x, y)
    report = fit(model, data, config, out, resume=resume, progress=progress)
    scores = data.evaluate(model)
    after = flow(model, x, y)
    return {
        "task": task, "cell": cell, "hidden": hidden, "length": length,
        **{k: v for k, v in report.items() if k != "valid_loss"},
        "test": scores, "baseline": baseline(task, length, x, y),
        "gradient_ratio_before": before["ratio"][0], "gradient_ratio_after": after["ratio"][0],
        "gradient_norms_before": before["norms"][0], "gradient_norms_after": after["norms"][0],
    }  # fmt: skip
