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
from ..cells.base import State, map_state
from . import compiled
from .masks import Recurrence, reset_in_processing_order, reverse_padded, step_mask
from .packed import linear, weight_grad

# activation (in place), and its derivative written in terms of the activation's *output* y
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (torch.tanh_, lambda y: 1 - y * y),
    "sigmoid": (torch.sigmoid_, lambda y: y * (1 - y)),
    "relu": (torch.relu_, lambda y: (y > 0).to(y.dtype)),
    "identity": (lambda v: v, torch.ones_like),
}

# what a kernel returns: outputs (T, B, O), the final state, and, for a trace, every step's state
# (T, B, n) per field and the gate activations name -> (T, B, H) ({} for cells without gates)
Steps = tuple[Tensor, State, State, dict[str, Tensor]]


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


# -- the controls of one forward: state dropout, zoneout, resets (see masks.Recurrence) ---------------
# Forward: a step starts from ``_start`` (hs[t], or the initial state where a stream resets), feeds
# ``state * mask`` to the recurrent product, and after zoneout keeps ``lerp(candidate, start, z)``.
# Backward: the gradient into a step's starting state is ``(product part) * mask + z * g``; where the
# stream reset, it goes to the initial state instead of the step before (``_to_start``).


def _starts(hs: Tensor, reset: Tensor | None) -> Tensor:
    """Buffer for the states the steps start from: hs[:-1] itself when nothing resets."""
    return hs[:-1] if reset is None else torch.empty_like(hs[:-1])


def _start(t: int, hs: Tensor, starts: Tensor, reset: Tensor | None, init: Tensor | None) -> Tensor:
    """The state step t starts from: hs[t], or ``init`` where the stream resets (kept in starts[t])."""
    if reset is None:
        return hs[t]
    return torch.where(reset[t], init, hs[t], out=starts[t])


def _to_start(d: Tensor, t: int, reset: Tensor | None, dinit: Tensor | None) -> Tensor:
    """Split dL/d(step t's starting state): the reset streams' share goes to ``dinit`` (in place), the
    rest to the step before."""
    if reset is None:
        return d
    dinit.add_(torch.where(reset[t], d, 0.0))
    return torch.where(reset[t], 0.0, d)


def _masked(h: Tensor, mask: Tensor | None) -> Tensor:
    return h if mask is None else h * mask


def _kept(zone: Tensor | None) -> Tensor | None:
    """1 - z for all steps at once (backward multiplies by it at every step)."""
    return None if zone is None else 1 - zone


def _keep(g: Tensor, kept: Tensor | None, t: int) -> Tensor:
    """dL/d(candidate) from dL/d(zoned state) g: ``(1 - z) g``; ``kept`` is ``_kept(zone)``."""
    return g if kept is None else g * kept[t]


def _recurrent_grad(d: Tensor, g: Tensor, t: int, mask: Tensor | None, zone: Tensor | None) -> Tensor:
    """dL/d(starting state) = (product part d) * mask + z * g, in place on d (a fresh tensor)."""
    if mask is not None:
        d.mul_(mask)
    if zone is not None:
        d.addcmul_(zone[t], g)
    return d


def _past_end(g: Tensor, alive: Tensor | None, t: int) -> tuple[Tensor, Tensor]:
    """(what a frozen step passes on: all of g, what the step's own math gets: g where alive, else 0).
    Past its end a sequence's state is a copy of its last one, so a gradient arriving there (through
    the per-step states) belongs to the step before."""
    if alive is None:
        return g, g
    return g, torch.where(alive[t], g, 0.0)


def _zeros_like(t: Tensor, reset: Tensor | None) -> Tensor | None:
    return torch.zeros_like(t) if reset is not None else None


# -- the input side: no recurrence, so one big product for all steps --------------------------------


def _input_side(x: Tensor, w: Tensor, b: Tensor | None, grad: bool) -> Tensor:
    """``x W^T + b`` for all steps, through :class:`Project` when gradients are needed."""
    return Project.apply(x, w, b) if grad else _project(x, w, b)


# -- Elman -------------------------------------------------------------------------------------------


def _elman_forward(xw, h0, w_hh, alive, act, mask=None, zone=None, reset=None, init=None):
    """hs (T+1, B, H): hs[0] = h0, hs[t+1] = phi(xw_t + (h_t mask) W_hh^T), xw_t = x_t W_ih^T + b,
    then zoneout; h_t is hs[t] or, where the stream resets, init. Also returns the starting states
    (T, B, H) and the candidates before zoneout (T, B, H)."""
    phi = ACTIVATIONS[act][0]
    rec = linear(w_hh, xw.shape[1])
    hs = xw.new_empty(xw.shape[0] + 1, *h0.shape)
    hs[0] = h0
    starts = _starts(hs, reset)
    cand = hs[1:] if zone is None else torch.empty_like(hs[1:])
    for t in range(xw.shape[0]):
        h = _start(t, hs, starts, reset, init)
        phi(torch.add(xw[t], rec(_masked(h, mask), None), out=cand[t]))
        if zone is not None:
            torch.lerp(cand[t], h, zone[t], out=hs[t + 1])
        _freeze(alive, t, hs[t + 1], h)
    return hs, starts, cand


class ElmanScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, w_hh, alive, act, mask, zone, reset, init):
        hs, starts, cand = _elman_forward(xw, h0, w_hh, alive, act, mask, zone, reset, init)
        ctx.save_for_backward(w_hh, starts, cand, alive, mask, zone, reset)
        ctx.act = act
        return hs[1:].clone(), hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        w_hh, starts, cand, alive, mask, zone, reset = ctx.saved_tensors
        T, B, H = dy.shape
        dphi = ACTIVATIONS[ctx.act][1]
        back = linear(w_hh.t(), B)  # dh_{t-1} = dz_t W_hh
        dz = torch.empty_like(dy)  # of the pre-activations: also dL/dxw
        dinit, kept = _zeros_like(dh_last, reset), _kept(zone)
        dh = dh_last
        for t in reversed(range(T)):
            g = dh + dy[t]
            # a finished sequence: its frozen steps pass the gradient (from traced states) straight on
            frozen, g = _past_end(g, alive, t)
            torch.mul(_keep(g, kept, t), dphi(cand[t]), out=dz[t])
            step = _to_start(_recurrent_grad(back(dz[t], None), g, t, mask, zone), t, reset, dinit)
            dh = step if alive is None else torch.where(alive[t], step, frozen)
        dw_hh = _flat(dz).t() @ _flat(_masked(starts, mask))
        return dz, dh, dw_hh, None, None, None, None, None, dinit


def run_elman(cell: ElmanCell, x: Tensor, h0: Tensor, alive: Tensor | None, rec: Recurrence,
              reset: Tensor | None, keep: bool) -> Steps:  # fmt: skip
    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    init = rec.init if reset is not None else None
    grad = _needs_grad((x, h0, init, *cell.parameters()))
    xw = _input_side(x, cell.weight_ih, b, grad)
    args = (xw, h0, cell.weight_hh, alive, cell.nonlinearity, rec.state_mask, rec.zone(0), reset, init)
    if compiled.usable(xw, "elman") and _plain(rec, reset, keep):  # the same loops in C++
        h, h_last = compiled.elman(grad, *args[:7])
    elif grad:
        h, h_last = ElmanScan.apply(*args)
    else:
        hs = _elman_forward(*args)[0]
        h, h_last = hs[1:], hs[-1]
    if cell.readout_size is None:
        return h, h_last, h, {}
    # the readout does not feed back, so it is one big product after the loop
    return cell.psi(F.linear(h, cell.weight_hy, cell.bias_y)), h_last, h, {}


# -- GRU ---------------------------------------------------------------------------------------------


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


# -- Jordan ------------------------------------------------------------------------------------------


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


# -- dispatch ----------------------------------------------------------------------------------------


def _plain(rec: Recurrence, reset: Tensor | None, keep: bool) -> bool:
    """What the compiled loops (C++) run: state dropout and zoneout, but no resets or per-step states
    (those run the Python loops)."""
    return reset is None and not keep


def _needs_grad(args: tuple) -> bool:
    return torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)


def fused_kernel(cell: Cell, rec: Recurrence | None = None) -> Callable[..., tuple] | None:
    """The fused kernel that computes this cell's recurrence exactly (with ``rec``'s state dropout,
    zoneout and resets), or None."""
    if type(cell) is ElmanCell and isinstance(cell.nonlinearity, str):
        # zoneout with a readout: the readout reads the unzoned h (reference loop only)
        zoned = rec is not None and rec.zoneout is not None
        return None if zoned and cell.readout_size is not None else run_elman
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


# Under torch.compile this runs eagerly (a graph break): inductor cannot lower the packed oneDNN
# products (mkldnn._linear_pointwise on a view), and the kernel has its own analytic backward anyway.
@torch.compiler.disable
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
