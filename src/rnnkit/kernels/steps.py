"""Fused single steps: one time step of a cell on weights prepared once, for streaming and generation.

Each ``*_step(cell, batch)`` computes exactly ``cell.step`` for inputs of ``batch`` rows (or returns
None where the cell's options are beyond it); the cell declares it as its ``step`` fast path
(``cells/base.FastPaths``) and ``layers/streaming.py`` caches what it returns per layer. What a step
costs beyond its matrix products is what matters at B=1, so the weights are prepared once: the input
and recurrent weights of an LSTM or Elman cell concatenated into one matrix (one product on
``[x, h]``), the LSTM gates reordered to i, f, o, g (one sigmoid, one tanh), the two biases summed,
and every weight pre-packed for oneDNN (``packed.py``; float32 on CPU; other dtypes and devices use
``addmm``, as does a single row times a small weight, see ``SMALL_GEMV``). Called under
``torch.no_grad()``: no autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..cells import ElmanCell, GRUCell, LSTMCell, LSTMState
from ..cells.base import State
from .packed import linear

StepFn = Callable[[Tensor, State], tuple[Tensor, State]]

# in-place activations for the fused Elman step (its pre-activation is a fresh tensor)
_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh_,
    "relu": torch.relu_,
    "sigmoid": torch.sigmoid_,
    "identity": lambda v: v,
}

# oneDNN's packed product costs ~12 us a call however small the weight; for one row, a weight of up to
# ~384K entries is faster through addmm (MKL's gemv) on the 2-core AVX-512 machine (0.5M: a tie).
SMALL_GEMV = 384 * 1024


def _product(weight: Tensor, batch: int) -> Callable[[Tensor, Tensor | None], Tensor]:
    """``f(x, bias) = x @ weight.T + bias`` for ``batch`` rows: packed, unless one row and a small weight."""
    if batch == 1 and weight.numel() <= SMALL_GEMV:
        wt = weight.detach().t()
        return lambda x, bias=None: torch.mm(x, wt) if bias is None else torch.addmm(bias, x, wt)
    return linear(weight, batch)


def lstm_step(cell: LSTMCell, batch: int) -> StepFn | None:
    """LSTMCell without peephole or layer norm (with or without projection)."""
    if cell.peephole or cell.layer_norm:
        return None
    H = cell.hidden_size
    w = torch.cat([cell.weight_ih, cell.weight_hh], 1)
    # gate rows i, f, g, o -> i, f, o, g: the three sigmoid gates become one contiguous block
    order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
    order = order.to(w.device)
    gates = _product(w[order], batch)
    b = (cell.bias_ih + cell.bias_hh)[order].contiguous() if cell.bias_ih is not None else None
    project = _product(cell.weight_hr, batch) if cell.weight_hr is not None else None
    split = (3 * H, H)

    def step(x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        h, c = state
        sig, tan = gates(torch.cat([x, h], 1), b).unsafe_split_with_sizes(split, 1)
        i, f, o = sig.sigmoid_().unsafe_chunk(3, 1)
        c = torch.addcmul(f * c, i, tan.tanh_())
        h = o * c.tanh()
        if project is not None:
            h = project(h, None)
        return h, LSTMState(h, c)

    return step


def gru_step(cell: GRUCell, batch: int) -> StepFn:
    """GRUCell in both forms."""
    H = cell.hidden_size
    split = (2 * H, H)
    inputs = _product(cell.weight_ih, batch)
    b_ih = cell.bias_ih.detach().contiguous() if cell.bias_ih is not None else None
    if cell.reset_after:  # torch's form: n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
        hidden = _product(cell.weight_hh, batch)
        b_hh = cell.bias_hh.detach().contiguous() if cell.bias_hh is not None else None

        def step(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
            i_rz, i_n = inputs(x.contiguous(), b_ih).unsafe_split_with_sizes(split, 1)
            h_rz, h_n = hidden(h.contiguous(), b_hh).unsafe_split_with_sizes(split, 1)
            r, z = i_rz.add_(h_rz).sigmoid_().unsafe_chunk(2, 1)
            n = i_n.addcmul_(r, h_n).tanh_()
            h = torch.lerp(n, h, z)  # z * h + (1 - z) * n
            return h, h

        return step

    # textbook form: n = tanh(x W_in + b_in + (r * h) W_hn + b_hn)
    w_rz, w_n = cell.weight_hh.split(split, 0)
    hidden_rz, hidden_n = _product(w_rz, batch), _product(w_n, batch)
    if cell.bias_hh is not None:
        b_rz, b_n = (b.detach().contiguous() for b in cell.bias_hh.split(split))
    else:
        b_rz = b_n = None

    def textbook(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        i_rz, i_n = inputs(x.contiguous(), b_ih).unsafe_split_with_sizes(split, 1)
        r, z = i_rz.add_(hidden_rz(h.contiguous(), b_rz)).sigmoid_().unsafe_chunk(2, 1)
        n = i_n.add_(hidden_n(r * h, b_n)).tanh_()
        h = torch.lerp(n, h, z)
        return h, h

    return textbook


def elman_step(cell: ElmanCell, batch: int) -> StepFn | None:
    """ElmanCell with a named activation (a readout, if any, after the step)."""
    if not (isinstance(cell.nonlinearity, str) and cell.nonlinearity in _INPLACE):
        return None
    act = _INPLACE[cell.nonlinearity]
    both = _product(torch.cat([cell.weight_ih, cell.weight_hh], 1), batch)
    b = (cell.bias_ih + cell.bias_hh).contiguous() if cell.bias_ih is not None else None
    if cell.readout_size is None:

        def step(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
            h = act(both(torch.cat([x, h], 1), b))
            return h, h

        return step

    readout, psi = _product(cell.weight_hy, batch), cell.psi
    b_y = cell.bias_y.detach().contiguous() if cell.bias_y is not None else None

    def with_readout(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h = act(both(torch.cat([x, h], 1), b))
        return psi(readout(h, b_y)), h

    return with_readout
