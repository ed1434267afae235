"""The fused kernels' time loops compiled: a small C++ extension (``csrc/scan.cpp``) built on first use.

At B=64, H=256 a step of a fused kernel is one ~20 us matrix product and 7-12 pointwise ops, each
paying 5-10 us of Python and dispatch. ``scan.cpp`` runs the same loops (forward and the analytic
backward of ``fused/``, same equations, same saved tensors) in C++: per step the recurrent product
(oneDNN's packed weights where ``packed.MKLDNN``, else ``at::mm``) and one vectorised pass of gate math.
The input projection and its gradients stay in ``fused/common.py`` (``_input_side``), shared by both paths.

The extension is built with ``torch.utils.cpp_extension`` (a C++ compiler and ninja) into
``TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``) the first time a fused kernel runs,
~30-60 s once per machine, then loaded from there. Anything that stops it (no compiler, a failed build)
means: the Python loops of ``fused/`` run instead, after one warning. ``RNNKIT_NO_EXTENSION=1`` turns
it off. It runs float32 and float64 on the CPU; other devices and dtypes take the Python loops.
``PATHS`` counts which path each fused kernel call took.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .packed import MKLDNN, MKLDNN_WEIGHT_GRAD

ENV_OFF = "RNNKIT_NO_EXTENSION"
SOURCE = Path(__file__).with_name("csrc") / "scan.cpp"
ACT_CODES = {"tanh": 0, "sigmoid": 1, "relu": 2, "identity": 3}  # scan.cpp's enum Act
DTYPES = (torch.float32, torch.float64)
# which oneDNN products scan.cpp may use (its kPackedLinear, kWeightGrad): those packed.py found working
ONEDNN = int(MKLDNN) | 2 * int(MKLDNN_WEIGHT_GRAD)

# (kernel, "compiled" | "python") -> calls: which path the fused kernels took in this process
PATHS: Counter[tuple[str, str]] = Counter()

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_ops: Any = None  # torch.ops.rnnkit_scan once loaded
_failure: str | None = None  # why it could not be loaded (then never retried in this process)

# ATen's vector types pick their instruction set from these macros; the flags match what torch's
# own kernels use for that level, so the build runs wherever this torch build picked that level.
_ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}


def disabled() -> bool:
    return os.environ.get(ENV_OFF, "").strip() not in ("", "0")


@contextmanager
def switched_off() -> Iterator[None]:
    """Within the block the fused kernels run their Python loops (as with RNNKIT_NO_EXTENSION=1)."""
    old = os.environ.get(ENV_OFF)
    os.environ[ENV_OFF] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV_OFF]
        else:
            os.environ[ENV_OFF] = old


def _build() -> Any:
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r} not found)")
    if not cpp_extension.is_ninja_available():
        raise RuntimeError("ninja not found (pip install ninja)")
    cap = torch.backends.cpu.get_cpu_capability()
    flags = ["-O3"]
    if cap in _ISA_FLAGS:
        flags += [f"-DCPU_CAPABILITY={cap}", f"-DCPU_CAPABILITY_{cap}", *_ISA_FLAGS[cap]]
    # one build folder per source and flags: checkouts of different versions never load each other's
    digest = hashlib.sha1(SOURCE.read_bytes() + " ".join(flags).encode()).hexdigest()[:10]
    name = f"rnnkit_scan_{digest}"
    _log.info("rnnkit: building the compiled kernels (%s, once per machine)", name)
    cpp_extension.load(name, [str(SOURCE)], extra_cflags=flags, is_python_module=False, verbose=False)
    return torch.ops.rnnkit_scan


def available() -> bool:
    """Whether the compiled loops can run here: builds or loads the extension on the first call."""
    global _ops, _failure
    if disabled():
        return False
    if _ops is None and _failure is None:
        with _lock:
            if _ops is None and _failure is None:
                try:
                    _ops = _build()
                except Exception as e:  # any failure means: the Python loops
                    _failure = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
                    warnings.warn(
                        f"rnnkit: the compiled kernels are unavailable ({_failure}); the fused kernels run "
                        f"their Python loops instead (set {ENV_OFF}=1 to skip the attempt)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
    return _ops is not None


def failure() -> str | None:
    """Why the extension could not be built or loaded in this process, or None."""
    return _failure


def runs_for(x: Tensor) -> bool:
    """Whether the compiled loops run for step inputs ``x``: float32/float64 on the CPU, the extension
    built (this may build it), and not while torch.compile traces (the ops have no fake-tensor
    kernels; the Python loops trace)."""
    return x.device.type == "cpu" and x.dtype in DTYPES and not torch.compiler.is_compiling() and available()


def usable(x: Tensor, kernel: str) -> bool:
    """:func:`runs_for`, counted in PATHS under fused kernel ``kernel``."""
    ok = runs_for(x)
    PATHS[kernel, "compiled" if ok else "python"] += 1
    return ok


# -- the kernels: same arguments as the loops in fused/, outputs of the layer ------------------------------


class _Elman(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, w_hh, alive, act, mask, zone):
        y, h_last, hs, cand = _ops.elman_forward(xw, h0, w_hh, alive, mask, zone, act, ONEDNN)
        ctx.save_for_backward(w_hh, hs, cand, alive, mask, zone)
        ctx.act = act
        return y, h_last

    @staticmethod
    def backward(ctx, dy, dh_last):
        grads = _ops.elman_backward(dy, dh_last, *ctx.saved_tensors, ctx.act, ONEDNN)
        return *grads, None, None, None, None


def elman(
    grad: bool, xw: Tensor, h0: Tensor, w_hh: Tensor, alive: Tensor | None, act: str,
    mask: Tensor | None = None, zone: Tensor | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """h (T, B, H) and h_last for xw (T, B, H) = x W_ih^T + b (see fused/elman.py), with state
    dropout ``mask`` (B, H) and zoneout ``zone`` (T, B, H) or None."""
    if grad:
        return _Elman.apply(xw, h0, w_hh, alive, ACT_CODES[act], mask, zone)
    return _ops.elman_forward(xw, h0, w_hh, alive, mask, zone, ACT_CODES[act], ONEDNN)[:2]


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, alive, reset_after, mask, zone):
        y, h_last, *saved = _ops.gru_forward(xw, h0, w_hh, b_hh, alive, mask, zone, reset_after, ONEDNN)
        ctx.save_for_backward(w_hh, alive, mask, zone, *saved)
        ctx.reset_after, ctx.has_bias = reset_after, b_hh is not None
        return y, h_last

    @staticmethod
    def backward(ctx, dy, dh_last):
        w_hh, alive, mask, zone, hs, rz, n, m = ctx.saved_tensors
        grads = _ops.gru_backward(
            dy, dh_last, w_hh, ctx.has_bias, hs, rz, n, m, alive, mask, zone, ctx.reset_after, ONEDNN
        )
        return *grads, None, None, None, None


def gru(
    grad: bool,
    xw: Tensor,
    h0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    alive: Tensor | None,
    reset_after: bool,
    mask: Tensor | None = None,
    zone: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """h (T, B, H) and h_last for xw (T, B, 3H) = x W_ih^T + b_ih (see fused/gru.py), with state
    dropout ``mask`` (B, H) and zoneout ``zone`` (T, B, H) or None."""
    if grad:
        return _GRU.apply(xw, h0, w_hh, b_hh, alive, reset_after, mask, zone)
    return _ops.gru_forward(xw, h0, w_hh, b_hh, alive, mask, zone, reset_after, ONEDNN)[:2]


class _Jordan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, y0, w_yh, w_hy, b_y, alive, mask, zone, act, out_act):
        y, y_last, *saved = _ops.jordan_forward(
            xw, y0, w_yh, w_hy, b_y, alive, mask, zone, act, out_act, ONEDNN
        )
        ctx.save_for_backward(w_yh, w_hy, *saved, alive, mask, zone)
        ctx.acts, ctx.has_bias = (act, out_act), b_y is not None
        return y, y_last

    @staticmethod
    def backward(ctx, dy, dy_last):
        w_yh, w_hy, *rest = ctx.saved_tensors
        grads = _ops.jordan_backward(dy, dy_last, w_yh, w_hy, ctx.has_bias, *rest, *ctx.acts, ONEDNN)
        return *grads, None, None, None, None, None


def jordan(
    grad: bool, xw: Tensor, y0: Tensor, w_yh: Tensor, w_hy: Tensor, b_y: Tensor | None, alive: Tensor | None,
    act: str, out_act: str, mask: Tensor | None = None, zone: Tensor | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """y (T, B, O) and y_last for xw (T, B, H) = x W_ih^T + b_h (see fused/jordan.py), with state
    dropout ``mask`` (B, O) and zoneout ``zone`` (T, B, O) or None."""
    args = (xw, y0, w_yh, w_hy, b_y, alive, mask, zone, ACT_CODES[act], ACT_CODES[out_act])
    if grad:
        return _Jordan.apply(*args)
    return _ops.jordan_forward(*args, ONEDNN)[:2]


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, w_hr, peep, g_h, g_c, b_c, alive, mask, zone_h, zone_c):
        y, h_last, c_last, *saved = _ops.lstm_forward(
            xw, h0, c0, w_hh, w_hr, peep, g_h, g_c, b_c, alive, mask, zone_h, zone_c, ONEDNN
        )
        ctx.save_for_backward(w_hh, w_hr, peep, g_h, g_c, alive, mask, zone_h, zone_c, *saved)
        return y, h_last, c_last

    @staticmethod
    def backward(ctx, dy, dh_last, dc_last):
        w_hh, w_hr, peep, g_h, g_c, alive, mask, zone_h, zone_c, *saved = ctx.saved_tensors
        grads = _ops.lstm_backward(
            dy, dh_last, dc_last, w_hh, w_hr, peep, g_h, g_c, alive, *saved, mask, zone_h, zone_c, ONEDNN
        )
        return *grads, None, None, None, None


def lstm(
    grad: bool, xw: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, w_hr: Tensor | None, peep: Tensor | None,
    g_h: Tensor | None, g_c: Tensor | None, b_c: Tensor | None, alive: Tensor | None,
    mask: Tensor | None = None, zone_h: Tensor | None = None, zone_c: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """y (T, B, R), h_last, c_last for xw (T, B, 4H), the input side of the gates (see fused/lstm.py).
    ``peep`` (3, H): p_i, p_f, p_o; ``g_h, g_c, b_c``: the layer norms' gains and bias, or None; state
    dropout ``mask`` (B, R), zoneout ``zone_h`` (T, B, R) and ``zone_c`` (T, B, H), or None."""
    args = (xw, h0, c0, w_hh, w_hr, peep, g_h, g_c, b_c, alive, mask, zone_h, zone_c)
    if grad:
        return _LSTM.apply(*args)
    return _ops.lstm_forward(*args, ONEDNN)[:3]
