"""Regularisation options of the Recurrent layer, and the masks they draw once per forward pass.

- Variational dropout (Gal & Ghahramani 2016, https://arxiv.org/abs/1512.05287): one mask per sequence,
  reused at every step, on the layer's input (``input_dropout``), between layers (``dropout`` with
  ``variational=True``) and on the state where it enters the recurrent products (``state_dropout``).
- Zoneout (Krueger et al. 2017, https://arxiv.org/abs/1606.01305): in training each unit of each state
  field keeps its previous value with probability p (a fresh mask per step); at evaluation the state
  is the expected value ``p * previous + (1 - p) * new``.
- Weight drop (DropConnect on the recurrent weight, as in AWD-LSTM, Merity et al. 2017,
  https://arxiv.org/abs/1708.02182): one mask on ``weight_hh`` (Jordan: ``weight_yh``) per forward pass,
  applied functionally: the parameter itself is never replaced or changed.

Every dropout mask is scaled by 1/(1-p), so evaluation (no dropout) needs no rescaling.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells.base import Cell, State, state_fields
from ..kernels.masks import Recurrence

RECURRENT_WEIGHTS = ("weight_hh", "weight_yh")  # the weight a cell's state is multiplied by


def check_rate(name: str, value: object) -> float:
    """A dropout-type probability in [0, 1): p = 1 would scale the kept units by 1/(1-p) = inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} should be a probability in [0, 1), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Regularization:
    """The layer's options (all off by default). ``zoneout`` holds one rate per state field."""

    input_dropout: float = 0.0
    state_dropout: float = 0.0
    zoneout: tuple[float, ...] = ()
    weight_drop: float = 0.0
    variational: bool = False

    @classmethod
    def checked(
        cls,
        cell: Cell,
        input_dropout: float = 0.0,
        state_dropout: float = 0.0,
        zoneout: float | Sequence[float] = 0.0,
        weight_drop: float = 0.0,
        variational: bool = False,
    ) -> Regularization:
        """Validate against ``cell`` (layer 0's), naming what was expected and what came."""
        fields = cell.state_size._fields if isinstance(cell.state_size, tuple) else ("h",)
        if isinstance(zoneout, (tuple, list)):
            if len(zoneout) != len(fields):
                raise ValueError(
                    f"zoneout needs one rate per state field {fields} of {type(cell).__name__} "
                    f"(or one number for all), got {len(zoneout)}: {tuple(zoneout)!r}"
                )
            rates = tuple(
                check_rate(f"zoneout[{i}] ({f})", z)
                for i, (f, z) in enumerate(zip(fields, zoneout, strict=True))
            )
        else:
            rates = (check_rate("zoneout", zoneout),) * len(fields)
        if not isinstance(variational, bool):
            raise TypeError(f"variational should be of type bool, got: {type(variational).__name__}")
        weight_drop = check_rate("weight_drop", weight_drop)
        if weight_drop and recurrent_weight(cell) is None:
            raise ValueError(
                f"weight_drop needs a cell with a recurrent weight {RECURRENT_WEIGHTS}; "
                f"{type(cell).__name__} has none"
            )
        return cls(
            check_rate("input_dropout", input_dropout),
            check_rate("state_dropout", state_dropout),
            rates if any(rates) else (),
            weight_drop,
            variational,
        )

    def changes_recurrence(self, training: bool) -> bool:
        """Whether this forward needs state dropout or zoneout inside the time loop."""
        return bool(self.zoneout) or (training and self.state_dropout > 0)

    def active(self, training: bool) -> bool:
        """Whether anything differs from the plain layer in this mode (zoneout acts at evaluation too)."""
        return bool(self.zoneout) or (
            training and (self.input_dropout > 0 or self.state_dropout > 0 or self.weight_drop > 0)
        )


def recurrent_weight(cell: Cell) -> str | None:
    return next((n for n in RECURRENT_WEIGHTS if cell._parameters.get(n) is not None), None)


def variational_mask(like: Tensor, p: float) -> Tensor:
    """A dropout mask shaped like ``like`` (B, ...), scaled: 0 with probability p, else 1/(1-p)."""
    return torch.empty_like(like).bernoulli_(1 - p).div_(1 - p)


def dropout(x: Tensor, p: float, training: bool, variational: bool) -> Tensor:
    """Dropout on x (T, B, ...): a fresh mask per element, or with ``variational`` one mask per
    sequence, the same at every step."""
    if p == 0 or not training:
        return x
    if not variational:
        return F.dropout(x, p, True)
    return x * variational_mask(x[0], p)


def controls(
    reg: Regularization,
    inits: Sequence[State],
    T: int,
    training: bool,
    reset: Tensor | None,
    trace: bool,
) -> list[Recurrence] | None:
    """One :class:`Recurrence` per layer and direction for this forward, or None when the plain
    recurrence runs (then torch's own op may too). ``inits``: each one's initial state (B, n)."""
    if not (reg.changes_recurrence(training) or reset is not None or trace):
        return None
    recs = []
    for init in inits:
        fields = state_fields(init)
        mask = None
        if training and reg.state_dropout > 0:
            mask = variational_mask(fields[0], reg.state_dropout)
        zone = None
        if reg.zoneout:
            zone = tuple(
                None
                if p == 0
                else (torch.rand((T, *f.shape), dtype=f.dtype, device=f.device) < p).to(f.dtype)
                if training
                else f.new_full((1,) * (f.dim() + 1), p).expand(T, *f.shape)
                for f, p in zip(fields, reg.zoneout, strict=True)
            )
        recs.append(Recurrence(mask, zone, reset, init if reset is not None else None))
    return recs


@contextmanager
def dropped_weights(cells: Sequence[Cell], p: float) -> Iterator[None]:
    """Within the block, each cell's recurrent weight reads as ``dropout(W, p)`` (one mask per cell,
    drawn here): the kernels and ``cell.step`` see the masked tensor, gradients flow to the parameter,
    and the parameter object is put back untouched on exit."""
    if p == 0:
        yield
        return
    swapped = []
    try:
        for cell in cells:
            name = recurrent_weight(cell)
            weight = cell._parameters[name]
            swapped.append((cell, name, weight))
            cell._parameters[name] = F.dropout(weight, p, True)  # type: ignore[assignment]
        yield
    finally:
        for cell, name, weight in swapped:
            cell._parameters[name] = weight


__all__ = ["Regularization", "controls", "dropout", "dropped_weights", "variational_mask"]
