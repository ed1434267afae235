"""Training on the synthetic long-range tasks of :mod:`rnnkit.data.tasks`, with the gradient flow
measured before and after (``rnnkit train task``).

Each step draws a fresh batch from a generator seeded by (seed, step), so there is no data position to
save beyond the step count, and no example is seen twice. The test set is a fixed batch from another
seed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import Tensor

from ...diagnostics.core import gradient_flow
from ...errors import InputError
from ...training.config import TrainConfig
from ...training.trainer import fit
from .config import TRAIN
from .model import TaskModel
from .task import SyntheticTask, baseline


def flow(model: TaskModel, x: Tensor, y: Tensor) -> dict[str, Any]:
    """Gradient flow on (a slice of) the test batch: ``||dL/dh_t||`` per step, and first/last."""
    x, y = x[:, :64], y[:64] if not model.every_step else y[:, :64]
    return gradient_flow(model.rnn, model.features(x).detach(), lambda out: model.loss(model.head(out), y))


def train_synthetic(task: str, out: str | os.PathLike[str], *, cell: str = "lstm", hidden: int = 64,
                    length: int = 100, train_options: TrainConfig | dict[str, Any] | None = None,
                    resume: bool = False, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Train a :class:`TaskModel` on ``task`` with sequences of ``length``; report the test score next
    to the baseline's, and the gradient flow at initialisation and after training."""
    if isinstance(train_options, TrainConfig):
        config = train_options
    else:  # the older keyword form: the preset's fields, with these on top
        config = dataclasses.replace(TRAIN, **(train_options or {}))
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
