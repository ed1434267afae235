"""What the fused kernels of every family share: the input side (one big product for all steps), the
helpers for state dropout, zoneout, resets and padding, and the activations with their derivatives."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...cells.base import State
from ..masks import Recurrence
from ..packed import linear, weight_grad

# activation (in place), and its derivative written in terms of the activation's *output* y
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (torch.tanh_, lambda y: 1 - y * y),
    "sigmoid": (torch.sigmoid_, lambda y: y * (1 - y)),
    "relu": (torch.relu_, lambda y: (y > 0).to(y.dtype)),
    "identity": (lambda v: v, torch.ones_like),
}

# what a kernel returns: outputs (T, B, O), the final state, and, for a trace, every step's state
# (T, B, n) per field and the gate activations name -> (T, B, H) ({} for cells without gates)
Steps = tuple[Tensor, State, State, dict[str, Tensor]]


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def _project(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """The input projection of all steps at once: (T, B, F) -> (T, B, G), one big GEMM."""
    T, B, _ = x.shape
    return linear(w, T * B)(_flat(x), b).view(T, B, w.shape[0])


def _freeze(alive: Tensor | None, t: int, new: Tensor, old: Tensor) -> None:
    """Past its end a sequence keeps its state: new <- old there (in place)."""
    if alive is not None:
        torch.where(alive[t], new, old, out=new)


# -- the controls of one forward: state dropout, zoneout, resets (see masks.Recurrence) ---------------
# Forward: a step starts from ``_start`` (hs[t], or the initial state where a stream resets), feeds
# ``state * mask`` to the recurrent product, and after zoneout keeps ``lerp(candidate, start, z)``.
# Backward: the gradient into a step's starting state is ``(product part) * mask + z * g``; where the
# stream reset, it goes to the initial state instead of the step before (``_to_start``).


def _starts(hs: Tensor, reset: Tensor | None) -> Tensor:
    """Buffer for the states the steps start from: hs[:-1] itself when nothing resets."""
    return hs[:-1] if reset is None else torch.empty_like(hs[:-1])


def _start(t: int, hs: Tensor, starts: Tensor, reset: Tensor | None, init: Tensor | None) -> Tensor:
    """The state step t starts from: hs[t], or ``init`` where the stream resets (kept in starts[t])."""
    if reset is None:
        return hs[t]
    return torch.where(reset[t], init, hs[t], out=starts[t])


def _to_start(d: Tensor, t: int, reset: Tensor | None, dinit: Tensor | None) -> Tensor:
    """Split dL/d(step t's starting state): the reset streams' share goes to ``dinit`` (in place), the
    rest to the step before."""
    if reset is None:
        return d
    dinit.add_(torch.where(reset[t], d, 0.0))
    return torch.where(reset[t], 0.0, d)


def _masked(h: Tensor, mask: Tensor | None) -> Tensor:
    return h if mask is None else h * mask


def _kept(zone: Tensor | None) -> Tensor | None:
    """1 - z for all steps at once (backward multiplies by it at every step)."""
    return None if zone is None else 1 - zone


def _keep(g: Tensor, kept: Tensor | None, t: int) -> Tensor:
    """dL/d(candidate) from dL/d(zoned state) g: ``(1 - z) g``; ``kept`` is ``_kept(zone)``."""
    return g if kept is None else g * kept[t]


def _recurrent_grad(d: Tensor, g: Tensor, t: int, mask: Tensor | None, zone: Tensor | None) -> Tensor:
    """dL/d(starting state) = (product part d) * mask + z * g, in place on d (a fresh tensor)."""
    if mask is not None:
        d.mul_(mask)
    if zone is not None:
        d.addcmul_(zone[t], g)
    return d


def _past_end(g: Tensor, alive: Tensor | None, t: int) -> tuple[Tensor, Tensor]:
    """(what a frozen step passes on: all of g, what the step's own math gets: g where alive, else 0).
    Past its end a sequence's state is a copy of its last one, so a gradient arriving there (through
    the per-step states) belongs to the step before."""
    if alive is None:
        return g, g
    return g, torch.where(alive[t], g, 0.0)


def _zeros_like(t: Tensor, reset: Tensor | None) -> Tensor | None:
    return torch.zeros_like(t) if reset is not None else None


# -- the input side: no recurrence, so one big product for all steps --------------------------------


def _input_side(x: Tensor, w: Tensor, b: Tensor | None, grad: bool) -> Tensor:
    """``x W^T + b`` for all steps, through :class:`Project` when gradients are needed."""
    return Project.apply(x, w, b) if grad else _project(x, w, b)


class Project(torch.autograd.Function):
    """``x W^T + b`` for all steps at once (T, B, F) -> (T, B, G), oneDNN-packed both ways."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _project(x, w, b)

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        T, B, _ = x.shape
        d = _flat(dout)
        dx = linear(w.t(), T * B)(d, None).view_as(x)
        return dx, *weight_grad(d, _flat(x), ctx.has_bias)


# -- which loops run ----------------------------------------------------------------------------------


def _plain(rec: Recurrence, reset: Tensor | None, keep: bool) -> bool:
    """What the compiled loops (C++) run: state dropout and zoneout, but no resets or per-step states
    (those run the Python loops)."""
    return reset is None and not keep


def _needs_grad(args: tuple) -> bool:
    return torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)
