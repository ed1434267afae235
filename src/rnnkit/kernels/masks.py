"""Padded batches: which steps are inside each sequence, and per-sequence reversal."""

from __future__ import annotations

import torch
from torch import Tensor


def step_mask(T: int, lengths: Tensor | None) -> Tensor | None:
    """(T, B, 1) bool: step t is inside sequence b (t < lengths[b]); None when nothing is padded."""
    if lengths is None:
        return None
    return (torch.arange(T, device=lengths.device)[:, None] < lengths[None, :])[..., None]


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence within its own length; padding stays at the end. x: (T, B, ...)."""
    if lengths is None:
        return x.flip(0)
    t = torch.arange(x.shape[0], device=x.device)[:, None]  # (T, 1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B)
    return x.gather(0, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))
