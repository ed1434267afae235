"""GRU's fused kernel, both forms (reset-after as torch and cuDNN, reset-before as the textbook)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...cells import GRUCell
from .. import compiled
from ..masks import Recurrence
from ..packed import linear
from .common import (
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


def _gru_forward(xw, h0, w_hh, b_hh, alive, reset_after, mask=None, zone=None, reset=None, init=None):
    """xw (T, B, 3H) = x W_ih^T + b_ih. Returns hs (T+1, B, H), the starting states (T, B, H) and the
    gates saved for backward: rz (T, B, 2H) = sigmoid of the r and z pre-activations, n (T, B, H),
    and m (T, B, H) = ``h' W_hn^T + b_hn`` (reset_after) or ``r * h'``, where h' = h * mask is what
    the products see (state dropout); the interpolation ``z h + (1 - z) n`` uses the unmasked h."""
    T, B, _ = xw.shape
    H = h0.shape[-1]
    if reset_after:
        rec = linear(w_hh, B)
    else:
        rec_rz, rec_n = linear(w_hh[: 2 * H], B), linear(w_hh[2 * H :], B)
        b_rz, b_n = (b_hh[: 2 * H], b_hh[2 * H :]) if b_hh is not None else (None, None)
    hs = xw.new_empty(T + 1, B, H)
    hs[0] = h0
    starts = _starts(hs, reset)
    rz_all, n_all, m_all = xw.new_empty(T, B, 2 * H), xw.new_empty(T, B, H), xw.new_empty(T, B, H)
    for t in range(T):
        h, rz, n, m = _start(t, hs, starts, reset, init), rz_all[t], n_all[t], m_all[t]
        hm = _masked(h, mask)
        if reset_after:  # n = tanh(x_n + r * (h W_hn^T + b_hn))
            hw = rec(hm, b_hh)
            torch.add(xw[t, :, : 2 * H], hw[:, : 2 * H], out=rz).sigmoid_()
            m.copy_(hw[:, 2 * H :])
            torch.addcmul(xw[t, :, 2 * H :], rz[:, :H], m, out=n).tanh_()
        else:  # n = tanh(x_n + (r * h) W_hn^T + b_hn)
            torch.add(xw[t, :, : 2 * H], rec_rz(hm, b_rz), out=rz).sigmoid_()
            torch.mul(rz[:, :H], hm, out=m)
            torch.add(xw[t, :, 2 * H :], rec_n(m, b_n), out=n).tanh_()
        if zone is None:
            torch.lerp(n, h, rz[:, H:], out=hs[t + 1])  # h_t = n + z (h_{t-1} - n) = z h + (1 - z) n
        else:
            torch.lerp(torch.lerp(n, h, rz[:, H:]), h, zone[t], out=hs[t + 1])
        _freeze(alive, t, hs[t + 1], h)
    return hs, starts, rz_all, n_all, m_all


class GRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, alive, reset_after, mask, zone, reset, init, keep):
        hs, starts, rz, n, m = _gru_forward(xw, h0, w_hh, b_hh, alive, reset_after, mask, zone, reset, init)
        ctx.save_for_backward(w_hh, starts, rz, n, m, alive, mask, zone, reset)
        ctx.reset_after, ctx.has_bias, ctx.keep = reset_after, b_hh is not None, keep
        gates = (rz.clone(), n.clone()) if keep else (rz.new_empty(0), n.new_empty(0))  # on request
        return hs[1:].clone(), hs[-1].clone(), *gates

    @staticmethod
    def backward(ctx, dy, dh_last, d_rz, d_n):
        w_hh, h_prev, rz, n, m, alive, mask, zone, reset = ctx.saved_tensors
        T, B, H = dy.shape
        # Gradients of the pre-activations, written step by step into preallocated buffers (small
        # per-step temporaries stay in the allocator's cache; big temporaries would page-fault).
        dxg = dy.new_empty(T, B, 3 * H)  # of xw = x W_ih^T + b_ih: [dr, dz, dn]
        if ctx.reset_after:
            dm = dy.new_empty(T, B, 3 * H)  # of h' W_hh^T + b_hh: [dr, dz, dn * r]
            back = linear(w_hh.t(), B)
        else:
            back_rz, back_n = linear(w_hh[: 2 * H].t(), B), linear(w_hh[2 * H :].t(), B)
        dinit, kept = _zeros_like(dh_last, reset), _kept(zone)
        dh = dh_last
        for t in reversed(range(T)):
            r, z, n_t, h = rz[t, :, :H], rz[t, :, H:], n[t], h_prev[t]
            frozen, g = _past_end(dh + dy[t], alive, t)  # dL/dh_t
            gc = _keep(g, kept, t)  # dL/d(h_t before zoneout)
            dr, dz, dn = dxg[t, :, :H], dxg[t, :, H : 2 * H], dxg[t, :, 2 * H :]
            # h_t = n + z (h - n):  dL/dn_pre = g (1 - z)(1 - n^2),  dL/dz_pre = g (h - n) z (1 - z)
            torch.mul(gc - gc * z, 1 - n_t * n_t, out=dn)
            torch.mul(gc * (h - n_t), z - z * z, out=dz)
            if ctx.keep:  # gradients arriving through the returned gate activations
                dn.addcmul_(d_n[t], 1 - n_t * n_t)
                dz.addcmul_(d_rz[t, :, H:], z - z * z)
            if ctx.reset_after:  # n = tanh(x_n + r * m):  dL/dr_pre = dn_pre m r (1 - r)
                torch.mul(dn * m[t], r - r * r, out=dr)
                if ctx.keep:
                    dr.addcmul_(d_rz[t, :, :H], r - r * r)
                dm[t, :, : 2 * H] = dxg[t, :, : 2 * H]
                torch.mul(dn, r, out=dm[t, :, 2 * H :])
                step = back(dm[t], None)
            else:  # n = tanh(x_n + (r * h') W_hn^T + b_hn)
                drh = back_n(dn.contiguous(), None)  # dL/d(r * h')
                torch.mul(drh * _masked(h, mask), r - r * r, out=dr)
                if ctx.keep:
                    dr.addcmul_(d_rz[t, :, :H], r - r * r)
                step = back_rz(dxg[t, :, : 2 * H].contiguous(), None).addcmul_(drh, r)
            step = _recurrent_grad(step, g, t, mask, zone).addcmul_(gc, z)
            step = _to_start(step, t, reset, dinit)
            dh = step if alive is None else torch.where(alive[t], step, frozen)
        h_seen = _flat(_masked(h_prev, mask))
        if ctx.reset_after:
            dmf = _flat(dm)
            dw_hh, db_hh = dmf.t() @ h_seen, dmf.sum(0)
        else:  # the r and z blocks multiply h', the n block multiplies r * h'
            dxf = _flat(dxg)
            dw_hh = torch.cat([dxf[:, : 2 * H].t() @ h_seen, dxf[:, 2 * H :].t() @ _flat(m)])
            db_hh = dxf.sum(0)
        return dxg, dh, dw_hh, db_hh if ctx.has_bias else None, None, None, None, None, None, dinit, None


def _gru_gates(rz: Tensor, n: Tensor) -> dict[str, Tensor]:
    """The activations GRUCell.gates names: reset r, update z, candidate n, each (T, B, H)."""
    r, z = rz.chunk(2, -1)
    return {"reset": r, "update": z, "new": n}


def run_gru(cell: GRUCell, x: Tensor, h0: Tensor, alive: Tensor | None, rec: Recurrence,
            reset: Tensor | None, keep: bool) -> Steps:  # fmt: skip
    init = rec.init if reset is not None else None
    grad = _needs_grad((x, h0, init, *cell.parameters()))
    xw = _input_side(x, cell.weight_ih, cell.bias_ih, grad)
    args = (xw, h0, cell.weight_hh, cell.bias_hh, alive, cell.reset_after, rec.state_mask, rec.zone(0),
            reset, init)  # fmt: skip
    if compiled.usable(xw, "gru") and _plain(rec, reset, keep):  # the same loops in C++
        h, h_last = compiled.gru(grad, *args[:8])
        return h, h_last, h, {}
    if grad:
        h, h_last, rz, n = GRUScan.apply(*args, keep)
        return h, h_last, h, (_gru_gates(rz, n) if keep else {})
    hs, _, rz, n, _ = _gru_forward(*args)
    return hs[1:], hs[-1], hs[1:], _gru_gates(rz, n)


def gru_kernel(cell: GRUCell, rec: Recurrence | None = None) -> Callable[..., Steps]:
    """GRUCell's fused kernel: every option."""
    return run_gru
