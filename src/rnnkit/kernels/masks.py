"""Padded batches: which steps are inside each sequence, and per-sequence reversal."""

from __future__ import annotations

import torch
from torch import Tensor


def step_mask(T: int, lengths: Tensor | None, feature_dims: int = 1) -> Tensor | None:
    """(T, B, 1) bool (with ``feature_dims`` ones: (T, B, 1, 1, 1) for (T, B, C, H, W) inputs): step t
    is inside sequence b (t < lengths[b]); None when nothing is padded."""
    if lengths is None:
        return None
    inside = torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]  # (T, B)
    return inside.view(*inside.shape, *([1] * feature_dims))


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence within its own length; padding stays at the end. x: (T, B, ...)."""
    if lengths is None:
        return x.flip(0)
    t = torch.arange(x.shape[0], device=x.device)[:, None]  # (T, 1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B)
    return x.gather(0, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))
