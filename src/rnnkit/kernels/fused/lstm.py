"""LSTM's fused kernel: plain, peephole, projection, layer norm, any combination."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...cells import LSTMCell, LSTMState
from .. import compiled
from ..masks import Recurrence
from ..packed import linear
from .common import (
    Project,
    Steps,
    _flat,
    _freeze,
    _keep,
    _kept,
    _masked,
    _needs_grad,
    _past_end,
    _plain,
    _project,
    _recurrent_grad,
    _start,
    _starts,
    _to_start,
    _zeros_like,
)


def _norm(v: Tensor) -> tuple[Tensor, Tensor]:
    """Layer norm without affine over the last axis: (v - mean) * rstd, and rstd (..., 1)."""
    out, _, rstd = torch.native_layer_norm(v, v.shape[-1:], None, None, 1e-5)
    return out, rstd


def _norm_backward(dout: Tensor, xhat: Tensor, rstd: Tensor) -> Tensor:
    """Gradient through ``xhat = (v - mean) * rstd`` given dL/dxhat."""
    return rstd * (dout - dout.mean(-1, keepdim=True) - xhat * (dout * xhat).mean(-1, keepdim=True))


def _lstm_forward(xw, h0, c0, w_hh, w_hr, peep, ln, alive, mask=None, zone_h=None, zone_c=None,
                  reset=None, init_h=None, init_c=None):  # fmt: skip
    """xw (T, B, 4H): the input side of the gates, biases included (and normalised, with layer norm).
    ``ln`` is None or (gain_h, gain_c, bias_c). Returns hs (T+1, B, R), cs (T+1, B, H) and what
    backward needs: the starting states (h, c) of every step, the new cell values before zoneout
    (T, B, H), activated gates (T, B, 4H) in order i, f, g, o, tanh of the cell output (T, B, H),
    o * tanh(.) before the projection, and with layer norm the normalised products and their rstd.
    As in Krueger et al.'s zoneout, h_t = o tanh(c~_t) reads the cell value before its zoneout."""
    T, B, _ = xw.shape
    H = c0.shape[-1]
    rec = linear(w_hh, B)
    proj = linear(w_hr, B) if w_hr is not None else None
    hs, cs = xw.new_empty(T + 1, *h0.shape), xw.new_empty(T + 1, *c0.shape)
    hs[0], cs[0] = h0, c0
    h_starts, c_starts = _starts(hs, reset), _starts(cs, reset)
    c_cand = cs[1:] if zone_c is None else torch.empty_like(cs[1:])
    acts, tcs = xw.new_empty(T, B, 4 * H), xw.new_empty(T, B, H)
    full = xw.new_empty(T, B, H) if proj is not None else None
    if ln is not None:
        xh, rh = xw.new_empty(T, B, 4 * H), xw.new_empty(T, B, 1)  # LN_h: normalised h W_hh^T, rstd
        xc, rc = xw.new_empty(T, B, H), xw.new_empty(T, B, 1)  # LN_c: normalised c_t, rstd
    for t in range(T):
        h, c = _start(t, hs, h_starts, reset, init_h), _start(t, cs, c_starts, reset, init_c)
        a, tc = acts[t], tcs[t]
        if ln is None:
            torch.add(xw[t], rec(_masked(h, mask), None), out=a)
        else:
            xh[t], rh[t] = _norm(rec(_masked(h, mask), None))
            torch.addcmul(xw[t], xh[t], ln[0], out=a)
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        if peep is not None:  # i += p_i c_{t-1}, f += p_f c_{t-1}
            i.addcmul_(peep[0], c)
            f.addcmul_(peep[1], c)
        a[:, : 2 * H].sigmoid_()
        g.tanh_()
        c_new = c_cand[t]
        torch.addcmul(f * c, i, g, out=c_new)  # c_t = f c_{t-1} + i g
        if peep is not None:  # o += p_o c_t
            o.addcmul_(peep[2], c_new)
        o.sigmoid_()
        if ln is None:
            torch.tanh(c_new, out=tc)
        else:
            xc[t], rc[t] = _norm(c_new)
            torch.addcmul(ln[2], xc[t], ln[1], out=tc).tanh_()
        if proj is None:
            h_new = torch.mul(o, tc, out=hs[t + 1]) if zone_h is None else o * tc
        else:
            torch.mul(o, tc, out=full[t])
            h_new = proj(full[t], None)
        if zone_h is not None:
            torch.lerp(h_new, h, zone_h[t], out=hs[t + 1])
        elif proj is not None:
            hs[t + 1] = h_new
        if zone_c is not None:
            torch.lerp(c_new, c, zone_c[t], out=cs[t + 1])
        _freeze(alive, t, cs[t + 1], c)
        _freeze(alive, t, hs[t + 1], h)
    saved = (xh, rh, xc, rc) if ln is not None else None
    return hs, cs, h_starts, c_starts, c_cand, acts, tcs, full, saved


class LSTMScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, c0, w_hh, w_hr, peep, g_h, g_c, b_c, alive, mask, zone_h, zone_c, reset,
                init_h, init_c, keep):  # fmt: skip
        ln = (g_h, g_c, b_c) if g_h is not None else None
        hs, cs, *rest = _lstm_forward(xw, h0, c0, w_hh, w_hr, peep, ln, alive, mask, zone_h, zone_c, reset,
                                      init_h, init_c)  # fmt: skip
        h_starts, c_starts, c_cand, acts, tcs, full, normed = rest
        ctx.save_for_backward(w_hh, w_hr, peep, g_h, g_c, alive, mask, zone_h, zone_c, reset, h_starts,
                              c_starts, c_cand, acts, tcs, full, *(normed or ()))  # fmt: skip
        ctx.keep = keep
        # every step's c and gate activations, on request
        c_steps, gates = (cs[1:].clone(), acts.clone()) if keep else (cs.new_empty(0), acts.new_empty(0))
        return hs[1:].clone(), hs[-1].clone(), cs[-1].clone(), c_steps, gates

    @staticmethod
    def backward(ctx, dy, dh_last, dc_last, dc_steps, d_acts):
        (w_hh, w_hr, peep, g_h, g_c, alive, mask, zone_h, zone_c, reset, h_starts, c_starts, c_cand, acts,
         tcs, full, *normed) = ctx.saved_tensors  # fmt: skip
        ln = g_h is not None
        if ln:
            xh, rh, xc, rc = normed
        T, B, _ = dy.shape
        H = acts.shape[-1] // 4
        back = linear(w_hh.t(), B)  # dh_{t-1} = d(h W_hh^T) W_hh
        back_hr = linear(w_hr.t(), B) if w_hr is not None else None
        dgates = dy.new_empty(T, B, 4 * H)  # of the gate pre-activations, order i, f, g, o
        drec = dy.new_empty(T, B, 4 * H) if ln else dgates  # of h W_hh^T
        dzc = dy.new_empty(T, B, H) if ln else None  # of LN_c's output
        dhs = dy.new_empty(T, B, dy.shape[-1]) if w_hr is not None else None  # dL/dh_t (projected)
        dinit_h, dinit_c = _zeros_like(dh_last, reset), _zeros_like(dc_last, reset)
        kept_h, kept_c = _kept(zone_h), _kept(zone_c)
        dh, dc = dh_last, dc_last
        for t in reversed(range(T)):
            a, tc, c_prev = acts[t], tcs[t], c_starts[t]
            i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            di, df = dgates[t, :, :H], dgates[t, :, H : 2 * H]
            dg, do = dgates[t, :, 2 * H : 3 * H], dgates[t, :, 3 * H :]
            frozen_h, gh = _past_end(dh + dy[t], alive, t)
            frozen_c, dc_in = _past_end(dc + dc_steps[t] if ctx.keep else dc, alive, t)
            gh_new, dc_new = _keep(gh, kept_h, t), _keep(dc_in, kept_c, t)  # before zoneout
            if back_hr is not None:  # h_t = (o tanh(.)) W_hr^T
                dhs[t] = gh_new
                gh_new = back_hr(gh_new, None)
            torch.mul(gh_new * tc, o - o * o, out=do)  # h = o tanh(c)  [or o tanh(LN_c(c))]
            if ctx.keep:  # gradients arriving through the returned gate activations
                do.addcmul_(d_acts[t, :, 3 * H :], o - o * o)
            dtc = gh_new * o * (1 - tc * tc)
            if ln:
                dzc[t] = dtc
                dct = dc_new + _norm_backward(dtc * g_c, xc[t], rc[t])
            else:
                dct = dc_new + dtc
            if peep is not None:
                dct.addcmul_(do, peep[2])
            torch.mul(dct * c_prev, f - f * f, out=df)  # c_t = f c_{t-1} + i g
            torch.mul(dct * g, i - i * i, out=di)
            torch.mul(dct * i, 1 - g * g, out=dg)
            if ctx.keep:
                da = d_acts[t]
                di.addcmul_(da[:, :H], i - i * i)
                df.addcmul_(da[:, H : 2 * H], f - f * f)
                dg.addcmul_(da[:, 2 * H : 3 * H], 1 - g * g)
            dc_prev = dct * f
            if peep is not None:
                dc_prev.addcmul_(di, peep[0]).addcmul_(df, peep[1])
            if zone_c is not None:
                dc_prev.addcmul_(zone_c[t], dc_in)
            if ln:
                drec[t] = _norm_backward(dgates[t] * g_h, xh[t], rh[t])
            dh_prev = _recurrent_grad(back(drec[t], None), gh, t, mask, zone_h)
            dh_prev, dc_prev = _to_start(dh_prev, t, reset, dinit_h), _to_start(dc_prev, t, reset, dinit_c)
            if alive is None:
                dh, dc = dh_prev, dc_prev
            else:
                dh, dc = torch.where(alive[t], dh_prev, frozen_h), torch.where(alive[t], dc_prev, frozen_c)
        dw_hh = _flat(drec).t() @ _flat(_masked(h_starts, mask))
        dw_hr = _flat(dhs).t() @ _flat(full) if w_hr is not None else None
        dpeep = None
        if peep is not None:
            dpeep = torch.stack([
                (dgates[..., :H] * c_starts).sum((0, 1)),
                (dgates[..., H : 2 * H] * c_starts).sum((0, 1)),
                (dgates[..., 3 * H :] * c_cand).sum((0, 1)),
            ])  # fmt: skip
        dg_h = dg_c = db_c = None
        if ln:
            dg_h, dg_c, db_c = (dgates * xh).sum((0, 1)), (dzc * xc).sum((0, 1)), dzc.sum((0, 1))
        nones = (None,) * 5  # alive, mask, zone_h, zone_c, reset
        return dgates, dh, dc, dw_hh, dw_hr, dpeep, dg_h, dg_c, db_c, *nones, dinit_h, dinit_c, None


def _lstm_gates(acts: Tensor) -> dict[str, Tensor]:
    """The activations LSTMCell.gates names, each (T, B, H), from the kernel's (T, B, 4H) i, f, g, o."""
    i, f, g, o = acts.chunk(4, -1)
    return {"input": i, "forget": f, "cell": g, "output": o}


def run_lstm(cell: LSTMCell, x: Tensor, state: LSTMState, alive: Tensor | None, rec: Recurrence,
             reset: Tensor | None, keep: bool) -> Steps:  # fmt: skip
    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    peep = torch.stack([cell.weight_ci, cell.weight_cf, cell.weight_co]) if cell.peephole else None
    ln = (cell.norm_h.weight, cell.norm_c.weight, cell.norm_c.bias) if cell.layer_norm else (None,) * 3
    init = rec.init if reset is not None else LSTMState(None, None)
    grad = _needs_grad((x, *state, *init, *cell.parameters()))
    if cell.layer_norm:  # the input side has no recurrence: normalise all steps at once, with autograd
        xw = cell.norm_x(
            Project.apply(x, cell.weight_ih, None) if grad else _project(x, cell.weight_ih, None)
        )
        xw = xw + b if b is not None else xw
    else:
        xw = Project.apply(x, cell.weight_ih, b) if grad else _project(x, cell.weight_ih, b)
    controls = (rec.state_mask, rec.zone(0), rec.zone(1), reset, *init)
    if compiled.usable(xw, "lstm") and _plain(rec, reset, keep):  # the same loops in C++
        y, h, c = compiled.lstm(grad, xw, state.h, state.c, cell.weight_hh, cell.weight_hr, peep, *ln, alive,
                                *controls[:3])  # fmt: skip
        return y, LSTMState(h, c), None, {}
    if grad:
        args = (xw, state.h, state.c, cell.weight_hh, cell.weight_hr, peep, *ln, alive, *controls, keep)
        y, h, c, c_steps, acts = LSTMScan.apply(*args)
        steps = LSTMState(y, c_steps) if keep else None
        return y, LSTMState(h, c), steps, (_lstm_gates(acts) if keep else {})
    hs, cs, *rest = _lstm_forward(xw, state.h, state.c, cell.weight_hh, cell.weight_hr, peep,
                                  ln if cell.layer_norm else None, alive, *controls)  # fmt: skip
    return hs[1:], LSTMState(hs[-1], cs[-1]), LSTMState(hs[1:], cs[1:]), _lstm_gates(rest[3])


def lstm_kernel(cell: LSTMCell, rec: Recurrence | None = None) -> Callable[..., Steps]:
    """LSTMCell's fused kernel: every option."""
    return run_lstm
