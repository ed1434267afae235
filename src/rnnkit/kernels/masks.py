"""Padded batches (which steps are inside each sequence, per-sequence reversal) and the per-forward
controls of a recurrence (state dropout and zoneout masks, resets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Recurrence:
    """What changes one layer-and-direction's recurrence in one forward pass. The layer samples it
    once (``layers/regularization.py``) and hands the same object to whichever runner it picked, so the
    reference loop and the fused kernels see the same masks.

    Attributes (B batch, n a state field's size, T steps):
        state_mask: (B, n) multiplies the state where it enters the recurrent products (variational
            state dropout, Gal & Ghahramani 2016: one mask per sequence, already scaled by 1/(1-p)); the
            state carried on is not masked. None: no state dropout.
        zoneout: one entry per state field, None or (T, B, n) (a broadcast view at evaluation): the
            weight of the previous value, ``new = z * previous + (1 - z) * candidate`` (Krueger et al.
            2017; 0/1 masks in training, the probability p at evaluation). Indexed in processing order.
        reset: (T, B) bool in the input's time order: before step t, stream b starts again from
            ``init`` (a document boundary). None: no resets.
        init: the state a reset goes to, (B, n) per field, in the cell's state structure.
    """

    state_mask: Tensor | None = None
    zoneout: tuple[Tensor | None, ...] | None = None
    reset: Tensor | None = None
    init: Any = None

    def zone(self, field: int) -> Tensor | None:
        return self.zoneout[field] if self.zoneout is not None else None


def reset_in_processing_order(
    reset: Tensor | None, lengths: Tensor | None, reverse: bool, alive: Tensor | None
) -> Tensor | None:
    """(T, B) resets in input order -> (T, B, 1) in the order a direction runs, or None.

    Forward: reset[t] acts before step t. Reverse: a document that starts at t+1 ends at t, so the
    reverse direction restarts before it reads step t (reset[t+1]), then each sequence is reversed
    within its length. Padded steps never reset (their state stays frozen)."""
    if reset is None:
        return None
    if alive is not None:  # alive is the same in both orders: padding stays at the end
        reset = reset & alive[..., 0]
    if reverse:
        reset = reverse_padded(torch.cat([reset[1:], torch.zeros_like(reset[:1])]), lengths)
    return reset[..., None]
