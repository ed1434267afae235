"""bfloat16: the fused kernels under ``torch.autocast``, and the training precision switch.

Parameters and inputs in bf16 (``model.bfloat16()``) run on every path as they are. Under
``torch.autocast("cpu", dtype=torch.bfloat16)`` with float32 parameters (mixed precision: fp32 master
weights), torch's own ops and the reference loop's ``F.linear`` follow autocast by themselves, but the
fused kernels call oneDNN directly, below autocast, and would run in float32. :func:`lowered` wraps
their runner: the layer's parameters, input, state and masks are cast to bf16 once per call (the
casts are differentiable, so weight gradients arrive in float32 in the master weights' ``.grad``),
the kernel runs with autocast off, and its output and final state come back in bf16, as from
torch's own ops under autocast. The products then run on the CPU's bf16 units (AVX512-BF16, AMX)
through oneDNN.

What stays in float32: the master weights, their gradient accumulation and the optimizer; inside the
kernel, every product accumulates in float32 (oneDNN) and the sums over steps and batch
(``Tensor.sum`` accumulates in float32 for bf16). The state between steps is stored in bf16, as in
torch's own bf16 ops; tests/test_bf16.py bounds what that costs against a float32 reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..cells import Cell
from ..cells.base import map_state

PRECISIONS = ("fp32", "bf16")
_warned: set[str] = set()


def autocast_dtype(x: Tensor) -> torch.dtype | None:
    """The lower dtype autocast asks for on ``x``'s device, or None (autocast off, or ``x`` neither
    float32 nor that dtype already: the output of a lowered layer below)."""
    device = x.device.type
    if device not in ("cpu", "cuda") or not torch.is_autocast_enabled(device):
        return None
    dtype = torch.get_autocast_dtype(device)
    return dtype if x.dtype in (torch.float32, dtype) else None


@contextlib.contextmanager
def cast_parameters(cells: Sequence[Cell], dtype: torch.dtype) -> Iterator[None]:
    """Within the block every parameter of ``cells`` (and their submodules, e.g. layer norms) reads as
    ``param.to(dtype)``; gradients flow to the parameter, which is put back untouched on exit."""
    swapped = []
    try:
        for cell in cells:
            for module in cell.modules():
                for name, p in list(module._parameters.items()):
                    if p is not None and p.is_floating_point() and p.dtype != dtype:
                        swapped.append((module, name, p))
                        module._parameters[name] = p.to(dtype)  # type: ignore[assignment]
        yield
    finally:
        for module, name, p in swapped:
            module._parameters[name] = p


def _cast_rec(rec: Any, dtype: torch.dtype) -> Any:
    """A ``masks.Recurrence`` with its floating masks and reset target in ``dtype``."""
    if rec is None:
        return None

    def cast(t: Any) -> Any:
        return t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t

    zone = None if rec.zoneout is None else tuple(cast(z) for z in rec.zoneout)
    init = None if rec.init is None else map_state(cast, rec.init)
    return dataclasses.replace(rec, state_mask=cast(rec.state_mask), zoneout=zone, init=init)


def carried_state(state: Any, x: Tensor) -> Any:
    """A user's state for input ``x`` under autocast: fields in autocast's dtype (a final state from
    an earlier forward under autocast, as torch's ops return it) converted to ``x``'s dtype; anything
    else (and everything outside autocast) as it came, for the state checks to judge."""
    low = autocast_dtype(x)
    if low is None or low == x.dtype or not isinstance(state, (Tensor, tuple)):
        return state
    fields = [
        f.to(x.dtype) if isinstance(f, Tensor) and f.dtype == low else f
        for f in ([state] if isinstance(state, Tensor) else state)
    ]
    if isinstance(state, Tensor):
        return fields[0]
    return tuple(fields) if type(state) is tuple else type(state)(*fields)


def lowered(runner: Callable) -> Callable:
    """``runner`` (run_cell's signature) in autocast's lower dtype when autocast is on for a float32
    input; else ``runner`` itself, unchanged."""

    @functools.wraps(runner)
    def run(cell: Cell, x: Tensor, state: Any, lengths: Tensor | None, reverse: bool = False, **kw: Any):
        dtype = autocast_dtype(x)
        if dtype is None:
            return runner(cell, x, state, lengths, reverse, **kw)
        if "rec" in kw:
            kw["rec"] = _cast_rec(kw["rec"], dtype)
        state = map_state(lambda s: s.to(dtype), state)
        with cast_parameters([cell], dtype), torch.autocast(x.device.type, enabled=False):
            return runner(cell, x.to(dtype), state, lengths, reverse, **kw)

    run.lowered = True  # type: ignore[attr-defined]
    return run


# -- training: --precision fp32 | bf16 -------------------------------------------------------------------


def bf16_fast(device: torch.device | str = "cpu") -> bool:
    """Whether this machine multiplies bf16 in hardware (CPU: AVX512-BF16 or AMX, as oneDNN reports)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """The context a training step runs in: nothing for "fp32"; for "bf16", ``torch.autocast`` to
    bfloat16 over float32 master weights (on a CPU without bf16 hardware: one warning, and it runs
    correctly, only slowly)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    if not bf16_fast(device) and device_type not in _warned:
        _warned.add(device_type)
        warnings.warn(
            f"rnnkit: this {device_type.upper()} has no bf16 hardware (AVX512-BF16/AMX); precision='bf16' "
            "runs correctly but emulated, likely slower than fp32",
            RuntimeWarning,
            stacklevel=2,
        )
    return torch.autocast(device_type, dtype=torch.bfloat16)
