"""Fused GPU recurrences for the cells cuDNN lacks: layer-norm and peephole LSTM, the textbook GRU
(reset before the product), Elman with any built-in activation, and every one of them (the standard
cells too) with zoneout and state dropout.

Structure, as in cuDNN and haste: the input projection of all T steps is one big product outside the
loop (with autograd); per step, one cuBLAS product for the recurrent part and one Triton kernel
(``gpu_triton.py``) for the rest; the backward loop mirrors it (a kernel for the gate gradients, a
product for dL/dh_{t-1}), and the weight gradients are big products over all steps after the loop.
The loops run inside CUDA graphs (``gpu_graphs.py``). States and gate activations are kept in float32,
products and outputs in the input's type (float32 or bfloat16).

``run_gpu`` has the runners' contract (``layers.recurrent.run_cell``); what these kernels do not cover
(padded batches, resets, per-step traces, LSTM projections) goes to ``fused.run_fused``, which runs on
CUDA with torch's ops. On CPU tensors the same code runs in Triton's interpreter (tests only: slow).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell, ElmanCell, GRUCell, LSTMCell, LSTMState
from ..cells.base import State
from ..cells.registry import fast_path
from .fused import run_fused
from .gpu_loops import ElmanFunction, GRUFunction, LSTMFunction
from .masks import Recurrence

DTYPES = (torch.float32, torch.bfloat16)


@functools.cache
def available() -> bool:
    """Whether Triton can be imported (the kernels need it; CUDA is asked for by the caller)."""
    return importlib.util.find_spec("triton") is not None


def supports(cell: Cell, rec: Recurrence | None, x: Tensor) -> bool:
    """Whether ``run_gpu`` runs this cell's recurrence with its own kernels (for any lengths/resets it
    hands on to ``run_fused``): the cell's class declares them (``FastPaths.gpu``) for these options."""
    if x.dtype not in DTYPES or not available():
        return False
    kernel = fast_path(cell, "gpu")
    return kernel is not None and kernel(cell, rec) is not None


# -- what the cells declare (FastPaths.gpu): (cell, rec) -> the runner for these options, or None --------


def lstm_gpu(cell: LSTMCell, rec: Recurrence | None) -> Callable | None:
    return None if cell.proj_size else _lstm


def gru_gpu(cell: GRUCell, rec: Recurrence | None) -> Callable | None:
    return _gru


def elman_gpu(cell: ElmanCell, rec: Recurrence | None) -> Callable | None:
    from .gpu_triton import ACT_CODES

    zoned = rec is not None and rec.zoneout is not None  # a readout reads the unzoned h: reference only
    ok = cell.nonlinearity in ACT_CODES and not (zoned and cell.readout_size is not None)
    return _elman if ok else None


# auto on CUDA, for the cells cuDNN has: (dtype, op) -> (smallest, largest B * H) over which the
# Triton kernels were measured faster than cuDNN (torch's op), forward and forward+backward, at T=256 on
# an H200 (B 16..256, H 256..1024: docs/gpu.md); outside, and for pairs not listed, cuDNN. float32
# counts only while cuDNN runs true float32 (torch.backends.cudnn.allow_tf32 off), as the kernels'
# products do (torch.backends.cuda.matmul.allow_tf32, off by default). Elman in float32: cuDNN's
# persistent kernel wins at H=256 (measured 3-7x), so it stays there.
GPU_WINS: dict[tuple[torch.dtype, str], tuple[int, int]] = {
    (torch.bfloat16, "lstm"): (16 * 256, 256 * 1024),
    (torch.bfloat16, "gru"): (16 * 256, 256 * 1024),
    (torch.bfloat16, "rnn_tanh"): (16 * 256, 256 * 1024),
    (torch.bfloat16, "rnn_relu"): (16 * 256, 256 * 1024),
    (torch.float32, "lstm"): (16 * 256, 64 * 1024),  # at 256 x 512 the forward alone is even
    (torch.float32, "gru"): (16 * 256, 256 * 1024),
}
# The kernels pay off once their CUDA graph replays (gpu_graphs.py): the first run of a shape is eager,
# ~4x slower than cuDNN. So auto sends a shape to them from its second sighting on; a workload whose
# length changes at every call stays on cuDNN.
_sightings: dict[tuple, int] = {}


def prefer_gpu(op: str | None, cells: Sequence[Cell], x: Tensor, lengths: Tensor | None) -> bool:
    """Whether ``auto`` should run a stack torch's op could run (cuDNN) through the Triton kernels."""
    if op is None or not x.is_cuda or lengths is not None:
        return False
    bounds = GPU_WINS.get((x.dtype, op))
    if bounds is None or (x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32):
        return False
    if not bounds[0] <= x.shape[1] * cells[0].hidden_size <= bounds[1]:
        return False
    if not all(supports(c, None, x) for c in cells):
        return False
    key = (op, tuple(x.shape), x.dtype, len(cells), torch.is_grad_enabled())
    if len(_sightings) > 4096:
        _sightings.clear()
    _sightings[key] = _sightings.get(key, 0) + 1
    return _sightings[key] > 1


def run_gpu(
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    reverse: bool = False,
    *,
    rec: Recurrence | None = None,
    trace: dict | None = None,
) -> tuple[Tensor, State]:
    """One layer and direction, ``run_cell``'s contract: x (T, B, F) -> (y (T, B, O), final state)."""
    rec = rec or Recurrence()
    if lengths is not None or rec.reset is not None or trace is not None or not supports(cell, rec, x):
        return run_fused(cell, x, state, lengths, reverse, rec=rec, trace=trace)
    if reverse:
        x = x.flip(0)
    T = x.shape[0]
    zone = [
        None if z is None else z.expand(T, *z.shape[1:]).contiguous() for z in (rec.zoneout or (None, None))
    ]
    mask = rec.state_mask.contiguous() if rec.state_mask is not None else None
    y, final = fast_path(cell, "gpu")(cell, rec)(cell, x, state, mask, zone)
    return (y.flip(0) if reverse else y), final


def _apply(fn: type[torch.autograd.Function], *args: object) -> tuple[Tensor, ...]:
    """Through autograd when anything needs a gradient, else the forward alone (no graph kept)."""
    grad = torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)
    return fn.apply(*args) if grad else fn.forward(None, *args)


def _lstm(cell: LSTMCell, x: Tensor, state: LSTMState, mask, zones) -> tuple[Tensor, LSTMState]:
    zh, zc = zones
    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    if cell.layer_norm:  # no recurrence on the input side: normalise all steps at once, with autograd
        xw = cell.norm_x(F.linear(x, cell.weight_ih))
        xw = xw + b if b is not None else xw
        ln = (cell.norm_h.weight, cell.norm_c.weight, cell.norm_c.bias)
    else:
        xw = F.linear(x, cell.weight_ih, b)
        ln = (None, None, None)
    peep = torch.stack([cell.weight_ci, cell.weight_cf, cell.weight_co]) if cell.peephole else None
    y, h, c = _apply(LSTMFunction, xw.contiguous(), state.h, state.c, cell.weight_hh, peep, *ln, mask, zh, zc)
    return y, LSTMState(h, c)


def _gru(cell: GRUCell, x: Tensor, h0: Tensor, mask, zones) -> tuple[Tensor, Tensor]:
    zone = zones[0]
    xw = F.linear(x, cell.weight_ih, cell.bias_ih).contiguous()
    y, h = _apply(GRUFunction, xw, h0, cell.weight_hh, cell.bias_hh, mask, zone, cell.reset_after)
    return y, h


def _elman(cell: ElmanCell, x: Tensor, h0: Tensor, mask, zones) -> tuple[Tensor, Tensor]:
    zone = zones[0]
    from .gpu_triton import ACT_CODES

    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    xw = F.linear(x, cell.weight_ih, b).contiguous()
    h, h_last = _apply(ElmanFunction, xw, h0, cell.weight_hh, mask, zone, ACT_CODES[cell.nonlinearity])
    if cell.readout_size is None:
        return h, h_last
    # the readout does not feed back, so it is one big product after the loop
    return cell.psi(F.linear(h, cell.weight_hy, cell.bias_y)), h_last
