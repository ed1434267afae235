"""What every application shares to train: :func:`~rnnkit.training.trainer.fit` (the loop), the
:class:`~rnnkit.training.task.Task` protocol, :class:`~rnnkit.training.config.TrainConfig`, optimizers
and schedules, checkpoints and distributed training.

Names load lazily, so ``rnnkit.training.config`` (and ``rnnkit --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Checkpoint": "checkpoint", "CheckpointError": "checkpoint", "atomic_write": "checkpoint",
    "capture_rng": "checkpoint", "load_checkpoint": "checkpoint", "restore_rng": "checkpoint",
    "save_checkpoint": "checkpoint", "TrainConfig": "config", "Task": "task", "fit": "trainer",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
