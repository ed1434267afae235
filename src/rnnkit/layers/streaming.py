"""Streaming: one time step of a whole stack, state in, state out (``Recurrent.step``).

Generation feeds a model one step at a time, so what a step costs beyond its matrix products is what
matters: at B=1 a step of a 2-layer H=512 LSTM is two matrix-vector products per layer and a few
dozen tiny element-wise ops. This module keeps that overhead small:

- checks are a few comparisons; the full, message-building checks of ``cells/base.py`` run only when
  the quick ones fail, so errors read as they do in ``forward``;
- cells that declare a one-step fast path (``FastPaths.step``: LSTMCell without peephole or layer
  norm, GRUCell, ElmanCell with a named activation) run it, on weights prepared once for the layer
  (``kernels/steps.py``: concatenated, reordered, pre-packed for oneDNN). Other cells run their own
  ``cell.step``.

The prepared weights are cached per layer and keyed on every parameter's identity, ``data_ptr()`` and
``_version``, so replacing a parameter, moving the model (``.to()``) or updating it in place
(``load_state_dict``, anything under ``torch.no_grad()``) rebuilds them on the next step. torch's fused
optimizers (``Adam(..., fused=True)``) write without bumping ``_version``, so any optimizer step also
counts as a change (a global optimizer post-step hook, registered with the first cache). Only an
in-place change made through ``param.data`` escapes all this (that is what ``.data`` is for); call
:func:`clear_cache` after one. The cache holds one copy of the weights per layer (packed), and goes
with the layer.

When autograd needs gradients through the step (grad mode on and a parameter, the input or the state
requires grad) nothing is cached: every cell runs its differentiable ``cell.step``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter

from ..cells import Cell
from ..cells.base import State, check_state, check_tensor
from ..cells.registry import fast_path
from ..errors import InputError
from ..kernels.steps import StepFn


class Layer(Protocol):
    """What this module reads of a :class:`~rnnkit.layers.Recurrent` (a Protocol, so that the layer can
    import this module and not the other way round)."""

    bidirectional: bool
    input_size: int
    dropout: float
    training: bool

    def layer_cells(self) -> Sequence[Cell]: ...
    def parameters(self) -> Iterator[Parameter]: ...
    def _bound_parameters(self) -> tuple[Tensor, ...] | None: ...
    def _name(self) -> str: ...


def fused_step(cell: Cell, batch: int) -> StepFn | None:
    """A fused single step computing exactly ``cell.step`` for inputs of ``batch`` rows, on weights
    prepared now (call again after the weights change), or None for cells without one (the cell's
    declared ``step`` fast path, ``kernels/steps.py``). No autograd."""
    make = fast_path(cell, "step")
    if make is None:
        return None
    with torch.no_grad():
        return make(cell, batch)


# -- the per-layer cache -------------------------------------------------------------------------------


class _Plan:
    """What one layer's fast path reuses while its parameters stay the same: its cells, the step of
    every cell (fused or ``cell.step``) per batch size, and what the quick checks compare against."""

    __slots__ = ("key", "cells", "keep", "steps", "dtype", "device", "sizes", "structure")

    def __init__(self, key: tuple, cells: Sequence[Cell], keep: tuple) -> None:
        self.key, self.cells = key, cells
        self.keep = keep  # the tensors the key names, held so no id in it can be reused meanwhile
        self.steps: dict[int, list[StepFn]] = {}
        weight = next(cells[0].parameters(), None)
        self.dtype = weight.dtype if weight is not None else None
        self.device = weight.device if weight is not None else None
        size = cells[0].state_size
        self.structure = type(size) if isinstance(size, tuple) else None
        self.sizes = tuple(size) if isinstance(size, tuple) else (size,)

    def for_batch(self, batch: int) -> list[StepFn]:
        steps = self.steps.get(batch)
        if steps is None:
            if len(self.steps) >= 4:  # weights are packed for one batch size; keep a few
                self.steps.clear()
            steps = self.steps[batch] = [fused_step(c, batch) or c.step for c in self.cells]
        return steps


_PLANS: weakref.WeakKeyDictionary[Layer, _Plan] = weakref.WeakKeyDictionary()
# torch's fused optimizers (``fused=True``) update parameters in place without bumping ``_version``, so
# every optimizer step counts as a change: a global post-step hook, registered with the first plan.
_OPTIMIZER_STEPS = [0]
_HOOK: list = []


def _count_optimizer_step(optimizer: object, args: object, kwargs: object) -> None:
    _OPTIMIZER_STEPS[0] += 1


def _watch_optimizers() -> None:
    if not _HOOK:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _HOOK.append(register_optimizer_step_post_hook(_count_optimizer_step))


def _key(tensors: Iterable[Tensor | None]) -> tuple:
    key: list = [_OPTIMIZER_STEPS[0]]
    for p in tensors:
        key.extend((None,) if p is None else (id(p), p.data_ptr(), p._version))
    return tuple(key)


def _plan(layer: Layer) -> tuple[Sequence[Cell], _Plan | None]:
    """The layer's cells and its plan, rebuilt if any parameter changed since the last step. The key
    holds each cell's identity, each parameter's identity, data pointer and version, and the count of
    optimizer steps taken anywhere (fused optimizers do not bump versions). The plan is
    None where that cannot be read (inference tensors have no version counter): then nothing is cached."""
    plan = _PLANS.get(layer)
    try:
        bound = layer._bound_parameters()
        if bound is not None:
            # The drop-ins hold their parameters themselves and bind them to template cells in
            # layer_cells(); keying on the layer's own parameters skips that re-binding while they stay.
            tensors = bound
            key = _key(tensors)
            if plan is not None and plan.key == key:
                return plan.cells, plan
            cells = layer.layer_cells()
        else:
            cells = layer.layer_cells()
            tensors = tuple(p for c in cells for p in (c, *c._parameters.values()))
            key = _key(p for c in cells for p in c._parameters.values()) + tuple(map(id, cells))
            if plan is not None and plan.key == key:
                return cells, plan
    except RuntimeError:
        return layer.layer_cells(), None
    _watch_optimizers()
    plan = _PLANS[layer] = _Plan(key, cells, tensors)
    return cells, plan


def clear_cache(layer: Layer | None = None) -> None:
    """Drop the prepared weights of ``layer`` (of every layer if None). Needed only after changing a
    weight in place through ``.data``, which the version counter does not see."""
    if layer is None:
        _PLANS.clear()
    else:
        _PLANS.pop(layer, None)


# -- the step ----------------------------------------------------------------------------------------


def _needs_grad(layer: Layer, x: Tensor, fields: Sequence[Tensor]) -> bool:
    return torch.is_grad_enabled() and (
        x.requires_grad
        or any(s.requires_grad for s in fields)
        or any(p.requires_grad for p in layer.parameters())
    )


def _who(layer: Layer) -> str:
    return f"{layer._name()}.step"


def step(layer: Layer, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
    """``Recurrent.step``: one time step of every layer. ``x`` (B, F) or (F,); ``state`` as ``forward``
    takes and returns it, (K, B, n) per field ((K, n) unbatched) or None for zeros. Returns ``(y (B,
    O), state)``, unbatched ``(y (O,), state (K, n))``."""
    if layer.bidirectional:
        raise InputError(
            f"{_who(layer)} needs a unidirectional layer: the reverse direction of a bidirectional layer "
            "starts from the end of the sequence, which a stream has not seen yet. Run the layer over the "
            "whole sequence instead (call it, i.e. forward), or stream with bidirectional=False."
        )
    if not isinstance(x, Tensor):
        raise TypeError(f"{_who(layer)}: input must be a Tensor, got {type(x).__name__}")
    batched = x.dim() == 2
    if not batched:
        if x.dim() != 1:
            raise InputError(
                f"{_who(layer)}: Expected input to be 1D (unbatched: (input_size,)) or 2D (batched: "
                f"(batch, input_size)), got {x.dim()}D tensor of shape {tuple(x.shape)} instead. step "
                "takes one time step; for a whole sequence (T, B, F) call the layer itself (forward)."
            )
        x = x.unsqueeze(0)
    cells, plan = _plan(layer)
    if plan is None or x.dtype != plan.dtype or x.device != plan.device:
        check_tensor(x, cells[0], _who(layer))
    if x.shape[1] != layer.input_size:
        raise InputError(
            f"{_who(layer)}: input.size(-1) must be equal to input_size. Expected {layer.input_size}, "
            f"got {x.shape[1]}"
        )
    B, K = x.shape[0], len(cells)

    # the state, per layer
    size = cells[0].state_size
    structure = type(size) if isinstance(size, tuple) else None
    if state is None:
        states: Sequence[State] = [c.init_state(B, dtype=x.dtype, device=x.device) for c in cells]
        fields: tuple[Tensor, ...] = ()
    else:
        prefix = (K, B) if batched else (K,)
        if plan is None or not _state_ok(state, plan, prefix, x):
            state = _check_state(layer, state, size, prefix, x, batched)  # raises, saying what is wrong
        if not batched:
            state = structure(*(s.unsqueeze(1) for s in state)) if structure else state.unsqueeze(1)
        if structure is not None:
            fields = tuple(state)
            states = [structure(*per) for per in zip(*(s.unbind(0) for s in fields), strict=True)]
        else:
            fields = (state,)
            states = state.unbind(0)

    if plan is None or _needs_grad(layer, x, fields):
        # autograd through the plain steps (layer_cells() again: a drop-in re-binds its parameters)
        steps: Sequence[StepFn] = [c.step for c in layer.layer_cells()]
    else:
        steps = plan.for_batch(B)

    finals = []
    drop = layer.dropout if layer.training else 0.0
    for k in range(K):
        x, new = steps[k](x, states[k])
        finals.append(new)
        if drop > 0 and k < K - 1:
            x = F.dropout(x, drop, True)
    if structure is not None:
        final = structure(*(torch.stack(f) for f in zip(*finals, strict=True)))
        if not batched:
            final = structure(*(s.squeeze(1) for s in final))
    else:
        final = torch.stack(finals)
        if not batched:
            final = final.squeeze(1)
    return (x if batched else x.squeeze(0)), final


def _check_state(
    layer: Layer, state: State, size: object, prefix: tuple[int, ...], x: Tensor, batched: bool
) -> State:
    """The full state check, with ``check_state``'s messages; the number of dimensions first, in words
    that fit a step (whose input has one dimension less than ``forward``'s)."""
    who = _who(layer)
    structured = isinstance(size, tuple)
    if structured == isinstance(state, (tuple, list)):  # else check_state says which structure
        names = size._fields if structured else ("hx",)
        for i, (name, s) in enumerate(zip(names, state if structured else (state,), strict=False)):
            if isinstance(s, Tensor) and s.dim() != len(prefix) + 1:
                label = f"hidden[{i}] ({name})" if structured else f"hidden ({name})"
                layout = "(num_layers, batch, n)" if batched else "(num_layers, n)"
                raise InputError(
                    f"{who}: for {'batched 2-D' if batched else 'unbatched 1-D'} input, {label} should be "
                    f"{len(prefix) + 1}-D {layout}, as forward returns it, but got {s.dim()}-D tensor of "
                    f"shape {tuple(s.shape)}"
                )
    return check_state(state, size, prefix, x, who, batched)


def _state_ok(state: State, plan: _Plan, prefix: tuple[int, ...], x: Tensor) -> bool:
    """The quick state check: the structure, shapes, dtype and device ``check_state`` accepts."""
    if plan.structure is not None:
        if not isinstance(state, tuple) or len(state) != len(plan.sizes):
            return False
        fields = state
    else:
        fields = (state,)
    dtype, device = x.dtype, x.device
    for s, n in zip(fields, plan.sizes, strict=True):
        if not isinstance(s, Tensor) or s.shape != (*prefix, n) or s.dtype != dtype or s.device != device:
            return False
    return True


__all__ = ["clear_cache", "fused_step", "step"]
