"""Pick the implementation that runs a stack of cells: the fastest exact one the ``impl`` switch allows.

- "reference": the readable loop over ``cell.step`` (the source of truth) for every cell.
- "native": torch's own fused op for the whole stack; only for models torch implements.
- "fused": rnnkit's fused kernels (analytic BPTT, packed weights), per layer and direction.
- "auto": native where torch has the model, else fused where rnnkit has a kernel, else reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..cells import Cell
from ..errors import InputError
from .fused import fused_kernel, run_fused
from .native import stack_is_native

IMPLS = ("auto", "native", "fused", "reference")


@dataclass(frozen=True)
class Plan:
    native_op: str | None  # run the whole stack with this torch op, or
    runners: tuple[Callable, ...]  # run each layer and direction with these (run_cell's signature)


def plan(cells: Sequence[Cell], merge: str, impl: str, reference: Callable) -> Plan:
    if impl in ("auto", "native"):
        op = stack_is_native(cells, merge)
        if op is not None:
            return Plan(op, ())
        if impl == "native":
            raise InputError(
                "impl='native' needs a stack torch implements itself (plain LSTM, reset-after GRU, "
                f"tanh/relu Elman without readout, merge='concat'); got {type(cells[0]).__name__} "
                f"with merge={merge!r}. Use impl='auto', 'fused' or 'reference'."
            )
    if impl in ("auto", "fused"):
        missing = [type(c).__name__ for c in cells if fused_kernel(c) is None]
        if not missing:
            return Plan(None, (run_fused,) * len(cells))
        if impl == "fused":
            raise InputError(
                f"impl='fused' has no fused kernel for {missing[0]} with these options yet; "
                "use impl='auto' or 'reference'"
            )
    return Plan(None, (reference,) * len(cells))
