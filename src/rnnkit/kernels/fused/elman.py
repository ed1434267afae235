"""Elman's fused kernel: h_t = phi(x_t W_ih^T + b + h_{t-1} W_hh^T), a readout after the loop."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ...cells import ElmanCell
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


def elman_kernel(cell: ElmanCell, rec: Recurrence | None = None) -> Callable[..., Steps] | None:
    """ElmanCell's fused kernel: named activations (their derivatives are known); not zoneout with a
    readout (the readout reads the unzoned h: reference loop only)."""
    if not isinstance(cell.nonlinearity, str):
        return None
    zoned = rec is not None and rec.zoneout is not None
    return None if zoned and cell.readout_size is not None else run_elman
