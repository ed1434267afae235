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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell, ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState
from ..cells.base import State
from . import compiled
from .masks import reverse_padded, step_mask
from .packed import linear, weight_grad

# activation (in place), and its derivative written in terms of the activation's *output* y
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (torch.tanh_, lambda y: 1 - y * y),
    "sigmoid": (torch.sigmoid_, lambda y: y * (1 - y)),
    "relu": (torch.relu_, lambda y: (y > 0).to(y.dtype)),
    "identity": (lambda v: v, torch.ones_like),
}


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


def _project(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """The input projection of all steps at once: (T, B, F) -> (T, B, G), one big GEMM."""
    T, B, _ = x.shape
    return linear(w, T * B)(_flat(x), b).view(T, B, w.shape[0])


def _freeze(alive: Tensor | None, t: int, new: Tensor, old: Tensor) -> None:
    """Past its end a sequence keeps its state: new <- old there (in place)."""
    if alive is not None:
        torch.where(alive[t], new, old, out=new)


# -- the input side: no recurrence, so one big product for all steps --------------------------------


def _input_side(x: Tensor, w: Tensor, b: Tensor | None, grad: bool) -> Tensor:
    """``x W^T + b`` for all steps, through :class:`Project` when gradients are needed."""
    return Project.apply(x, w, b) if grad else _project(x, w, b)


# -- Elman -------------------------------------------------------------------------------------------


def _elman_forward(xw, h0, w_hh, alive, act):
    """hs (T+1, B, H): hs[0] = h0, hs[t+1] = phi(xw_t + hs[t] W_hh^T), xw_t = x_t W_ih^T + b."""
    phi = ACTIVATIONS[act][0]
    rec = linear(w_hh, xw.shape[1])
    hs = xw.new_empty(xw.shape[0] + 1, *h0.shape)
    hs[0] = h0
    for t in range(xw.shape[0]):
        phi(torch.add(xw[t], rec(hs[t], None), out=hs[t + 1]))
        _freeze(alive, t, hs[t + 1], hs[t])
    return hs


class ElmanScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, w_hh, alive, act):
        hs = _elman_forward(xw, h0, w_hh, alive, act)
        ctx.save_for_backward(w_hh, hs, alive)
        ctx.act = act
        return hs[1:].clone(), hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        w_hh, hs, alive = ctx.saved_tensors
        T, B, H = dy.shape
        dphi = ACTIVATIONS[ctx.act][1]
        back = linear(w_hh.t(), B)  # dh_{t-1} = dz_t W_hh
        dz = torch.empty_like(dy)  # of the pre-activations: also dL/dxw
        dh = dh_last
        for t in reversed(range(T)):
            g = dh + dy[t]
            if alive is not None:  # a finished sequence: no gradient into its (frozen) steps
                g = torch.where(alive[t], g, 0.0)
            torch.mul(g, dphi(hs[t + 1]), out=dz[t])
            step = back(dz[t], None)
            dh = step if alive is None else torch.where(alive[t], step, dh)
        return dz, dh, _flat(dz).t() @ _flat(hs[:-1]), None, None


def run_elman(cell: ElmanCell, x: Tensor, h0: Tensor, alive: Tensor | None) -> tuple[Tensor, Tensor]:
    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    grad = _needs_grad((x, h0, *cell.parameters()))
    xw = _input_side(x, cell.weight_ih, b, grad)
    if compiled.usable(xw, "elman"):  # the same loops in C++
        h, h_last = compiled.elman(grad, xw, h0, cell.weight_hh, alive, cell.nonlinearity)
    elif grad:
        h, h_last = ElmanScan.apply(xw, h0, cell.weight_hh, alive, cell.nonlinearity)
    else:
        hs = _elman_forward(xw, h0, cell.weight_hh, alive, cell.nonlinearity)
        h, h_last = hs[1:], hs[-1]
    if cell.readout_size is None:
        return h, h_last
    # the readout does not feed back, so it is one big product after the loop
    return cell.psi(F.linear(h, cell.weight_hy, cell.bias_y)), h_last


# -- GRU ---------------------------------------------------------------------------------------------


def _gru_forward(xw, h0, w_hh, b_hh, alive, reset_after):
    """xw (T, B, 3H) = x W_ih^T + b_ih. Returns hs (T+1, B, H) and the gates saved for backward:
    rz (T, B, 2H) = sigmoid of the r and z pre-activations, n (T, B, H), and m (T, B, H) =
    ``h W_hn^T + b_hn`` (reset_after) or ``r * h``."""
    T, B, _ = xw.shape
    H = h0.shape[-1]
    if reset_after:
        rec = linear(w_hh, B)
    else:
        rec_rz, rec_n = linear(w_hh[: 2 * H], B), linear(w_hh[2 * H :], B)
        b_rz, b_n = (b_hh[: 2 * H], b_hh[2 * H :]) if b_hh is not None else (None, None)
    hs = xw.new_empty(T + 1, B, H)
    hs[0] = h0
    rz_all, n_all, m_all = xw.new_empty(T, B, 2 * H), xw.new_empty(T, B, H), xw.new_empty(T, B, H)
    for t in range(T):
        h, rz, n, m = hs[t], rz_all[t], n_all[t], m_all[t]
        if reset_after:  # n = tanh(x_n + r * (h W_hn^T + b_hn))
            hw = rec(h, b_hh)
            torch.add(xw[t, :, : 2 * H], hw[:, : 2 * H], out=rz).sigmoid_()
            m.copy_(hw[:, 2 * H :])
            torch.addcmul(xw[t, :, 2 * H :], rz[:, :H], m, out=n).tanh_()
        else:  # n = tanh(x_n + (r * h) W_hn^T + b_hn)
            torch.add(xw[t, :, : 2 * H], rec_rz(h, b_rz), out=rz).sigmoid_()
            torch.mul(rz[:, :H], h, out=m)
            torch.add(xw[t, :, 2 * H :], rec_n(m, b_n), out=n).tanh_()
        torch.lerp(n, h, rz[:, H:], out=hs[t + 1])  # h_t = n + z (h_{t-1} - n) = z h + (1 - z) n
        _freeze(alive, t, hs[t + 1], h)
    return hs, rz_all, n_all, m_all


class GRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, w_hh, b_hh, alive, reset_after):
        hs, rz, n, m = _gru_forward(xw, h0, w_hh, b_hh, alive, reset_after)
        ctx.save_for_backward(w_hh, hs, rz, n, m, alive)
        ctx.reset_after, ctx.has_bias = reset_after, b_hh is not None
        return hs[1:].clone(), hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        w_hh, hs, rz, n, m, alive = ctx.saved_tensors
        T, B, H = dy.shape
        h_prev = hs[:-1]
        # Gradients of the pre-activations, written step by step into preallocated buffers (small
        # per-step temporaries stay in the allocator's cache; big temporaries would page-fault).
        dxg = dy.new_empty(T, B, 3 * H)  # of xw = x W_ih^T + b_ih: [dr, dz, dn]
        if ctx.reset_after:
            dm = dy.new_empty(T, B, 3 * H)  # of h W_hh^T + b_hh: [dr, dz, dn * r]
            back = linear(w_hh.t(), B)
        else:
            back_rz, back_n = linear(w_hh[: 2 * H].t(), B), linear(w_hh[2 * H :].t(), B)
        dh = dh_last
        for t in reversed(range(T)):
            r, z, n_t, h = rz[t, :, :H], rz[t, :, H:], n[t], h_prev[t]
            g = dh + dy[t]  # dL/dh_t
            if alive is not None:
                g = torch.where(alive[t], g, 0.0)
            dr, dz, dn = dxg[t, :, :H], dxg[t, :, H : 2 * H], dxg[t, :, 2 * H :]
            # h_t = n + z (h - n):  dL/dn_pre = g (1 - z)(1 - n^2),  dL/dz_pre = g (h - n) z (1 - z)
            torch.mul(g - g * z, 1 - n_t * n_t, out=dn)
            torch.mul(g * (h - n_t), z - z * z, out=dz)
            if ctx.reset_after:  # n = tanh(x_n + r * m):  dL/dr_pre = dn_pre m r (1 - r)
                torch.mul(dn * m[t], r - r * r, out=dr)
                dm[t, :, : 2 * H] = dxg[t, :, : 2 * H]
                torch.mul(dn, r, out=dm[t, :, 2 * H :])
                step = torch.addcmul(back(dm[t], None), g, z)
            else:  # n = tanh(x_n + (r * h) W_hn^T + b_hn)
                drh = back_n(dn.contiguous(), None)  # dL/d(r * h)
                torch.mul(drh * h, r - r * r, out=dr)
                step = torch.addcmul(back_rz(dxg[t, :, : 2 * H].contiguous(), None), g, z)
                step.addcmul_(drh, r)
            dh = step if alive is None else torch.where(alive[t], step, dh)
        if ctx.reset_after:
            dmf = _flat(dm)
            dw_hh, db_hh = dmf.t() @ _flat(h_prev), dmf.sum(0)
        else:  # the r and z blocks multiply h, the n block multiplies r * h
            dxf = _flat(dxg)
            dw_hh = torch.cat([dxf[:, : 2 * H].t() @ _flat(h_prev), dxf[:, 2 * H :].t() @ _flat(m)])
            db_hh = dxf.sum(0)
        return dxg, dh, dw_hh, db_hh if ctx.has_bias else None, None, None


def run_gru(cell: GRUCell, x: Tensor, h0: Tensor, alive: Tensor | None) -> tuple[Tensor, Tensor]:
    grad = _needs_grad((x, h0, *cell.parameters()))
    xw = _input_side(x, cell.weight_ih, cell.bias_ih, grad)
    args = (xw, h0, cell.weight_hh, cell.bias_hh, alive, cell.reset_after)
    if compiled.usable(xw, "gru"):
        return compiled.gru(grad, *args)
    if grad:
        return GRUScan.apply(*args)
    hs = _gru_forward(*args)[0]
    return hs[1:], hs[-1]


# -- Jordan ------------------------------------------------------------------------------------------


def _jordan_forward(xw, y0, w_yh, w_hy, b_y, alive, act, out_act):
    """hs (T, B, H) and ys (T+1, B, O): h_t = phi(xw_t + y_{t-1} W_yh^T) with xw_t = x_t W_ih^T + b_h,
    y_t = psi(h_t W_hy^T + b_y), ys[0] = y0."""
    T, B, H = xw.shape
    phi, psi = ACTIVATIONS[act][0], ACTIVATIONS[out_act][0]
    rec, read = linear(w_yh, B), linear(w_hy, B)
    hs, ys = xw.new_empty(T, B, H), xw.new_empty(T + 1, *y0.shape)
    ys[0] = y0
    for t in range(T):
        phi(torch.add(xw[t], rec(ys[t], None), out=hs[t]))
        ys[t + 1] = psi(read(hs[t], b_y))
        _freeze(alive, t, ys[t + 1], ys[t])
    return hs, ys


class JordanScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, y0, w_yh, w_hy, b_y, alive, act, out_act):
        hs, ys = _jordan_forward(xw, y0, w_yh, w_hy, b_y, alive, act, out_act)
        ctx.save_for_backward(w_yh, w_hy, hs, ys, alive)
        ctx.acts, ctx.has_bias = (act, out_act), b_y is not None
        return ys[1:].clone(), ys[-1].clone()

    @staticmethod
    def backward(ctx, dy, dy_last):
        w_yh, w_hy, hs, ys, alive = ctx.saved_tensors
        dphi, dpsi = ACTIVATIONS[ctx.acts[0]][1], ACTIVATIONS[ctx.acts[1]][1]
        T, B, _ = dy.shape
        to_h, to_y = linear(w_hy.t(), B), linear(w_yh.t(), B)
        dv = torch.empty_like(dy)  # of the output pre-activations h W_hy^T + b_y
        da = torch.empty_like(hs)  # of the hidden pre-activations: also dL/dxw
        dstate = dy_last
        for t in reversed(range(T)):
            g = dstate + dy[t]  # dL/dy_t: as output and as the next step's state
            if alive is not None:
                g = torch.where(alive[t], g, 0.0)
            torch.mul(g, dpsi(ys[t + 1]), out=dv[t])
            torch.mul(to_h(dv[t], None), dphi(hs[t]), out=da[t])
            step = to_y(da[t], None)
            dstate = step if alive is None else torch.where(alive[t], step, dstate)
        dvf, daf = _flat(dv), _flat(da)
        dw_yh, dw_hy = daf.t() @ _flat(ys[:-1]), dvf.t() @ _flat(hs)
        return da, dstate, dw_yh, dw_hy, dvf.sum(0) if ctx.has_bias else None, None, None, None


def run_jordan(cell: JordanCell, x: Tensor, y0: Tensor, alive: Tensor | None) -> tuple[Tensor, Tensor]:
    grad = _needs_grad((x, y0, *cell.parameters()))
    xw = _input_side(x, cell.weight_ih, cell.bias_h, grad)
    args = (xw, y0, cell.weight_yh, cell.weight_hy, cell.bias_y, alive, cell.nonlinearity,
            cell.output_activation)  # fmt: skip
    if compiled.usable(xw, "jordan"):
        return compiled.jordan(grad, *args)
    if grad:
        return JordanScan.apply(*args)
    ys = _jordan_forward(*args)[1]
    return ys[1:], ys[-1]


# -- LSTM (plain, peephole, projection, layer norm) --------------------------------------------------


class Project(torch.autograd.Function):
    """``x W^T + b`` for all steps at once (T, B, F) -> (T, B, G), oneDNN-packed both ways."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _project(x, w, b)

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        T, B, _ = x.shape
        d = _flat(dout)
        dx = linear(w.t(), T * B)(d, None).view_as(x)
        return dx, *weight_grad(d, _flat(x), ctx.has_bias)


def _norm(v: Tensor) -> tuple[Tensor, Tensor]:
    """Layer norm without affine over the last axis: (v - mean) * rstd, and rstd (..., 1)."""
    out, _, rstd = torch.native_layer_norm(v, v.shape[-1:], None, None, 1e-5)
    return out, rstd


def _norm_backward(dout: Tensor, xhat: Tensor, rstd: Tensor) -> Tensor:
    """Gradient through ``xhat = (v - mean) * rstd`` given dL/dxhat."""
    return rstd * (dout - dout.mean(-1, keepdim=True) - xhat * (dout * xhat).mean(-1, keepdim=True))


def _lstm_forward(xw, h0, c0, w_hh, w_hr, peep, ln, alive):
    """xw (T, B, 4H): the input side of the gates, biases included (and normalised, with layer norm).
    ``ln`` is None or (gain_h, gain_c, bias_c). Returns hs (T+1, B, R), cs (T+1, B, H) and what
    backward needs: activated gates (T, B, 4H) in order i, f, g, o, tanh of the cell output (T, B, H),
    o * tanh(.) before the projection, and with layer norm the normalised products and their rstd."""
    T, B, _ = xw.shape
    H = c0.shape[-1]
    rec = linear(w_hh, B)
    proj = linear(w_hr, B) if w_hr is not None else None
    hs, cs = xw.new_empty(T + 1, *h0.shape), xw.new_empty(T + 1, *c0.shape)
    hs[0], cs[0] = h0, c0
    acts, tcs = xw.new_empty(T, B, 4 * H), xw.new_empty(T, B, H)
    full = xw.new_empty(T, B, H) if proj is not None else None
    if ln is not None:
        xh, rh = xw.new_empty(T, B, 4 * H), xw.new_empty(T, B, 1)  # LN_h: normalised h W_hh^T, rstd
        xc, rc = xw.new_empty(T, B, H), xw.new_empty(T, B, 1)  # LN_c: normalised c_t, rstd
    for t in range(T):
        h, c, a, tc = hs[t], cs[t], acts[t], tcs[t]
        if ln is None:
            torch.add(xw[t], rec(h, None), out=a)
        else:
            xh[t], rh[t] = _norm(rec(h, None))
            torch.addcmul(xw[t], xh[t], ln[0], out=a)
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        if peep is not None:  # i += p_i c_{t-1}, f += p_f c_{t-1}
            i.addcmul_(peep[0], c)
            f.addcmul_(peep[1], c)
        a[:, : 2 * H].sigmoid_()
        g.tanh_()
        c_new = cs[t + 1]
        torch.addcmul(f * c, i, g, out=c_new)  # c_t = f c_{t-1} + i g
        _freeze(alive, t, c_new, c)
        if peep is not None:  # o += p_o c_t
            o.addcmul_(peep[2], c_new)
        o.sigmoid_()
        if ln is None:
            torch.tanh(c_new, out=tc)
        else:
            xc[t], rc[t] = _norm(c_new)
            torch.addcmul(ln[2], xc[t], ln[1], out=tc).tanh_()
        if proj is None:
            torch.mul(o, tc, out=hs[t + 1])
        else:
            torch.mul(o, tc, out=full[t])
            hs[t + 1] = proj(full[t], None)
        _freeze(alive, t, hs[t + 1], h)
    saved = (xh, rh, xc, rc) if ln is not None else None
    return hs, cs, acts, tcs, full, saved


class LSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, w_hr, peep, g_h, g_c, b_c, alive):
        ln = (g_h, g_c, b_c) if g_h is not None else None
        hs, cs, acts, tcs, full, normed = _lstm_forward(xw, h0, c0, w_hh, w_hr, peep, ln, alive)
        ctx.save_for_backward(w_hh, w_hr, peep, g_h, g_c, alive, hs, cs, acts, tcs, full, *(normed or ()))
        return hs[1:].clone(), hs[-1].clone(), cs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last, dc_last):
        w_hh, w_hr, peep, g_h, g_c, alive, hs, cs, acts, tcs, full, *normed = ctx.saved_tensors
        ln = g_h is not None
        if ln:
            xh, rh, xc, rc = normed
        T, B, _ = dy.shape
        H = cs.shape[-1]
        back = linear(w_hh.t(), B)  # dh_{t-1} = d(h W_hh^T) W_hh
        back_hr = linear(w_hr.t(), B) if w_hr is not None else None
        dgates = dy.new_empty(T, B, 4 * H)  # of the gate pre-activations, order i, f, g, o
        drec = dy.new_empty(T, B, 4 * H) if ln else dgates  # of h W_hh^T
        dzc = dy.new_empty(T, B, H) if ln else None  # of LN_c's output
        dhs = dy.new_empty(T, B, dy.shape[-1]) if w_hr is not None else None  # dL/dh_t (projected)
        dh, dc = dh_last, dc_last
        for t in reversed(range(T)):
            a, tc, c_prev = acts[t], tcs[t], cs[t]
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            di, df = dgates[t, :, :H], dgates[t, :, H : 2 * H]
            dg, do = dgates[t, :, 2 * H : 3 * H], dgates[t, :, 3 * H :]
            gh = dh + dy[t]
            dc_in = dc
            if alive is not None:  # finished sequences: no gradient into their frozen steps
                gh, dc_in = torch.where(alive[t], gh, 0.0), torch.where(alive[t], dc, 0.0)
            if back_hr is not None:  # h_t = (o tanh(.)) W_hr^T
                dhs[t] = gh
                gh = back_hr(gh, None)
            torch.mul(gh * tc, o - o * o, out=do)  # h = o tanh(c)  [or o tanh(LN_c(c))]
            dtc = gh * o * (1 - tc * tc)
            if ln:
                dzc[t] = dtc
                dct = dc_in + _norm_backward(dtc * g_c, xc[t], rc[t])
            else:
                dct = dc_in + dtc
            if peep is not None:
                dct.addcmul_(do, peep[2])
            torch.mul(dct * c_prev, f - f * f, out=df)  # c_t = f c_{t-1} + i g
            torch.mul(dct * g, i - i * i, out=di)
            torch.mul(dct * i, 1 - g * g, out=dg)
            dc_prev = dct * f
            if peep is not None:
                dc_prev.addcmul_(di, peep[0]).addcmul_(df, peep[1])
            if ln:
                drec[t] = _norm_backward(dgates[t] * g_h, xh[t], rh[t])
            dh_prev = back(drec[t], None)
            if alive is None:
                dh, dc = dh_prev, dc_prev
            else:
                dh, dc = torch.where(alive[t], dh_prev, dh), torch.where(alive[t], dc_prev, dc)
        dw_hh = _flat(drec).t() @ _flat(hs[:-1])
        dw_hr = _flat(dhs).t() @ _flat(full) if w_hr is not None else None
        dpeep = None
        if peep is not None:
            dpeep = torch.stack([
                (dgates[..., :H] * cs[:-1]).sum((0, 1)),
                (dgates[..., H : 2 * H] * cs[:-1]).sum((0, 1)),
                (dgates[..., 3 * H :] * cs[1:]).sum((0, 1)),
            ])  # fmt: skip
        dg_h = dg_c = db_c = None
        if ln:
            dg_h, dg_c, db_c = (dgates * xh).sum((0, 1)), (dzc * xc).sum((0, 1)), dzc.sum((0, 1))
        return dgates, dh, dc, dw_hh, dw_hr, dpeep, dg_h, dg_c, db_c, None


def run_lstm(cell: LSTMCell, x: Tensor, state: LSTMState, alive: Tensor | None) -> tuple[Tensor, LSTMState]:
    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    peep = torch.stack([cell.weight_ci, cell.weight_cf, cell.weight_co]) if cell.peephole else None
    ln = (cell.norm_h.weight, cell.norm_c.weight, cell.norm_c.bias) if cell.layer_norm else (None,) * 3
    grad = _needs_grad((x, *state, *cell.parameters()))
    if cell.layer_norm:  # the input side has no recurrence: normalise all steps at once, with autograd
        xw = cell.norm_x(
            Project.apply(x, cell.weight_ih, None) if grad else _project(x, cell.weight_ih, None)
        )
        xw = xw + b if b is not None else xw
    else:
        xw = Project.apply(x, cell.weight_ih, b) if grad else _project(x, cell.weight_ih, b)
    args = (xw, state.h, state.c, cell.weight_hh, cell.weight_hr, peep, *ln, alive)
    if compiled.usable(xw, "lstm"):
        y, h, c = compiled.lstm(grad, *args)
        return y, LSTMState(h, c)
    if grad:
        y, h, c = LSTMScan.apply(*args)
        return y, LSTMState(h, c)
    hs, cs = _lstm_forward(xw, state.h, state.c, cell.weight_hh, cell.weight_hr, peep,
                           ln if cell.layer_norm else None, alive)[:2]  # fmt: skip
    return hs[1:], LSTMState(hs[-1], cs[-1])


# -- dispatch ----------------------------------------------------------------------------------------


def _needs_grad(args: tuple) -> bool:
    return torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)


def fused_kernel(cell: Cell) -> Callable[..., tuple[Tensor, State]] | None:
    """The fused kernel that computes this cell's recurrence exactly, or None."""
    if type(cell) is ElmanCell and isinstance(cell.nonlinearity, str):
        return run_elman
    if (
        type(cell) is JordanCell
        and isinstance(cell.nonlinearity, str)
        and isinstance(cell.output_activation, str)
    ):
        return run_jordan
    if type(cell) is GRUCell:
        return run_gru
    if type(cell) is LSTMCell:
        return run_lstm
    return None


def run_fused(
    cell: Cell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool = False
) -> tuple[Tensor, State]:
    """Same contract as ``layers.recurrent.run_cell``, through the cell's fused kernel."""
    kernel = fused_kernel(cell)
    if kernel is None:
        raise ValueError(f"no fused kernel for {cell!r}")
    if reverse:
        x = reverse_padded(x, lengths)
    alive = step_mask(x.shape[0], lengths)
    y, final = kernel(cell, x.contiguous(), state, alive)
    if alive is not None:
        y = torch.where(alive, y, 0.0)
    return (reverse_padded(y, lengths) if reverse else y), final
