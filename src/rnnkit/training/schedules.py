"""Optimizers and learning-rate schedules, built from a :class:`TrainConfig`.

The optimizers and LR schedulers are torch's own; this module only maps the config's names onto them
and keeps warmup and reduce-on-plateau working together (torch's ``SequentialLR`` cannot chain
``ReduceLROnPlateau``).
The teacher-forcing schedule is :mod:`rnnkit.training.sampling`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .config import LR_SCHEDULES, OPTIMIZERS, TEACHER_FORCING
from .sampling import teacher_forcing_ratio

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "TEACHER_FORCING", "LRSchedule", "make_optimizer",
           "teacher_forcing_ratio"]  # fmt: skip


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The config's optimizer over ``params`` with its lr, weight decay and (SGD, RMSprop) momentum."""
    lr, wd, momentum = config.lr, config.weight_decay, config.momentum
    if config.optimizer == "adamw":  # decoupled weight decay (Loshchilov & Hutter 2019)
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adam":  # weight decay as an L2 term added to the gradient
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=wd)


class LRSchedule:
    """Linear warmup, then constant, cosine decay, step decay or reduce-on-plateau.

    Call :meth:`after_step` after every optimizer step and :meth:`after_eval` after every validation.

    - cosine: from lr down to ``lr * min_lr_ratio`` at ``config.steps``,
      ``lr_i = lr (r + (1 - r) (1 + cos(pi p)) / 2)`` with p the fraction of the steps after warmup;
    - step: multiply by ``gamma`` every ``step_size`` steps after warmup;
    - plateau: multiply by ``gamma`` after ``plateau_patience`` validations without a new best
      (``torch.optim.lr_scheduler.ReduceLROnPlateau``), never below ``lr * min_lr_ratio``.
    """

    def __init__(self, config: TrainConfig, optimizer: torch.optim.Optimizer) -> None:
        self.kind = config.schedule
        warmup, total = config.warmup_steps, config.steps
        ratio, gamma, step_size = config.min_lr_ratio, config.gamma, config.step_size

        def factor(i: int) -> float:  # i optimizer steps taken
            if i < warmup:
                return (i + 1) / (warmup + 1)  # never 0: the first step already moves
            after = i - warmup
            if self.kind == "cosine":
                p = min(1.0, after / max(1, total - warmup))
                return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * p))
            if self.kind == "step":
                return gamma ** (after // step_size)
            return 1.0

        self.lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        self.plateau = None
        if self.kind == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                factor=gamma,
                patience=config.plateau_patience,
                min_lr=config.lr * ratio,
            )
        self.warmup = warmup
        self._steps = 0

    def after_step(self) -> None:
        self._steps += 1
        # with plateau, the lambda only ramps up: after warmup the plateau scheduler owns the lr
        if self.plateau is None or self._steps <= self.warmup:
            self.lambda_lr.step()

    def after_eval(self, valid_loss: float) -> None:
        if self.plateau is not None and self._steps >= self.warmup and math.isfinite(valid_loss):
            self.plateau.step(valid_loss)

    def state_dict(self) -> dict[str, Any]:
        lam = {k: v for k, v in self.lambda_lr.state_dict().items() if k != "lr_lambdas"}
        return {
            "steps": self._steps,
            "lambda": lam,
            "plateau": None if self.plateau is None else self.plateau.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._steps = state["steps"]
        self.lambda_lr.load_state_dict({**state["lambda"], "lr_lambdas": [None]})
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])
