"""Jordan's fused kernel: the state is the previous output y_{t-1}."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...cells import JordanCell
from .. import compiled
from ..masks import Recurrence
from ..packed import linear
from .common import (
    ACTIVATIONS,
    Steps,
    _flat,
    _freeze,
    _input_side,
    _keep,
    _kept,
    _masked,
    _needs_grad,
    _past_end,
    _plain,
    _recurrent_grad,
    _start,
    _starts,
    _to_start,
    _zeros_like,
)


def _jordan_forward(xw, y0, w_yh, w_hy, b_y, alive, act, out_act, mask=None, zone=None, reset=None,
                    init=None):  # fmt: skip
    """hs (T, B, H) and ys (T+1, B, O): h_t = phi(xw_t + (y_{t-1} mask) W_yh^T) with xw_t = x_t W_ih^T
    + b_h, y_t = psi(h_t W_hy^T + b_y) then zoneout, ys[0] = y0; also the starting states and the
    outputs before zoneout (T, B, O)."""
    T, B, H = xw.shape
    phi, psi = ACTIVATIONS[act][0], ACTIVATIONS[out_act][0]
    rec, read = linear(w_yh, B), linear(w_hy, B)
    hs, ys = xw.new_empty(T, B, H), xw.new_empty(T + 1, *y0.shape)
    ys[0] = y0
    starts = _starts(ys, reset)
    cand = ys[1:] if zone is None else torch.empty_like(ys[1:])
    for t in range(T):
        y = _start(t, ys, starts, reset, init)
        phi(torch.add(xw[t], rec(_masked(y, mask), None), out=hs[t]))
        cand[t] = psi(read(hs[t], b_y))
        if zone is not None:
            torch.lerp(cand[t], y, zone[t], out=ys[t + 1])
        _freeze(alive, t, ys[t + 1], y)
    return hs, ys, starts, cand


class JordanScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, y0, w_yh, w_hy, b_y, alive, act, out_act, mask, zone, reset, init):
        hs, ys, starts, cand = _jordan_forward(xw, y0, w_yh, w_hy, b_y, alive, act, out_act, mask, zone,
                                               reset, init)  # fmt: skip
        ctx.save_for_backward(w_yh, w_hy, hs, starts, cand, alive, mask, zone, reset)
        ctx.acts, ctx.has_bias = (act, out_act), b_y is not None
        return ys[1:].clone(), ys[-1].clone()

    @staticmethod
    def backward(ctx, dy, dy_last):
        w_yh, w_hy, hs, starts, cand, alive, mask, zone, reset = ctx.saved_tensors
        dphi, dpsi = ACTIVATIONS[ctx.acts[0]][1], ACTIVATIONS[ctx.acts[1]][1]
        T, B, _ = dy.shape
        to_h, to_y = linear(w_hy.t(), B), linear(w_yh.t(), B)
        dv = torch.empty_like(dy)  # of the output pre-activations h W_hy^T + b_y
        da = torch.empty_like(hs)  # of the hidden pre-activations: also dL/dxw
        dinit, kept = _zeros_like(dy_last, reset), _kept(zone)
        dstate = dy_last
        for t in reversed(range(T)):
            frozen, g = _past_end(dstate + dy[t], alive, t)  # dL/dy_t: as output and as the next state
            torch.mul(_keep(g, kept, t), dpsi(cand[t]), out=dv[t])
            torch.mul(to_h(dv[t], None), dphi(hs[t]), out=da[t])
            step = _to_start(_recurrent_grad(to_y(da[t], None), g, t, mask, zone), t, reset, dinit)
            dstate = step if alive is None else torch.where(alive[t], step, frozen)
        dvf, daf = _flat(dv), _flat(da)
        dw_yh, dw_hy = daf.t() @ _flat(_masked(starts, mask)), dvf.t() @ _flat(hs)
        db_y = dvf.sum(0) if ctx.has_bias else None
        return da, dstate, dw_yh, dw_hy, db_y, None, None, None, None, None, None, dinit


def run_jordan(cell: JordanCell, x: Tensor, y0: Tensor, alive: Tensor | None, rec: Recurrence,
               reset: Tensor | None, keep: bool) -> Steps:  # fmt: skip
    init = rec.init if reset is not None else None
    grad = _needs_grad((x, y0, init, *cell.parameters()))
    xw = _input_side(x, cell.weight_ih, cell.bias_h, grad)
    args = (xw, y0, cell.weight_yh, cell.weight_hy, cell.bias_y, alive, cell.nonlinearity,
            cell.output_activation, rec.state_mask, rec.zone(0), reset, init)  # fmt: skip
    if compiled.usable(xw, "jordan") and _plain(rec, reset, keep):  # the same loops in C++
        y, y_last = compiled.jordan(grad, *args[:10])
        return y, y_last, y, {}
    if grad:
        y, y_last = JordanScan.apply(*args)
        return y, y_last, y, {}
    ys = _jordan_forward(*args)[1]
    return ys[1:], ys[-1], ys[1:], {}


def jordan_kernel(cell: JordanCell, rec: Recurrence | None = None) -> Callable[..., Steps] | None:
    """JordanCell's fused kernel: named activations (their derivatives are known)."""
    named = isinstance(cell.nonlinearity, str) and isinstance(cell.output_activation, str)
    return run_jordan if named else None
