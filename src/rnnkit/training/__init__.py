"""Training: checkpoints (the training loop comes next)."""

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_write,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]
