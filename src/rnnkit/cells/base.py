"""What every cell shares: the step interface, state helpers and activations.

A cell is the equation of one time step. It holds its parameters and defines

    step(x_t, state) -> (y_t, new_state)        x_t: (B, input_size), y_t: (B, output_size)

where ``state`` is a tensor ``(B, n)`` or a NamedTuple of such tensors (LSTM: ``(h, c)``). Time,
stacking, direction and lengths belong to :class:`rnnkit.layers.Recurrent`, never to a cell.

A cell with ``spatial_dims = d > 0`` (the convolutional cells) has feature maps instead of vectors:
``x_t`` (B, input_size, *S), ``y_t`` (B, output_size, *S) and state fields (B, n, *S), where S is the
input's spatial size (d dims), kept by the cell; ``input_size`` and ``n`` count channels.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, TypeAlias

import torch
from torch import Tensor, nn

from ..errors import check

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


def param(shape: tuple[int, ...], factory: dict[str, Any]) -> nn.Parameter:
    """An uninitialised parameter; ``factory`` holds ``device`` and ``dtype``."""
    return nn.Parameter(torch.empty(shape, **factory))


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` field by field to states of the same structure (tensor or NamedTuple)."""
    first = states[0]
    if isinstance(first, tuple):
        return type(first)(*(fn(*fields) for fields in zip(*states, strict=True)))
    return fn(*states)


def mask_first(state: State, mask: Tensor) -> State:
    """The state with its first field (``h``) multiplied by ``mask``; the other fields as they are."""
    if isinstance(state, tuple):
        return type(state)(state[0] * mask, *state[1:])
    return state * mask


def state_fields(state: State) -> tuple[Tensor, ...]:
    """The tensors of a state, in field order."""
    return tuple(state) if isinstance(state, tuple) else (state,)


def stack_states(states: list[State]) -> State:
    """[(B, n)] * K -> (K, B, n), field by field."""
    return map_state(lambda *fields: torch.stack(fields, 0), *states)


def check_tensor(x: Tensor, cell: Cell, who: str) -> None:
    """Input checks shared by cells and layers: a floating tensor on the weights' dtype and device."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: input must be a Tensor, got {type(x).__name__}")
    weight = next(cell.parameters(), None)
    if weight is None:
        return
    check(
        x.dtype == weight.dtype,
        f"{who} input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
        + (
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({x.dtype})"
            if x.is_floating_point()
            else f"Convert input: input.to({weight.dtype}) (recurrent layers need floating-point input)"
        ),
    )
    check(
        x.device == weight.device,
        f"{who} input is on {x.device} but the weights are on {weight.device}; "
        f"move one of them: input.to('{weight.device}') or model.to('{x.device}')",
    )


def check_state(
    state: State,
    size: StateSize,
    prefix: tuple[int, ...],
    like: Tensor,
    who: str,
    batched: bool,
    spatial: tuple[int, ...] = (),
) -> State:
    """Check a user's state against ``size`` (the cell's state_size); each field must be ``prefix +
    (n,) + spatial`` with ``like``'s dtype and device. Returns the state in the cell's structure (a
    NamedTuple for structured states)."""
    if isinstance(size, tuple):  # structured state, e.g. LSTM (h, c)
        names = ", ".join(size._fields)
        check(
            isinstance(state, (tuple, list)) and len(state) == len(size),
            f"{who} expects the state as a tuple ({names}) of tensors, got "
            + (f"a tuple of {len(state)}" if isinstance(state, (tuple, list)) else type(state).__name__),
        )
        state = type(size)(*state)
        fields = list(zip(size._fields, state, size, strict=True))
    else:
        check(isinstance(state, Tensor), f"{who} expects the state as one tensor, got {type(state).__name__}")
        fields = [("hx", state, size)]
    dims = len(prefix) + 1 + len(spatial)
    for i, (name, s, n) in enumerate(fields):
        check(isinstance(s, Tensor), f"state {name} must be a tensor, got {type(s).__name__}")
        label = f"hidden[{i}]" if len(fields) > 1 else "hidden"
        check(
            s.dim() == dims,
            f"For {'batched' if batched else 'unbatched'} {dims}-D input, {label} "
            f"({name}) should also be {dims}-D but got {s.dim()}-D tensor",
        )
        expected = (*prefix, n, *spatial)
        if batched:
            batch = s.shape[len(prefix) - 1]
            check(
                batch == prefix[-1],
                f"Input batch size {prefix[-1]} doesn't match {label} ({name}) batch size {batch}. "
                f"Expected {label} size {expected}, got {list(s.shape)}",
            )
        check(
            tuple(s.shape[dims - len(spatial) :]) == spatial,
            f"{label} ({name}) has spatial size {tuple(s.shape[dims - len(spatial) :])} but the input's is "
            f"{spatial}: expected {label} size {expected}, got {list(s.shape)}",
        )
        check(tuple(s.shape) == expected, f"Expected {label} size {expected}, got {list(s.shape)}")
        check(
            s.dtype == like.dtype and s.device == like.device,
            f"state {name} must have the input's dtype and device ({like.dtype}, {like.device}), "
            f"got ({s.dtype}, {s.device})",
        )
    return state


# A fast path: a function, or "module:name" naming one (imported on first use, so that cells, the
# lowest layer, never import the kernels that make them fast).
Ref: TypeAlias = "Callable[..., Any] | str | None"


@dataclass(frozen=True)
class FastPaths:
    """Where a cell's fast paths live; every one computes exactly the cell's ``step``.

    A cell class declares them (``fast_paths = FastPaths(fused="rnnkit.kernels.fused.lstm:lstm_kernel",
    ...)``) and :mod:`rnnkit.cells.registry` reads them for that exact class only: a subclass may
    change ``step``, so it runs the reference loop until it declares its own (``fast_paths =
    LSTMCell.fast_paths`` where its equations are the same). Each function returns None where the
    cell's options are beyond it.

    Attributes:
        native: ``cell -> op``: torch's own op computing this cell ("lstm", "gru", "rnn_tanh",
            "rnn_relu"; ``kernels/native.py``).
        fused: ``(cell, rec) -> runner``: rnnkit's fused kernel for a whole layer and direction, with
            ``rec``'s state dropout, zoneout and resets (``kernels/fused/``; the runner's contract is
            ``fused.run_fused``'s ``kernel``).
        compiled: the name of the fused kernel's compiled loops (``kernels/csrc/scan.cpp``, a key of
            ``compiled.PATHS``), or None.
        step: ``(cell, batch) -> step``: one time step on weights prepared once, for streaming
            (``kernels/steps.py``).
        scan: ``(cell, x) -> (a, b)``: the coefficients of ``h_t = a_t h_{t-1} + b_t`` for all steps of
            x (T, B, F), for cells whose recurrence is linear in the state (``kernels/scan.py``).
    """

    native: Ref = None
    fused: Ref = None
    compiled: str | None = None
    step: Ref = None
    scan: Ref = None


class Cell(nn.Module):
    """Base class of all cells: parameters + one step of the recurrence.

    Subclasses set ``input_size``, ``output_size`` and ``state_size`` (an int, or a NamedTuple of
    ints for structured states) and implement :meth:`step`. A cell over feature maps sets
    ``spatial_dims`` (2 for images: per step ``x_t`` (B, C, H, W)), and ``frame_size`` when it only
    takes one spatial size.
    """

    input_size: int
    output_size: int
    state_size: StateSize
    spatial_dims: int = 0  # trailing spatial dims of x_t, y_t and every state field (0: vectors)
    frame_size: tuple[int, ...] | None = None  # the one spatial size the cell takes, or None: any
    input_arg: str = "input_size"  # the constructor argument that with_input_size sets
    fast_paths: ClassVar[FastPaths] = FastPaths()  # read for the exact class only (see FastPaths)

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

    def masked_step(self, x: Tensor, state: State, mask: Tensor) -> tuple[Tensor, State]:
        """:meth:`step` with the state multiplied by ``mask`` where it enters the recurrent products
        (state dropout, Gal & Ghahramani 2016, https://arxiv.org/abs/1512.05287); the state carried on
        stays unmasked. ``mask`` has the shape of the state's first field (``h``).

        This default masks the first field and calls :meth:`step`, which is exact for cells whose
        ``h`` enters the step only through products (Elman, Jordan, LSTM: ``c`` is not masked). A cell
        that also carries ``h`` on directly (GRU: ``z * h``) overrides it."""
        return self.step(x, mask_first(state, mask))

    def init_state(
        self,
        batch_size: int,
        *,
        spatial: tuple[int, ...] = (),
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> State:
        """The zero state for a batch: tensors ``(batch_size, n, *spatial)`` in ``state_size``'s
        structure (``spatial``: the input's spatial size, for cells with ``spatial_dims``)."""
        param = next(self.parameters(), None)
        dtype = dtype or (param.dtype if param is not None else torch.get_default_dtype())
        device = device if device is not None else (param.device if param is not None else None)
        return map_state(
            lambda n: torch.zeros(batch_size, n, *spatial, dtype=dtype, device=device), self.state_size
        )

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One checked step: ``x`` (B, input_size) or unbatched (input_size,); ``state`` as
        :meth:`init_state` (zeros if omitted). ``step`` itself checks nothing, for speed in loops."""
        who = type(self).__name__
        check_tensor(x, self, who)
        check(x.dim() in (1, 2), f"{who}: Expected input to be 1D or 2D, got {x.dim()}D instead")
        check(
            x.shape[-1] == self.input_size,
            f"{who}: input has inconsistent input_size: got {x.shape[-1]} expected {self.input_size}",
        )
        batched = x.dim() == 2
        x = x if batched else x.unsqueeze(0)
        if state is None:
            state = self.init_state(x.shape[0], dtype=x.dtype, device=x.device)
        else:
            state = check_state(state, self.state_size, x.shape[:1] if batched else (), x, who, batched)
            state = state if batched else map_state(lambda s: s.unsqueeze(0), state)
        y, state = self.step(x, state)
        if not batched:
            y, state = y.squeeze(0), map_state(lambda s: s.squeeze(0), state)
        return y, state

    def with_input_size(self, input_size: int) -> Cell:
        """A new, freshly initialised cell like this one but reading ``input_size`` features."""
        arguments = copy.copy(self._init_args)
        arguments[self.input_arg] = input_size
        weight = next(self.parameters(), None)
        if weight is not None and "dtype" in arguments:  # follow .to() / .double() since construction
            arguments["dtype"], arguments["device"] = weight.dtype, weight.device
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
