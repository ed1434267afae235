"""Per-step matrix products with pre-packed weights.

A recurrence multiplies the same weight by a new small batch every step. oneDNN can reorder the
weight once into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``) and then run each
step's product at close to the machine's peak: on a 2-core AVX-512 machine a 64x512 @ 512x1536
product runs at ~450 GFLOP/s this way against ~190 with ``torch.addmm``. These ops are private, so
they are feature-detected once and every caller falls back to ``addmm`` (float64, GPU, other builds).

The weight gradients ``dG^T X`` over all steps at once are one big product each; on this machine
``torch.mm`` runs it through MKL's generic kernel (~100 GFLOP/s a core), oneDNN's inner-product
backward (``aten::mkldnn_linear_backward_weights``) at ~1.5x that, copies into its layout included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _mkldnn_ok() -> bool:
    try:
        ops = torch.ops.mkldnn
        if not (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")):
            return False
        w, x = torch.randn(8, 4), torch.randn(2, 4)
        y = ops._linear_pointwise(x, ops._reorder_linear_weight(w, 2), None, "none", [], "")
        return bool(torch.allclose(y, x @ w.t(), atol=1e-5))
    except Exception:  # any failure means: not on this build
        return False


def _weight_grad_ok() -> bool:
    try:
        d, x = torch.randn(6, 3), torch.randn(6, 4)
        dw, db = torch.ops.aten.mkldnn_linear_backward_weights(
            d.to_mkldnn(), x.to_mkldnn(), d.new_empty(3, 4), True
        )
        return bool(torch.allclose(dw, d.t() @ x, atol=1e-5) and torch.allclose(db, d.sum(0), atol=1e-5))
    except Exception:  # any failure means: not on this build
        return False


MKLDNN = _mkldnn_ok()
MKLDNN_WEIGHT_GRAD = MKLDNN and _weight_grad_ok()


def linear(weight: Tensor, batch: int) -> Callable[[Tensor, Tensor | None], Tensor]:
    """``f(x, bias) = x @ weight.T + bias`` for x of shape (batch, in), as fast as this machine allows.

    The weight is packed once here; call this outside the time loop. No autograd: the fused kernels
    write their own backward.
    """
    w = weight.detach()
    if MKLDNN and w.device.type == "cpu" and w.dtype == torch.float32 and batch > 0:
        packed = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), batch)
        op = torch.ops.mkldnn._linear_pointwise
        return lambda x, bias=None: op(x, packed, bias, "none", [], "")
    wt = w.t()
    return lambda x, bias=None: torch.mm(x, wt) if bias is None else torch.addmm(bias, x, wt)


def weight_grad(d: Tensor, x: Tensor, bias: bool = False) -> tuple[Tensor, Tensor | None]:
    """``d^T x`` (out, in) and, with ``bias``, ``d.sum(0)`` for d (N, out), x (N, in): the gradients of
    a linear map's weight and bias over N rows at once."""
    if MKLDNN_WEIGHT_GRAD and d.device.type == "cpu" and d.dtype == x.dtype == torch.float32:
        w = d.new_empty(d.shape[1], x.shape[1])  # only its dtype and layout matter: dense out
        dw, db = torch.ops.aten.mkldnn_linear_backward_weights(
            d.contiguous().to_mkldnn(), x.contiguous().to_mkldnn(), w, bias
        )
        return dw, db if bias else None
    return d.t() @ x, d.sum(0) if bias else None
