"""rnnkit's fused recurrences: one layer and direction per call, with analytic backpropagation
through time.

The structure is the one cuDNN and haste use:
- forward: one big GEMM for the input projection of all T steps, then per step one GEMM for the
  recurrent part (weights packed once, see ``packed.py``) and the pointwise gate math;
- backward: the reverse loop only propagates ``dL/dh`` (one GEMM per step) and stores the gate
  gradients; the weight and input gradients are then three big GEMMs over all steps at once.
Under ``torch.no_grad()`` nothing is saved for backward.

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

from ..cells import Cell, ElmanCell, GRUCell
from ..cells.base import State
from .masks import reverse_padded, step_mask
from .packed import linear

# activation, and its derivative written in terms of the activation's *output* y
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (torch.tanh, lambda y: 1 - y * y),
    "sigmoid": (torch.sigmoid, lambda y: y * (1 - y)),
    "relu": (torch.relu, lambda y: (y > 0).to(y.dtype)),
    "identity": (lambda v: v, torch.ones_like),
}


def _keep(alive: Tensor | None, t: int, new: Tensor, old: Tensor) -> Tensor:
    return new if alive is None else torch.where(alive[t], new, old)


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


# -- Elman -------------------------------------------------------------------------------------------


def _elman_forward(x, h0, w_ih, w_hh, b, alive, act):
    """x (T, B, F), h0 (B, H) -> hs (T+1, B, H): hs[0] = h0, hs[t+1] = phi(x_t W_ih^T + b + hs[t] W_hh^T)."""
    T, B, _ = x.shape
    phi = ACTIVATIONS[act][0]
    xw = (torch.addmm(b, _flat(x), w_ih.t()) if b is not None else _flat(x) @ w_ih.t()).view(T, B, -1)
    rec = linear(w_hh, B)
    hs = x.new_empty(T + 1, B, h0.shape[-1])
    hs[0] = h0
    for t in range(T):
        hs[t + 1] = _keep(alive, t, phi(xw[t] + rec(hs[t], None)), hs[t])
    return hs


class ElmanScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b, alive, act):
        hs = _elman_forward(x, h0, w_ih, w_hh, b, alive, act)
        ctx.save_for_backward(x, w_ih, w_hh, hs, alive)
        ctx.act, ctx.has_bias = act, b is not None
        return hs[1:].clone(), hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        x, w_ih, w_hh, hs, alive = ctx.saved_tensors
        dphi = ACTIVATIONS[ctx.act][1]
        T, B, H = dy.shape
        back = linear(w_hh.t(), B)  # dh_{t-1} = dz_t W_hh
        dz = torch.empty_like(dy)
        dh = dh_last
        for t in reversed(range(T)):
            g = (dh + dy[t]) * dphi(hs[t + 1])
            if alive is not None:  # a finished sequence passes dh through untouched
                g = torch.where(alive[t], g, 0.0)
                dz[t] = g
                dh = torch.where(alive[t], back(g, None), dh)
            else:
                dz[t] = g
                dh = back(g, None)
        dzf = _flat(dz)
        dx = (dzf @ w_ih).view_as(x)
        dw_ih, dw_hh = dzf.t() @ _flat(x), dzf.t() @ _flat(hs[:-1])
        db = dzf.sum(0) if ctx.has_bias else None
        return dx, dh, dw_ih, dw_hh, db, None, None


def run_elman(cell: ElmanCell, x: Tensor, h0: Tensor, alive: Tensor | None) -> tuple[Tensor, Tensor]:
    b = cell.bias_ih + cell.bias_hh if cell.bias_ih is not None else None
    args = (x, h0, cell.weight_ih, cell.weight_hh, b, alive, cell.nonlinearity)
    if _needs_grad(args):
        h, h_last = ElmanScan.apply(*args)
    else:
        hs = _elman_forward(*args)
        h, h_last = hs[1:], hs[-1]
    if cell.readout_size is None:
        return h, h_last
    # the readout does not feed back, so it is one big product after the loop
    return cell.psi(F.linear(h, cell.weight_hy, cell.bias_y)), h_last


# -- GRU ---------------------------------------------------------------------------------------------


def _gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, alive, reset_after, save):
    """Returns hs (T+1, B, H) and, if ``save``, the gate buffers (r, z, n, m) each (T, B, H), where m is
    ``h W_hn^T + b_hn`` (reset_after) or ``r * h`` (textbook form)."""
    T, B, _ = x.shape
    H = h0.shape[-1]
    xw = (torch.addmm(b_ih, _flat(x), w_ih.t()) if b_ih is not None else _flat(x) @ w_ih.t()).view(T, B, -1)
    if reset_after:
        rec = linear(w_hh, B)
    else:
        rec_rz, rec_n = linear(w_hh[: 2 * H], B), linear(w_hh[2 * H :], B)
        b_rz, b_n = (b_hh[: 2 * H], b_hh[2 * H :]) if b_hh is not None else (None, None)
    hs = x.new_empty(T + 1, B, H)
    hs[0] = h0
    gates = x.new_empty(4, T, B, H) if save else None
    for t in range(T):
        h = hs[t]
        x_r, x_z, x_n = xw[t].chunk(3, -1)
        if reset_after:
            h_r, h_z, m = rec(h, b_hh).chunk(3, -1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * m)
        else:
            h_r, h_z = rec_rz(h, b_rz).chunk(2, -1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            m = r * h
            n = torch.tanh(x_n + rec_n(m, b_n))
        hs[t + 1] = _keep(alive, t, n + z * (h - n), h)
        if save:
            gates[0, t], gates[1, t], gates[2, t], gates[3, t] = r, z, n, m
    return hs, gates


class GRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, alive, reset_after):
        hs, gates = _gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, alive, reset_after, save=True)
        ctx.save_for_backward(x, w_ih, w_hh, hs, gates, alive)
        ctx.reset_after, ctx.has_bias = reset_after, b_ih is not None
        return hs[1:].clone(), hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        x, w_ih, w_hh, hs, gates, alive = ctx.saved_tensors
        T, B, H = dy.shape
        r_all, z_all, n_all, m_all = gates
        dxg = dy.new_empty(T, B, 3 * H)  # gradients of the input-side pre-activations (r, z, n)
        dhg = dy.new_empty(T, B, 3 * H)  # of the recurrent-side products (h W_hr, h W_hz, m or r*h W_hn)
        if ctx.reset_after:
            back = linear(w_hh.t(), B)
        else:
            back_rz, back_n = linear(w_hh[: 2 * H].t(), B), linear(w_hh[2 * H :].t(), B)
        dh = dh_last
        for t in reversed(range(T)):
            h, r, z, n, m = hs[t], r_all[t], z_all[t], n_all[t], m_all[t]
            g = dh + dy[t]  # dL/dh_t
            if alive is not None:
                g = torch.where(alive[t], g, 0.0)
            dn = g * (1 - z) * (1 - n * n)  # through h_t = n + z (h - n), then tanh
            dz = g * (h - n) * z * (1 - z)
            if ctx.reset_after:  # n = tanh(x_n + r * m)
                dr = dn * m * r * (1 - r)
                dhg[t] = torch.cat([dr, dz, dn * r], -1)
                dh_prev = g * z + back(dhg[t], None)
            else:  # n = tanh(x_n + (r * h) W_hn^T + b_hn)
                drh = back_n(dn, None)
                dr = drh * h * r * (1 - r)
                dhg[t] = torch.cat([dr, dz, dn], -1)
                dh_prev = g * z + drh * r + back_rz(dhg[t, :, : 2 * H], None)
            dxg[t] = torch.cat([dr, dz, dn], -1)
            dh = dh_prev if alive is None else torch.where(alive[t], dh_prev, dh)
        dxf, dhf = _flat(dxg), _flat(dhg)
        dx = (dxf @ w_ih).view_as(x)
        dw_ih = dxf.t() @ _flat(x)
        if ctx.reset_after:
            dw_hh = dhf.t() @ _flat(hs[:-1])
        else:  # the n block multiplies r * h, the r and z blocks multiply h
            dw_hh = torch.cat([dhf[:, : 2 * H].t() @ _flat(hs[:-1]), dhf[:, 2 * H :].t() @ _flat(m_all)])
        db_ih = dxf.sum(0) if ctx.has_bias else None
        db_hh = dhf.sum(0) if ctx.has_bias else None
        return dx, dh, dw_ih, dw_hh, db_ih, db_hh, None, None


def run_gru(cell: GRUCell, x: Tensor, h0: Tensor, alive: Tensor | None) -> tuple[Tensor, Tensor]:
    args = (x, h0, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, alive, cell.reset_after)
    if _needs_grad(args):
        return GRUScan.apply(*args)
    hs, _ = _gru_forward(*args, save=False)
    return hs[1:], hs[-1]


# -- dispatch ----------------------------------------------------------------------------------------


def _needs_grad(args: tuple) -> bool:
    return torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)


def fused_kernel(cell: Cell) -> Callable[..., tuple[Tensor, State]] | None:
    """The fused kernel that computes this cell's recurrence exactly, or None."""
    if type(cell) is ElmanCell and isinstance(cell.nonlinearity, str):
        return run_elman
    if type(cell) is GRUCell:
        return run_gru
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
