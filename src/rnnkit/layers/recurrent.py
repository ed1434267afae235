"""The Recurrent layer: time, stacking, direction, lengths and dropout, written once for every cell."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..cells.base import Cell, State, check_state, check_tensor, map_state, stack_states
from ..errors import InputError, check, check_bool, check_int, check_probability
from ..kernels.dispatch import IMPLS, plan
from ..kernels.masks import reverse_padded, step_mask
from ..kernels.native import run_native
from . import streaming

MERGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "concat": lambda a, b: torch.cat([a, b], 2),  # (T, B, O, ...): the feature (channel) dim
    "sum": torch.add,
    "mean": lambda a, b: (a + b) / 2,
    "mul": torch.mul,
}


class Recurrent(nn.Module):
    r"""Run any cell over time: deep (stacked), bidirectional, variable-length, batch- or time-first.

    Equivalent to this loop (per layer and direction; the reverse direction runs each sequence from
    its own last step back to its first)::

        for t in range(T):
            y[t], state = cell.step(x[t], state)     # frozen after t >= lengths[b]; y zero there

    Shape legend: T sequence length, B batch, F input features, O the cell's output size, K =
    num_layers * num_directions, n a state field's size. A cell over feature maps (``spatial_dims``
    > 0, e.g. :class:`ConvLSTMCell`) adds its spatial dims S after every F, O and n: input (T, B, C,
    H, W), state (K, B, C_hid, H, W); "concat" joins channels; unbatched input is refused.

    Args:
        cell: a :class:`Cell` (used as layer 0, forward; the other layers and directions are fresh
            copies built by ``cell.with_input_size``) or a factory ``input_size -> Cell``.
        num_layers: stacked layers; layer l+1 reads layer l's merged output.
        bidirectional: add a reverse direction to every layer.
        merge: how the two directions' outputs are combined: "concat" (size 2*O), "sum", "mean",
            "mul" (size O).
        dropout: dropout on each layer's output except the last (training mode only), as torch.
        batch_first: input and output are (B, T, F) instead of (T, B, F).
        input_size: layer 0's input size; required with a factory, checked against a cell.
        impl: which implementation runs the stack: "auto" (the fastest exact one), "native" (torch's
            own fused op; only for stacks torch implements: plain LSTM, reset-after GRU, tanh/relu
            Elman, merge="concat"), "fused" (rnnkit's fused kernels with analytic BPTT), or
            "reference" (the readable loop over ``cell.step``). See ``kernels/dispatch.py``.

    Forward:
        input: (T, B, F), (B, T, F) with batch_first, (T, F) unbatched, or a PackedSequence.
        state: the initial state, one entry per layer and direction: a tensor (K, B, n) (unbatched:
            (K, n)), or for structured states (LSTM) a tuple of them, e.g. ``(h0, c0)``; zeros if
            omitted.
        lengths: (B,) true lengths of a padded batch (not with a PackedSequence).

    Returns:
        ``(output, state)``: the top layer's outputs (T, B, D*O or O) in the input's layout (a
        PackedSequence for a PackedSequence; zeros at padded steps), and the final state of every
        layer and direction (K, B, n), each sequence's state at its own last step.
    """

    def __init__(
        self,
        cell: Cell | Callable[[int], Cell],
        num_layers: int = 1,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout: float = 0.0,
        batch_first: bool = False,
        input_size: int | None = None,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self._configure(num_layers, bidirectional, merge, dropout, batch_first, impl)
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
        cells = [first]
        for index in range(1, num_layers * self.num_directions):
            layer = index // self.num_directions
            cells.append(make(first.input_size if layer == 0 else self._layer_input(first)))
        self.cells = nn.ModuleList(cells)
        self.input_size = first.input_size

    def _configure(
        self,
        num_layers: int,
        bidirectional: bool,
        merge: str,
        dropout: float,
        batch_first: bool,
        impl: str = "auto",
        stacklevel: int = 3,
    ) -> None:
        """Check and set the options shared with the torch drop-ins."""
        num_layers = check_int("num_layers", num_layers)
        dropout = check_probability("dropout", dropout)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=stacklevel,
            )
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {sorted(MERGES)}, got {merge!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        check_bool("bidirectional", bidirectional)
        check_bool("batch_first", batch_first)
        self.num_layers, self.bidirectional, self.merge = num_layers, bidirectional, merge
        self.dropout, self.batch_first = dropout, batch_first
        self.num_directions = 2 if bidirectional else 1

    def _layer_input(self, cell: Cell) -> int:
        """Input size of layers >= 1: the merged output of the layer below."""
        both = self.num_directions == 2 and self.merge == "concat"
        return cell.output_size * (2 if both else 1)

    @property
    def output_size(self) -> int:
        return self._layer_input(self.layer_cells()[0])

    def layer_cells(self) -> Sequence[Cell]:
        """The cells in the order layer 0 forward, layer 0 reverse, layer 1 forward, ..."""
        return self.cells  # type: ignore[return-value]

    def forward(
        self,
        input: Tensor | PackedSequence,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        cells = self.layer_cells()
        packed = isinstance(input, PackedSequence)
        if packed:
            check(lengths is None, "pass lengths or a PackedSequence, not both")
            x, lengths = pad_packed_sequence(input)  # (T, B, F), original batch order
            batched = True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input must be a Tensor or PackedSequence, got {type(input).__name__}")
            self._check_dims(input, cells[0])
            batched = input.dim() >= 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        self._check_input(x, cells[0])
        T, B, spatial = x.shape[0], x.shape[1], tuple(x.shape[3:])
        if lengths is not None:
            lengths = self._check_lengths(lengths, T, B, x.device)
            if not packed and bool((lengths == T).all()):
                lengths = None  # no padding: skip the masks
        if state is None:
            states = [c.init_state(B, spatial=spatial, dtype=x.dtype, device=x.device) for c in cells]
        else:
            state = self._check_state(state, cells[0], B, batched, x)
            states = [map_state(lambda s, k=k: s[k], state) for k in range(len(cells))]

        chosen = plan(cells, self.merge, self.impl, run_cell, x)
        if T == 1 and lengths is None and self._one_step_is_faster():
            # one step without a graph (generation): the streaming step on cached pre-packed weights
            # is ~6x faster than a one-step oneDNN call, which re-packs the weights on every call
            y, final = streaming.step(self, x[0], stack_states(states))
            x = y.unsqueeze(0)
        elif chosen.native_op is not None:
            stack = (self.num_layers, self.bidirectional, self.dropout, self.training)
            x, final = run_native(chosen.native_op, cells, x, stack_states(states), lengths, *stack)
        else:
            x, final = self._run_layers(chosen.runners, x, states, lengths)

        if packed:
            return pack_like(x, input), final
        if not batched:
            return x.squeeze(1), map_state(lambda s: s.squeeze(1), final)
        return (x.transpose(0, 1) if self.batch_first else x), final

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step of the whole stack, for streaming and generation (unidirectional layers only).

        ``x``: (B, F), or unbatched (F,). ``state``: exactly as :meth:`forward` takes and returns it, a
        tensor (K, B, n) or a tuple of them (LSTM ``(h, c)``), unbatched (K, n); zeros if omitted. So
        ``forward`` over a prefix and then ``step`` continue the same sequence. Returns ``(y, state)``:
        ``y`` (B, O) (unbatched (O,)) and the new state in the same layout. Dropout between layers
        applies in training mode, as in ``forward``. Under ``torch.no_grad()`` the standard cells run a
        fused step on cached pre-packed weights (see ``layers/streaming.py``).
        """
        check(
            not self.layer_cells()[0].spatial_dims,
            f"{self._name()}.step takes vector cells only; for "
            f"{type(self.layer_cells()[0]).__name__} call the layer on a sequence of one step (T=1)",
        )
        return streaming.step(self, x, state)

    def _one_step_is_faster(self) -> bool:
        no_graph = self.impl == "auto" and self.num_directions == 1 and not torch.is_grad_enabled()
        return no_graph and not self.layer_cells()[0].spatial_dims

    def _run_layers(
        self, runners: Sequence[Callable], x: Tensor, states: list[State], lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        """Each layer and direction through its runner (``run_cell`` or a fused kernel), then merge
        the directions and apply dropout between layers."""
        cells = self.layer_cells()
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                y, final = runners[k](cells[k], x, states[k], lengths, reverse=direction == 1)
                outs.append(y)
                finals.append(final)
            x = outs[0] if len(outs) == 1 else MERGES[self.merge](*outs)
            if layer < self.num_layers - 1 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
        return x, stack_states(finals)

    # -- input checks: each names what was expected and what came --------------------------------

    def _name(self) -> str:
        return type(self).__name__

    def _check_dims(self, input: Tensor, cell: Cell) -> None:
        if not cell.spatial_dims:
            check(
                input.dim() in (2, 3),
                f"{self._name()}: Expected input to be 2D (unbatched) or 3D (batched), got "
                f"{input.dim()}D tensor instead",
            )
            return
        dims = 3 + cell.spatial_dims
        layout = "(B, T, C, *S)" if self.batch_first else "(T, B, C, *S)"
        check(
            input.dim() == dims,
            f"{self._name()}: {type(cell).__name__} expects {dims}D input {layout} with S the "
            f"{cell.spatial_dims} spatial dims, got {input.dim()}D tensor of shape {tuple(input.shape)} "
            "instead (unbatched input is not supported for cells over feature maps)",
        )

    def _check_input(self, x: Tensor, cell: Cell) -> None:
        check_tensor(x, cell, self._name())
        dim = -1 - cell.spatial_dims  # the features (channels) of x (T, B, F, *S)
        check(
            x.shape[dim] == self.input_size,
            f"input.size({dim}) must be equal to input_size. Expected {self.input_size}, got {x.shape[dim]}",
        )
        check(
            cell.frame_size in (None, tuple(x.shape[3:])),
            f"{type(cell).__name__} was built for frames of size {cell.frame_size}, got input frames "
            f"{tuple(x.shape[3:])}",
        )
        check(x.shape[0] > 0, "Expected a sequence of length >= 1, got length 0")

    def _check_lengths(self, lengths: Any, T: int, B: int, device: torch.device) -> Tensor:
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

    def _check_state(self, state: State, cell: Cell, B: int, batched: bool, x: Tensor) -> State:
        """Check a user's initial state; return it batched, in the cell's state structure."""
        K = self.num_layers * self.num_directions
        prefix, spatial = (K, B) if batched else (K,), tuple(x.shape[3:])
        state = check_state(state, cell.state_size, prefix, x, self._name(), batched, spatial)
        return state if batched else map_state(lambda s: s.unsqueeze(1), state)


def run_cell(
    cell: Cell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool = False
) -> tuple[Tensor, State]:
    """The reference loop: run one cell over time.

    Args:
        x: (T, B, F) or (T, B, C, *S) inputs. state: the cell's state for (B, ...). lengths: (B,) or None.
        reverse: run each sequence from its own last step back to its first.

    Returns:
        (y (T, B, O) with zeros at padded steps, the state at each sequence's last step).
    """
    if reverse:
        x = reverse_padded(x, lengths)
    alive = step_mask(x.shape[0], lengths, x.dim() - 2)
    ys = []
    for t in range(x.shape[0]):
        y, new = cell.step(x[t], state)
        if alive is not None:  # past its end a sequence keeps its state and outputs zeros
            new = map_state(lambda n, s, a=alive[t]: torch.where(a, n, s), new, state)
            y = torch.where(alive[t], y, 0.0)
        ys.append(y)
        state = new
    y = torch.stack(ys)
    return (reverse_padded(y, lengths) if reverse else y), state


def pack_like(y: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack padded outputs y (T, B, O) with the batch sizes and ordering of ``like``."""
    if like.sorted_indices is not None:
        y = y.index_select(1, like.sorted_indices)
    batch_sizes = like.batch_sizes.to(y.device)
    mask = torch.arange(y.shape[1], device=y.device)[None, :] < batch_sizes[:, None]  # (T, B)
    return PackedSequence(y[mask], like.batch_sizes, like.sorted_indices, like.unsorted_indices)


__all__ = ["Recurrent", "pack_like", "reverse_padded", "run_cell"]
