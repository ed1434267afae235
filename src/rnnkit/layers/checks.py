"""The Recurrent layer's argument checks: each names what was expected and what came.

``who`` is the layer's name in messages: its class name, or torch's mode for the drop-ins ("LSTM"), so
messages read as torch's do. The checks take values, not the layer, so this module needs nothing from
``recurrent.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import Cell, State, check_state, check_tensor, map_state
from ..errors import InputError, check
from .regularization import Regularization


def check_cell(cell: Any, input_size: int | None) -> tuple[Cell, Callable[[int], Cell]]:
    """A Cell or a factory ``input_size -> Cell``: the first layer's cell and how to build the others."""
    if isinstance(cell, nn.Module) and not isinstance(cell, Cell):
        raise TypeError(
            f"cell must be a Cell or a factory, got {type(cell).__name__}: a torch.nn module is not "
            "an rnnkit Cell (it has no step()); use rnnkit.ElmanCell/GRUCell/LSTMCell instead"
        )
    if isinstance(cell, Cell):
        if input_size is not None and input_size != cell.input_size:
            raise ValueError(
                f"input_size={input_size} does not match the cell's input_size={cell.input_size}"
            )
        first, make = cell, cell.with_input_size
    elif callable(cell):
        if input_size is None:
            raise ValueError("Recurrent(factory, ...) needs input_size= for the first layer")
        first, make = cell(input_size), cell
        if not isinstance(first, Cell):
            raise TypeError(f"the factory must return a Cell, got {type(first).__name__}")
        if first.input_size != input_size:
            raise ValueError(
                f"the factory was asked for a cell with input_size={input_size} and returned one "
                f"with input_size={first.input_size}"
            )
    else:
        raise TypeError(f"cell must be a Cell or a factory, got {type(cell).__name__}")
    return first, make


def check_dims(who: str, input: Tensor, cell: Cell, batch_first: bool) -> None:
    """The input's number of dims: (T, B, F) or unbatched (T, F); (T, B, C, *S) for feature maps."""
    if not cell.spatial_dims:
        check(
            input.dim() in (2, 3),
            f"{who}: Expected input to be 2D (unbatched) or 3D (batched), got {input.dim()}D tensor instead",
        )
        return
    dims = 3 + cell.spatial_dims
    layout = "(B, T, C, *S)" if batch_first else "(T, B, C, *S)"
    check(
        input.dim() == dims,
        f"{who}: {type(cell).__name__} expects {dims}D input {layout} with S the "
        f"{cell.spatial_dims} spatial dims, got {input.dim()}D tensor of shape {tuple(input.shape)} "
        "instead (unbatched input is not supported for cells over feature maps)",
    )


def check_input(who: str, x: Tensor, cell: Cell, input_size: int) -> None:
    """Time-first x: dtype and device as the weights, the feature size, the frame size, T >= 1."""
    check_tensor(x, cell, who)
    dim = -1 - cell.spatial_dims  # the features (channels) of x (T, B, F, *S)
    check(
        x.shape[dim] == input_size,
        f"input.size({dim}) must be equal to input_size. Expected {input_size}, got {x.shape[dim]}",
    )
    check(
        cell.frame_size in (None, tuple(x.shape[3:])),
        f"{type(cell).__name__} was built for frames of size {cell.frame_size}, got input frames "
        f"{tuple(x.shape[3:])}",
    )
    check(x.shape[0] > 0, "Expected a sequence of length >= 1, got length 0")


def check_lengths(lengths: Any, T: int, B: int, device: torch.device) -> Tensor:
    """(B,) lengths of a padded batch, each in [1, T] -> a long tensor on ``device``."""
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths, dtype=torch.long if len(lengths) == 0 else None)
        except (TypeError, ValueError, RuntimeError) as e:
            raise InputError(f"lengths must be a 1-D tensor of {B} integers: {e}") from None
    check(
        lengths.dim() == 1
        and not lengths.is_floating_point()
        and not lengths.is_complex()
        and lengths.dtype != torch.bool,
        f"lengths must be a 1-D integer tensor of shape ({B},), got "
        f"{lengths.dtype} of shape {tuple(lengths.shape)}",
    )
    check(
        lengths.numel() == B,
        f"lengths must hold one length per sequence: expected {B}, got {lengths.numel()}",
    )
    if B:
        low, high = int(lengths.min()), int(lengths.max())
        check(low >= 1, f"every length must be >= 1, got {low}")
        check(high <= T, f"lengths must be <= the sequence length {T}, got {high}")
    return lengths.to(device=device, dtype=torch.long)


def check_reset(reset: Any, T: int, B: int, batched: bool, batch_first: bool, device: torch.device) -> Tensor:
    """A forward's reset mask in the input's layout -> (T, B) bool, time-first."""
    if not batched:
        expected, layout = (T,), "(T,) for unbatched input"
    elif batch_first:
        expected, layout = (B, T), "(B, T) with batch_first"
    else:
        expected, layout = (T, B), "(T, B)"
    check(
        isinstance(reset, Tensor) and reset.dtype == torch.bool,
        "reset must be a bool tensor (True where a stream starts again), got "
        + (str(reset.dtype) if isinstance(reset, Tensor) else type(reset).__name__),
    )
    check(
        tuple(reset.shape) == expected,
        f"reset must have shape {expected} {layout}, got {tuple(reset.shape)}",
    )
    reset = reset.to(device)
    if not batched:
        return reset[:, None]
    return reset.t() if batch_first else reset


def check_step_reset(who: str, reset: Any, B: int, batched: bool, device: torch.device) -> Tensor:
    """A step's reset: (B,) bool (0-d unbatched); returned broadcastable over (K, B, n)."""
    expected = (B,) if batched else ()
    check(
        isinstance(reset, Tensor) and reset.dtype == torch.bool and tuple(reset.shape) == expected,
        f"{who}.step: reset must be a bool tensor of shape {expected}, got "
        + (
            f"{reset.dtype} of shape {tuple(reset.shape)}"
            if isinstance(reset, Tensor)
            else type(reset).__name__
        ),
    )
    return reset.to(device)[:, None] if batched else reset.to(device)


def check_spatial_options(
    who: str, cell: Cell, reg: Regularization, learned_state: bool, reset: Tensor | None, trace: dict | None
) -> None:
    """Convolutional cells run the plain recurrence only (for now): say so rather than misapply."""
    used = [name for name, on in [
        ("reset masks", reset is not None), ("per-step states", trace is not None),
        ("learn_initial_state", learned_state), ("state_dropout", reg.state_dropout > 0),
        ("zoneout", any(p > 0 for p in reg.zoneout)),
        ("weight_drop", reg.weight_drop > 0), ("input_dropout", reg.input_dropout > 0),
    ] if on]  # fmt: skip
    check(
        not used,
        f"{who}: {', '.join(used)} are not supported for convolutional cells "
        f"({type(cell).__name__}) yet; dropout between layers is",
    )


def check_layer_state(who: str, state: State, cell: Cell, K: int, B: int, batched: bool, x: Tensor) -> State:
    """Check a user's initial state; return it batched, in the cell's state structure."""
    prefix, spatial = (K, B) if batched else (K,), tuple(x.shape[3:])
    state = check_state(state, cell.state_size, prefix, x, who, batched, spatial)
    return state if batched else map_state(lambda s: s.unsqueeze(1), state)
