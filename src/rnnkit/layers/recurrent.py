"""The Recurrent layer: time, stacking, direction, lengths and dropout, written once for every cell."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..cells.base import (
    Cell,
    State,
    check_state,
    map_state,
    stack_states,
    state_fields,
)
from ..errors import check, check_bool, check_int, check_probability
from ..kernels.dispatch import IMPLS, plan
from ..kernels.masks import Recurrence, reverse_padded
from ..kernels.native import run_native
from . import streaming
from .checks import (
    check_cell,
    check_dims,
    check_input,
    check_layer_state,
    check_lengths,
    check_reset,
    check_spatial_options,
    check_step_reset,
)
from .loop import pack_like, run_cell, zone_out
from .regularization import Regularization, controls, dropout, dropped_weights

MERGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "concat": lambda a, b: torch.cat([a, b], 2),  # (T, B, O, ...): the feature (channel) dim
    "sum": torch.add,
    "mean": lambda a, b: (a + b) / 2,
    "mul": torch.mul,
}


class Trace(NamedTuple):
    """What :meth:`Recurrent.forward_with_states` returns: ``(output, state)`` as ``forward``, plus every
    step's ``states`` (per field, (T, K, B, n)) and ``gates`` (name -> (T, K, B, H))."""

    output: Tensor | PackedSequence
    state: State
    states: State
    gates: dict[str, Tensor]


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
            Elman, merge="concat"), "fused" (rnnkit's fused kernels with analytic BPTT; for minGRU and
            minLSTM the parallel scan), or
            "reference" (the readable loop over ``cell.step``), or "traced" (that loop as one traceable
            operator, for ``torch.export``; see ``rnnkit.export``). See ``kernels/dispatch.py``.

    Regularisation and state (all off by default; see ``layers/regularization.py`` and
    docs/regularization.md). Probabilities are in [0, 1); dropout masks are scaled by 1/(1-p).
        input_dropout: dropout on layer 0's input (one mask per sequence with ``variational``).
        variational: ``dropout`` and ``input_dropout`` draw one mask per sequence, reused at every step
            (Gal & Ghahramani 2016), instead of torch's fresh mask per element and step.
        state_dropout: variational dropout of the state where it enters the recurrent products.
        zoneout: each state unit keeps its previous value with this probability in training (a fresh
            mask per step); at evaluation the state is ``p * previous + (1 - p) * new``. One number,
            or one per state field (LSTM: ``(p_h, p_c)``).
        weight_drop: DropConnect on the recurrent weight (``weight_hh``), one mask per forward pass
            (AWD-LSTM); the parameter itself is untouched.
        learn_initial_state: the initial state (used when none is passed, and after a reset) is a
            parameter ``initial_<field>`` (K, 1, n) per state field (``initial_h``, ``initial_c``),
            starting at zero, instead of zeros.

    Forward:
        input: (T, B, F), (B, T, F) with batch_first, (T, F) unbatched, or a PackedSequence.
        state: the initial state, one entry per layer and direction: a tensor (K, B, n) (unbatched:
            (K, n)), or for structured states (LSTM) a tuple of them, e.g. ``(h0, c0)``; zeros (or the
            learned initial state) if omitted.
        lengths: (B,) true lengths of a padded batch (not with a PackedSequence).
        reset: (T, B) bool ((B, T) with batch_first, (T,) unbatched): before step t, every stream b
            with ``reset[t, b]`` starts again from :meth:`initial_state` (zeros or the learned state,
            not ``state``), in every layer and direction: document boundaries in a stream. The reverse
            direction restarts at the same boundaries, from its own end of each document.

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
        *,
        input_dropout: float = 0.0,
        variational: bool = False,
        state_dropout: float = 0.0,
        zoneout: float | tuple[float, ...] = 0.0,
        weight_drop: float = 0.0,
        learn_initial_state: bool = False,
    ) -> None:
        super().__init__()
        self._configure(num_layers, bidirectional, merge, dropout, batch_first, impl)
        first, make = check_cell(cell, input_size)
        cells = [first]
        for index in range(1, num_layers * self.num_directions):
            layer = index // self.num_directions
            cells.append(make(first.input_size if layer == 0 else self._layer_input(first)))
        self.cells = nn.ModuleList(cells)
        self.input_size = first.input_size
        self._configure_state(
            input_dropout, variational, state_dropout, zoneout, weight_drop, learn_initial_state
        )

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

    def _configure_state(
        self,
        input_dropout: float = 0.0,
        variational: bool = False,
        state_dropout: float = 0.0,
        zoneout: float | tuple[float, ...] = 0.0,
        weight_drop: float = 0.0,
        learn_initial_state: bool = False,
    ) -> None:
        """Check and set the regularisation and initial-state options (after the cells exist)."""
        cells = self.layer_cells()
        self.regularization = Regularization.checked(
            cells[0], input_dropout, state_dropout, zoneout, weight_drop, variational
        )
        self.learn_initial_state = check_bool("learn_initial_state", learn_initial_state)
        self._initial_names: tuple[str, ...] = ()
        if learn_initial_state:
            check(
                not cells[0].spatial_dims,
                f"learn_initial_state is not supported for convolutional cells ({type(cells[0]).__name__}) "
                "yet: their state's size follows the frames'",
            )
            weight = next(p for p in self.parameters() if p.device.type != "meta")
            zero = stack_states([c.init_state(1, dtype=weight.dtype, device="meta") for c in cells])
            size = cells[0].state_size
            names = size._fields if isinstance(size, tuple) else ("h",)
            for name, field in zip(names, state_fields(zero), strict=True):
                param = nn.Parameter(torch.zeros(field.shape, dtype=weight.dtype, device=weight.device))
                self.register_parameter(f"initial_{name}", param)  # (K, 1, n)
            self._initial_names = tuple(f"initial_{n}" for n in names)

    def initial_state(self, batch_size: int) -> State:
        """The state a forward starts from when none is given, and a reset returns to: zeros, or the
        learned initial state expanded over the batch. (K, B, n) per field, in the cell's structure."""
        cells = self.layer_cells()
        if not self._initial_names:
            weight = next(self.parameters(), None)
            kw = {"dtype": weight.dtype, "device": weight.device} if weight is not None else {}
            return stack_states([c.init_state(batch_size, **kw) for c in cells])
        learned = [getattr(self, n) for n in self._initial_names]
        learned = [p.expand(p.shape[0], batch_size, *p.shape[2:]) for p in learned]
        size = cells[0].state_size
        return type(size)(*learned) if isinstance(size, tuple) else learned[0]

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

    def _bound_parameters(self) -> tuple[Tensor, ...] | None:
        """The tensors ``layer_cells()`` binds its cells to, where the layer holds them itself (the
        torch drop-ins), else None (they live on the cells). Streaming keys its cache on them."""
        return None

    def forward(
        self,
        input: Tensor | PackedSequence,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        output, final, _ = self._forward(input, state, lengths, reset, None)
        return output, final

    def forward_with_states(
        self,
        input: Tensor | PackedSequence,
        state: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        reset: Tensor | None = None,
    ) -> Trace:
        """:meth:`forward`, also returning every step's state and gate activations.

        Returns a :class:`Trace` ``(output, state, states, gates)``: ``output`` and ``state`` as
        :meth:`forward`; ``states`` the state after every step, per field (LSTM: ``LSTMState(h, c)``)
        of shape (T, K, B, n) ((B, T, K, n) with batch_first, (T, K, n) unbatched, padded (T, K, B, n)
        for a PackedSequence), K = layer * num_directions + direction, each direction in the input's
        time order, frozen at its last step past a sequence's end; ``gates`` the activations of cells
        that have ``gates()`` (LSTM: input, forget, cell, output; GRU: reset, update, new), each in
        the same layout with n = H (zeros past a sequence's end; empty for Elman and Jordan).

        Runs on the fused kernels where the cell has one (the states and gate activations are the
        buffers the kernel keeps for its backward anyway, returned as differentiable outputs), else on
        the reference loop (which records ``cell.gates`` at each step); never on torch's op, which does
        not return them.
        """
        trace: dict = {"states": [], "gates": []}
        output, final, trace = self._forward(input, state, lengths, reset, trace)
        return Trace(output, final, trace["states"], trace["gates"])

    def _forward(
        self,
        input: Tensor | PackedSequence,
        state: State | None,
        lengths: Tensor | Sequence[int] | None,
        reset: Tensor | None,
        trace: dict | None,
    ) -> tuple[Tensor | PackedSequence, State, Any]:
        cells = self.layer_cells()
        packed = isinstance(input, PackedSequence)
        if packed:
            check(lengths is None, "pass lengths or a PackedSequence, not both")
            x, lengths = pad_packed_sequence(input)  # (T, B, F), original batch order
            batched = True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input must be a Tensor or PackedSequence, got {type(input).__name__}")
            check_dims(self._name(), input, cells[0], self.batch_first)
            batched = input.dim() >= 3
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        check_input(self._name(), x, cells[0], self.input_size)
        T, B, spatial = x.shape[0], x.shape[1], tuple(x.shape[3:])
        if lengths is not None:
            lengths = check_lengths(lengths, T, B, x.device)
            if not packed and bool((lengths == T).all()):
                lengths = None  # no padding: skip the masks
        if reset is not None:
            reset = check_reset(reset, T, B, batched, self.batch_first, x.device)
        if spatial:
            check_spatial_options(
                self._name(), cells[0], self.regularization, bool(self._initial_names), reset, trace
            )
        initial = self._initial_states(B, x) if state is None or reset is not None else None
        if state is None:
            states = initial
        else:
            state = check_layer_state(self._name(), state, cells[0], len(cells), B, batched, x)
            states = [map_state(lambda s, k=k: s[k], state) for k in range(len(cells))]

        x, final = self._run(cells, x, states, lengths, reset, initial, trace)

        if trace is not None:
            trace = self._trace_layout(trace, batched)
        if packed:
            return pack_like(x, input), final, trace
        if not batched:
            return x.squeeze(1), map_state(lambda s: s.squeeze(1), final), trace
        return (x.transpose(0, 1) if self.batch_first else x), final, trace

    def _initial_states(self, B: int, x: Tensor) -> list[State]:
        """:meth:`initial_state` per layer and direction, each (B, n) per field."""
        if not self._initial_names:
            spatial = tuple(x.shape[3:])  # feature maps' (H, W); () for vector cells
            kw = {"spatial": spatial, "dtype": x.dtype, "device": x.device}
            return [c.init_state(B, **kw) for c in self.layer_cells()]
        state = self.initial_state(B)
        return [map_state(lambda s, k=k: s[k], state) for k in range(len(self.layer_cells()))]

    def _run(
        self,
        cells: Sequence[Cell],
        x: Tensor,
        states: list[State],
        lengths: Tensor | None,
        reset: Tensor | None,
        initial: list[State] | None,
        trace: dict | None,
    ) -> tuple[Tensor, State]:
        """Run the stack on time-first x (T, B, F): draw this forward's masks, pick the runners, and
        run with the recurrent weights dropped (weight_drop) for the duration."""
        reg, training = self.regularization, self.training
        T = x.shape[0]
        recs = controls(reg, initial or states, T, training, reset, trace is not None)
        chosen = plan(cells, self.merge, self.impl, run_cell, x, recs)
        plain = recs is None and not reg.active(training)
        # the shortcut's own condition first: under tracing (impl != auto) T is never inspected
        if self._one_step_is_faster() and plain and T == 1 and lengths is None:
            # one step without a graph (generation): the streaming step on cached pre-packed weights
            # is ~6x faster than a one-step oneDNN call, which re-packs the weights on every call
            y, final = streaming.step(self, x[0], stack_states(states))
            return y.unsqueeze(0), final
        x = dropout(x, reg.input_dropout, training, reg.variational)
        with dropped_weights(cells, reg.weight_drop if training else 0.0):
            if chosen.native_op is not None:
                return self._run_native(chosen.native_op, cells, x, states, lengths)
            return self._run_layers(chosen.runners, x, states, lengths, recs, trace, cells)

    def _run_native(
        self, op: str, cells: Sequence[Cell], x: Tensor, states: list[State], lengths: Tensor | None
    ) -> tuple[Tensor, State]:
        """The whole stack in one torch op; layer by layer when dropout between layers is variational
        (torch's op draws a fresh mask per step)."""
        if not (self.regularization.variational and self.dropout > 0 and self.training):
            stack = (self.num_layers, self.bidirectional, self.dropout, self.training)
            return run_native(op, cells, x, stack_states(states), lengths, *stack)
        D, finals = self.num_directions, []
        for layer in range(self.num_layers):
            ks = slice(layer * D, (layer + 1) * D)
            x, final = run_native(op, cells[ks], x, stack_states(states[ks]), lengths, 1, D == 2, 0.0, False)
            finals.append(final)
            if layer < self.num_layers - 1:
                x = dropout(x, self.dropout, True, True)
        return x, map_state(lambda *f: torch.cat(f, 0), *finals)

    def step(
        self, x: Tensor, state: State | None = None, reset: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """One time step of the whole stack, for streaming and generation (unidirectional layers only).

        ``x``: (B, F), or unbatched (F,). ``state``: exactly as :meth:`forward` takes and returns it, a
        tensor (K, B, n) or a tuple of them (LSTM ``(h, c)``), unbatched (K, n); zeros if omitted. So
        ``forward`` over a prefix and then ``step`` continue the same sequence. Returns ``(y, state)``:
        ``y`` (B, O) (unbatched (O,)) and the new state in the same layout. Dropout between layers
        applies in training mode, as in ``forward``. Under ``torch.no_grad()`` the standard cells run a
        fused step on cached pre-packed weights (see ``layers/streaming.py``).

        ``reset``: (B,) bool (unbatched: a 0-d bool tensor): those streams start again from
        :meth:`initial_state` before this step. With zoneout (or, in training, any dropout option)
        the step runs as ``forward`` over one step, so variational masks are drawn afresh each call.
        """
        check(
            not self.layer_cells()[0].spatial_dims,
            f"{self._name()}.step takes vector cells only; for "
            f"{type(self.layer_cells()[0]).__name__} call the layer on a sequence of one step (T=1)",
        )
        if self.bidirectional or (
            reset is None and not self._initial_names and not self.regularization.active(self.training)
        ):
            return streaming.step(self, x, state)  # (which also refuses a bidirectional layer)
        if not isinstance(x, Tensor):
            raise TypeError(f"{self._name()}.step: input must be a Tensor, got {type(x).__name__}")
        batched = x.dim() == 2
        B = x.shape[0] if batched else 1
        if state is None or reset is not None:
            initial = self.initial_state(B)
            initial = initial if batched else map_state(lambda s: s.squeeze(1), initial)
            if state is None:
                state = initial
            else:
                cell, K = self.layer_cells()[0], self.num_layers
                state = check_state(
                    state, cell.state_size, (K, B) if batched else (K,), x, self._name(), batched
                )
                r = check_step_reset(self._name(), reset, B, batched, x.device)
                state = map_state(lambda s, s0: torch.where(r, s0, s), state, initial)
        if not self.regularization.active(self.training):
            return streaming.step(self, x, state)
        time_axis = 1 if batched and self.batch_first else 0
        y, state = self(x.unsqueeze(time_axis), state)
        return y.squeeze(time_axis), state

    def _one_step_is_faster(self) -> bool:
        no_graph = self.impl == "auto" and self.num_directions == 1 and not torch.is_grad_enabled()
        return no_graph and not self.layer_cells()[0].spatial_dims

    def _run_layers(
        self,
        runners: Sequence[Callable],
        x: Tensor,
        states: list[State],
        lengths: Tensor | None,
        recs: list[Recurrence] | None = None,
        trace: dict | None = None,
        cells: Sequence[Cell] | None = None,
    ) -> tuple[Tensor, State]:
        """Each layer and direction through its runner (``run_cell`` or a fused kernel), then merge
        the directions and apply dropout between layers. ``cells``: as bound by the caller (a drop-in's
        ``layer_cells()`` re-binds its parameters, which would undo weight drop)."""
        cells = cells if cells is not None else self.layer_cells()
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                kw = {} if recs is None else {"rec": recs[k], "trace": trace}
                y, final = runners[k](cells[k], x, states[k], lengths, reverse=direction == 1, **kw)
                outs.append(y)
                finals.append(final)
            x = outs[0] if len(outs) == 1 else MERGES[self.merge](*outs)
            if layer < self.num_layers - 1 and self.dropout > 0:
                x = dropout(x, self.dropout, self.training, self.regularization.variational)
        return x, stack_states(finals)

    def _name(self) -> str:
        return type(self).__name__

    def _trace_layout(self, trace: dict, batched: bool) -> dict:
        """Per-direction (T, B, n) lists -> (T, K, B, n) in the input's layout (see forward_with_states)."""

        def layout(t: Tensor) -> Tensor:
            if not batched:
                return t.squeeze(2)
            return t.movedim(2, 0) if self.batch_first else t

        def stack(f: Sequence[Tensor]) -> Tensor:  # one layer and direction: a view, no copy
            return f[0].unsqueeze(1) if len(f) == 1 else torch.stack(f, 1)

        states = map_state(lambda *f: layout(stack(f)), *trace["states"])
        names = trace["gates"][0].keys()
        gates = {n: layout(stack([g[n] for g in trace["gates"]])) for n in names}
        return {"states": states, "gates": gates}


__all__ = ["Recurrent", "Trace", "pack_like", "reverse_padded", "run_cell", "zone_out"]
