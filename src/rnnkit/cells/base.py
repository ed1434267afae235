"""What every cell shares: the step interface, state helpers and activations.

A cell is the equation of one time step. It holds its parameters and defines

    step(x_t, state) -> (y_t, new_state)        x_t: (B, input_size), y_t: (B, output_size)

where ``state`` is a tensor ``(B, n)`` or a NamedTuple of such tensors (LSTM: ``(h, c)``). Time,
stacking, direction and lengths belong to :class:`rnnkit.layers.Recurrent`, never to a cell.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import torch
from torch import Tensor, nn

# A state is a tensor or a NamedTuple of tensors; StateSize has the same structure with ints.
State: TypeAlias = Any
StateSize: TypeAlias = Any

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def activation(name_or_fn: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Resolve an activation given by name (tanh, relu, sigmoid, identity) or as a callable."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in ACTIVATIONS:
        raise ValueError(
            f"Unknown nonlinearity '{name_or_fn}'. Select from {sorted(ACTIVATIONS)} or pass a callable."
        )
    return ACTIVATIONS[name_or_fn]


def check_size(name: str, value: int, minimum: int = 1) -> None:
    """Constructor checks in torch's wording: a size must be an int >= minimum."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(
            f"{name} must be greater than zero, got {value}"
            if minimum == 1
            else f"{name} must be >= {minimum}, got {value}"
        )


def param(shape: tuple[int, ...], factory: dict[str, Any]) -> nn.Parameter:
    """An uninitialised parameter; ``factory`` holds ``device`` and ``dtype``."""
    return nn.Parameter(torch.empty(shape, **factory))


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` field by field to states of the same structure (tensor or NamedTuple)."""
    first = states[0]
    if isinstance(first, tuple):
        return type(first)(*(fn(*fields) for fields in zip(*states, strict=True)))
    return fn(*states)


def state_fields(state: State) -> tuple[Tensor, ...]:
    """The tensors of a state, in field order."""
    return tuple(state) if isinstance(state, tuple) else (state,)


def stack_states(states: list[State]) -> State:
    """[(B, n)] * K -> (K, B, n), field by field."""
    return map_state(lambda *fields: torch.stack(fields, 0), *states)


class Cell(nn.Module):
    """Base class of all cells: parameters + one step of the recurrence.

    Subclasses set ``input_size``, ``output_size`` and ``state_size`` (an int, or a NamedTuple of
    ints for structured states) and implement :meth:`step`.
    """

    input_size: int
    output_size: int
    state_size: StateSize

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Remember the constructor arguments, so Recurrent can build the same cell for another
        # layer or direction with a different input size (``with_input_size``).
        super().__init_subclass__(**kwargs)
        init = cls.__init__

        def __init__(self: Cell, *args: Any, **kw: Any) -> None:
            if not hasattr(self, "_init_args"):
                bound = inspect.signature(init).bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self")
                object.__setattr__(self, "_init_args", arguments)
            init(self, *args, **kw)

        __init__.__signature__ = inspect.signature(init)  # type: ignore[attr-defined]
        __init__.__doc__ = init.__doc__
        cls.__init__ = __init__  # type: ignore[method-assign]

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One time step: ``x`` (B, input_size), ``state`` -> (``y`` (B, output_size), state)."""
        raise NotImplementedError

    def init_state(self, batch_size: int, *, dtype: torch.dtype | None = None, device: Any = None) -> State:
        """The zero state for a batch: tensors ``(batch_size, n)`` in ``state_size``'s structure."""
        param = next(self.parameters(), None)
        dtype = dtype or (param.dtype if param is not None else torch.get_default_dtype())
        device = device if device is not None else (param.device if param is not None else None)
        return map_state(lambda n: torch.zeros(batch_size, n, dtype=dtype, device=device), self.state_size)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``step`` with a zero state by default."""
        if state is None:
            state = self.init_state(x.shape[0], dtype=x.dtype, device=x.device)
        return self.step(x, state)

    def with_input_size(self, input_size: int) -> Cell:
        """A new, freshly initialised cell like this one but reading ``input_size`` features."""
        arguments = copy.copy(self._init_args)
        arguments["input_size"] = input_size
        return type(self)(**arguments)

    def reset_parameters(self) -> None:
        """torch's RNN initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / self.hidden_size**0.5 if getattr(self, "hidden_size", 0) else 0.0
        for p in self.parameters(recurse=False):
            nn.init.uniform_(p, -bound, bound)


class LSTMState(NamedTuple):
    """LSTM state: ``h`` (B, proj_size or hidden_size) and ``c`` (B, hidden_size)."""

    h: Tensor
    c: Tensor
