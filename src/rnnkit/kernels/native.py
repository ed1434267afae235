"""torch's own fused RNN ops (oneDNN / MKL on CPU, cuDNN on GPU), used where a stack of rnnkit cells
is exactly the model torch implements.

Only the *layout* is torch's here: the weights are the cells' own parameters, passed in torch's flat
order, so gradients flow to them as usual.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..cells import Cell, ElmanCell, GRUCell, LSTMCell, LSTMState
from ..cells.base import State
from ..cells.registry import fast_path

_OPS = {
    "lstm": getattr(torch._VF, "lstm", None),
    "gru": getattr(torch._VF, "gru", None),
    "rnn_tanh": getattr(torch._VF, "rnn_tanh", None),
    "rnn_relu": getattr(torch._VF, "rnn_relu", None),
}


def lstm_op(cell: LSTMCell) -> str | None:
    """LSTMCell's fast path: torch's LSTM has projection but no peephole or layer norm."""
    return None if cell.peephole or cell.layer_norm else "lstm"


def gru_op(cell: GRUCell) -> str | None:
    """GRUCell's fast path: torch's GRU is the reset-after form."""
    return "gru" if cell.reset_after else None


def elman_op(cell: ElmanCell) -> str | None:
    """ElmanCell's fast path: tanh or relu, no readout."""
    if cell.readout_size is None and cell.nonlinearity in ("tanh", "relu"):
        return f"rnn_{cell.nonlinearity}"
    return None


def native_op(cell: Cell) -> str | None:
    """The torch op that computes exactly this cell's step (the cell's declared ``native`` fast
    path), or None."""
    choose = fast_path(cell, "native")
    op = choose(cell) if choose is not None else None
    return op if op is not None and _OPS[op] is not None else None


def stack_is_native(cells: Sequence[Cell], merge: str) -> str | None:
    """The op that runs this whole stack, if torch has one: one op for every cell, concat merge, and
    every cell with biases or none (torch passes one ``has_biases`` flag for the stack)."""
    ops = {native_op(c) for c in cells}
    if len(ops) != 1 or None in ops or merge != "concat":
        return None
    if len({c.bias_ih is not None for c in cells}) != 1:
        return None
    return ops.pop()


def flat_weights(cells: Sequence[Cell]) -> list[Tensor]:
    """Parameters in torch's order: per layer and direction w_ih, w_hh, b_ih, b_hh, (w_hr)."""
    weights: list[Tensor] = []
    for c in cells:
        weights += [c.weight_ih, c.weight_hh]
        if c.bias_ih is not None:
            weights += [c.bias_ih, c.bias_hh]
        if getattr(c, "weight_hr", None) is not None:
            weights.append(c.weight_hr)
    return weights


def run_native(
    op: str,
    cells: Sequence[Cell],
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> tuple[Tensor, State]:
    """Run the stack with torch's op. x: (T, B, F) time-first; state stacked (K, B, n) per field.

    Returns (y (T, B, D*O), final state) with zeros at padded steps, like the reference loop.
    """
    fn = _OPS[op]
    weights = flat_weights(cells)
    has_bias = cells[0].bias_ih is not None
    hx = tuple(state) if op == "lstm" else state
    if lengths is None:
        out = fn(x, hx, weights, has_bias, num_layers, dropout, training, bidirectional, False)
    else:
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        hx = tuple(h.index_select(1, order) for h in hx) if op == "lstm" else hx.index_select(1, order)
        out = fn(
            packed.data,
            packed.batch_sizes,
            hx,
            weights,
            has_bias,
            num_layers,
            dropout,
            training,
            bidirectional,
        )
        y, _ = pad_packed_sequence(
            type(packed)(out[0], packed.batch_sizes, order, unorder), total_length=x.shape[0]
        )
        out = (y, *(h.index_select(1, unorder) for h in out[1:]))
    if op == "lstm":
        return out[0], LSTMState(out[1], out[2])
    return out[0], out[1]
