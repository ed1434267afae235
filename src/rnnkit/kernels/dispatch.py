"""Pick the implementation that runs a stack of cells: the fastest exact one the ``impl`` switch allows.

- "reference": the readable loop over ``cell.step`` (the source of truth) for every cell.
- "native": torch's own fused op for the whole stack; only for models torch implements.
- "fused": rnnkit's own kernel for the cell, per layer and direction: the fused recurrences of
  ``fused/`` (analytic BPTT, packed weights), or for cells whose recurrence is linear in the state
  (minGRU, minLSTM) the parallel scan of ``scan.py``.
- "traced": the reference step inside torch's ``scan`` operator (``kernels/traced.py``): one traceable
  loop with a symbolic length, for ``torch.export``; not for eager use.
- "auto": the fastest of those that apply: native where torch has the model, except where the fused
  kernel is measured faster (GRU and Elman on CPU float32 with oneDNN, big enough steps); else fused
  where rnnkit has a kernel (always the scan for minGRU and minLSTM); else reference (the
  convolutional cells among others: computing their input convolution for all steps at once was
  measured slower on CPU, see docs/benchmarks.md).

Which of these a cell has, its class declares (``fast_paths``, see ``cells/base.FastPaths``); this
module asks through ``native.native_op``, ``fused.fused_kernel`` and ``scan.scan_kernel``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..cells import Cell
from ..cells.registry import fast_path, fast_paths
from ..errors import InputError
from . import compiled
from .fused import fused_kernel, run_fused
from .masks import Recurrence
from .native import native_op, stack_is_native
from .packed import MKLDNN
from .scan import run_scan, scan_kernel
from .traced import run_traced

IMPLS = ("auto", "native", "fused", "reference", "traced")


@dataclass(frozen=True)
class Plan:
    native_op: str | None  # run the whole stack with this torch op, or
    runners: tuple[Callable, ...]  # run each layer and direction with these (run_cell's signature)


# torch's GRU and Elman layers run each step's product through addmm (~190 GFLOP/s here); the fused
# kernels use oneDNN's packed weights (~450) but pay Python's overhead at every step. So fused wins
# once a step's recurrent product (B * G*H * H multiply-adds) is big enough; the thresholds come from
# the measurements in docs/benchmarks.md ("Choosing between torch's op and the fused kernel").
# op -> (gates, minimum multiply-adds per step when training, when not)
FUSED_WINS = {
    "gru": (3, 250_000, 1_000_000),
    "rnn_tanh": (1, 1_000_000, 2_000_000),  # Elman's step is cheap: Python's overhead weighs more
    "rnn_relu": (1, 1_000_000, 2_000_000),
    "lstm": (4, 1_000_000, 1_000_000),  # only with proj_size: torch's oneDNN LSTM has no projection
}
# The same when the fused kernels run their compiled loops (kernels/compiled.py): no Python per step,
# so they win much earlier ("Compiled loops" in docs/benchmarks.md; GRU B=1, H=128 trains 1.9x faster
# than torch's op, but its inference step loses below ~200k multiply-adds).
FUSED_WINS_COMPILED = {
    "gru": (3, 40_000, 200_000),
    "rnn_tanh": (1, 60_000, 250_000),
    "rnn_relu": (1, 60_000, 250_000),
}


def prefer_fused(op: str, cells: Sequence[Cell], x: Tensor) -> bool:
    if op not in FUSED_WINS or not MKLDNN or x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if op == "lstm" and not cells[0].proj_size:
        return False  # plain LSTM: torch's oneDNN kernel already runs at the machine's peak
    H = cells[0].hidden_size
    grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in cells[0].parameters())
    )
    gates, train, infer = FUSED_WINS[op]
    macs = x.shape[1] * gates * H * H
    if macs >= (train if grad else infer):
        return True
    if op not in FUSED_WINS_COMPILED:
        return False
    _, train, infer = FUSED_WINS_COMPILED[op]  # only here ask for the extension (may build it)
    return macs >= (train if grad else infer) and compiled.runs_for(x)


def plan(
    cells: Sequence[Cell],
    merge: str,
    impl: str,
    reference: Callable,
    x: Tensor,
    recs: Sequence[Recurrence] | None = None,
) -> Plan:
    """Choose for input ``x`` (T, B, F). ``recs``: this forward's state dropout, zoneout, resets or
    per-step states, one per layer and direction (None: the plain recurrence). torch's op has none of
    these, so they take the fused kernels where those have them, else the reference loop; an option is
    never dropped to reach a faster path."""
    if recs is not None and impl == "native":
        raise InputError(
            "impl='native' (torch's own op) cannot run state dropout, zoneout, reset masks or return "
            "per-step states; use impl='auto', 'fused' or 'reference'"
        )
    if impl == "traced":
        if recs is not None:
            raise InputError(
                "impl='traced' (for torch.export) runs the plain recurrence: no state dropout, zoneout, "
                "reset masks or per-step states"
            )
        return Plan(None, (run_traced,) * len(cells))
    if impl in ("auto", "native") and recs is None:
        op = stack_is_native(cells, merge)
        if op is not None and not (impl == "auto" and prefer_fused(op, cells, x)):
            return Plan(op, ())
        if impl == "native":
            raise InputError(
                "impl='native' needs a stack torch implements itself (plain LSTM, reset-after GRU, "
                f"tanh/relu Elman without readout, merge='concat'); got {type(cells[0]).__name__} "
                f"with merge={merge!r}. Use impl='auto', 'fused' or 'reference'."
            )
    if impl in ("auto", "fused"):
        if recs is None and all(scan_kernel(c) is not None for c in cells):
            return Plan(None, (run_scan,) * len(cells))
        missing = [
            type(c).__name__
            for k, c in enumerate(cells)
            if fused_kernel(c, recs[k] if recs is not None else None) is None
        ]
        if not missing:
            return Plan(None, (run_fused,) * len(cells))
        if impl == "fused":
            raise InputError(
                f"impl='fused' has no fused kernel for {missing[0]} with these options yet; "
                "use impl='auto' or 'reference'"
            )
    return Plan(None, (reference,) * len(cells))


def paths(cell: Cell) -> dict[str, object]:
    """Which fast paths this cell, with its options, has (without regularisation), as its class declares
    them (``cells/base.FastPaths``): ``native`` (torch's op or None), ``fused``, ``step`` and ``scan``
    (bools), ``compiled`` (the name of the fused kernel's compiled loops, or None). For reports and
    tests; prepares the one-step weights once to ask."""
    fused = fused_kernel(cell) is not None
    make = fast_path(cell, "step")
    with torch.no_grad():
        step = make is not None and make(cell, 1) is not None
    return {
        "native": native_op(cell),
        "fused": fused,
        "compiled": fast_paths(type(cell)).compiled if fused else None,
        "step": step,
        "scan": scan_kernel(cell) is not None,
    }
