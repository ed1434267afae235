"""rnnkit's fused recurrences: one layer and direction per call, with analytic backpropagation
through time.

The structure is the one cuDNN and haste use:
- forward: one big GEMM for the input projection of all T steps, then per step one GEMM for the
  recurrent part (weights packed once, see ``packed.py``) and the pointwise gate math;
- backward: the reverse loop only propagates ``dL/dh`` (one GEMM per step) and stores the gate
  gradients; the weight and input gradients are then three big GEMMs over all steps at once.
Under ``torch.no_grad()`` no autograd graph is built (the step buffers are still written).

Each kernel computes exactly its cell's ``step`` (same parameters, same equations) and is tested
against the reference loop (values, gradients, gradcheck in float64) in ``tests/test_fused.py``.
Padded batches: ``alive`` (T, B, 1) marks the steps inside each sequence; past its end a sequence
keeps its state and outputs zeros, as in the reference loop.

The kernels live one family per file (``elman.py``, ``jordan.py``, ``gru.py``, ``lstm.py``), over the
helpers they share (``common.py``). Each file also holds its ``*_kernel(cell, rec)``, which a cell
declares as its ``fused`` fast path (``cells/base.FastPaths``) and which returns the runner, or None
where the cell's options are beyond it. This module runs a cell's kernel over a layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...cells import Cell
from ...cells.base import State, map_state
from ...cells.registry import fast_path
from ..masks import Recurrence, reset_in_processing_order, reverse_padded, step_mask
from .common import ACTIVATIONS, Project, Steps
from .elman import elman_kernel, run_elman
from .gru import gru_kernel, run_gru
from .jordan import jordan_kernel, run_jordan
from .lstm import lstm_kernel, run_lstm


def fused_kernel(cell: Cell, rec: Recurrence | None = None) -> Callable[..., Steps] | None:
    """The fused kernel that computes this cell's recurrence exactly (with ``rec``'s state dropout,
    zoneout and resets): the cell's declared ``fused`` fast path, or None."""
    choose = fast_path(cell, "fused")
    return choose(cell, rec) if choose is not None else None


def run_fused(
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    reverse: bool = False,
    *,
    rec: Recurrence | None = None,
    trace: dict | None = None,
) -> tuple[Tensor, State]:
    """Same contract as ``layers.recurrent.run_cell``, through the cell's fused kernel (the per-step
    states and gate activations it traces are the kernel's own buffers, differentiable)."""
    rec = rec or Recurrence()
    kernel = fused_kernel(cell, rec)
    if kernel is None:
        raise ValueError(f"no fused kernel for {cell!r}")
    if reverse:
        x = reverse_padded(x, lengths)
    alive = step_mask(x.shape[0], lengths)
    reset = reset_in_processing_order(rec.reset, lengths, reverse, alive)
    y, final, steps, gates = kernel(cell, x.contiguous(), state, alive, rec, reset, trace is not None)
    if alive is not None:
        y = torch.where(alive, y, 0.0)
    if trace is not None:
        record(trace, steps, gates, alive, lengths, reverse)
    return (reverse_padded(y, lengths) if reverse else y), final


def record(
    trace: dict, steps: State, gates: dict[str, Tensor], alive: Tensor | None, lengths: Tensor | None,
    reverse: bool,
) -> None:  # fmt: skip
    """Append one direction's per-step states (T, B, n) and gates (T, B, H) (zeros past a sequence's
    end) to ``trace``, in the input's time order."""
    order = (lambda s: reverse_padded(s, lengths)) if reverse else (lambda s: s)
    trace["states"].append(map_state(order, steps))
    gates = {k: g if alive is None else torch.where(alive, g, 0.0) for k, g in gates.items()}
    trace["gates"].append({k: order(g) for k, g in gates.items()})


__all__ = [
    "ACTIVATIONS",
    "Project",
    "Steps",
    "elman_kernel",
    "fused_kernel",
    "gru_kernel",
    "jordan_kernel",
    "lstm_kernel",
    "record",
    "run_elman",
    "run_fused",
    "run_gru",
    "run_jordan",
    "run_lstm",
]
