"""Parallel scans: whole sequences of cells whose recurrence is linear in the state (minGRU, minLSTM).

Such a cell's step is ``h_t = a_t * h_{t-1} + b_t`` with ``a_t``, ``b_t`` computed from ``x_t`` alone,
so all T of them come from one big product, and the recurrence is an associative scan over the pairs
``(a_t, b_t)``: ``(a, b) then (a', b') = (a' a, a' b + b')``.

:func:`linear_scan` solves it by odd-even reduction (Blelloch 1990, "Prefix sums and their
applications", Section 1.4; the recursive-doubling form of Stone 1973): combine neighbouring pairs,
solve the half-length recurrence that leaves (the odd steps), then fill in the even steps from them.
That is O(T) work, log2(T) levels of a few whole-tensor operations, and each h_t is a short sum of
products, so it rounds like the sequential loop does. Its backward is the same scan run backwards in
time (``g_t = dL/dh_t + a_{t+1} g_{t+1}``), so nothing but ``a`` and ``h`` is saved.

Why not the log-space scan of the paper (Heinsen 2023, https://arxiv.org/abs/2311.06281:
``log h_t = a*_t + logcumsumexp(log b_t - a*_t)``, ``a*_t = cumsum(log a_t)``)? Measured on this
CPU (``benchmarks/scan.py``, docs/benchmarks.md) it trains 3-6x slower (``logcumsumexp`` is an exp
and a log per element) and it loses precision with length: ``a*_t`` grows like t, and its rounding
(eps * |a*_t|) lands in log h: 9e-5 relative error in float32 at T=2048, against 2e-7 for this scan
and for the loops. It also needs ``b > 0`` (hence the paper's g) and ``h_0 > 0``. The linear-space
scan needs neither; products of many ``a < 1`` underflow to 0 harmlessly, which is the exact limit
anyway.

Long sequences run in blocks of steps (``run_scan``, ``BLOCK_ELEMENTS``): the scan within a block,
the state carried from block to block, so the tensors stay in cache.

Padded batches: past a sequence's end ``a = 1`` and ``b = 0``, so its state stays frozen, and its
outputs are zeroed, as in the reference loop (``layers.recurrent.run_cell``). Every kernel here is
tested against that loop in ``tests/test_minimal.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import Cell
from ..cells.base import State
from ..cells.minimal import MinGRUCell, MinLSTMCell
from ..cells.registry import fast_path
from ..errors import check
from .masks import reverse_padded, step_mask


def _scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    """h (T, ...) with ``h_t = a_t h_{t-1} + b_t`` and ``h_{-1} = h0`` (zero if None), by odd-even
    reduction. a, b: (T, ...). With h0 None, ``a[0]`` is never read."""
    T = a.shape[0]
    if T == 1:
        return b.clone() if h0 is None else torch.addcmul(b, a, h0)
    a0, a1, b0, b1 = a[0::2], a[1::2], b[0::2], b[1::2]  # a0, b0: the even steps 0, 2, ...
    pairs = a1.shape[0]  # T // 2
    # step 2k then step 2k+1 as one step: h_{2k+1} = (a_{2k+1} a_{2k}) h_{2k-1} + (a_{2k+1} b_{2k} + b_{2k+1})
    odd = _scan(a1 * a0[:pairs], torch.addcmul(b1, a1, b0[:pairs]), h0)  # h_1, h_3, ...
    h = torch.empty_like(b)
    h[1::2] = odd
    h[0] = b[0] if h0 is None else torch.addcmul(b[0], a[0], h0)
    torch.addcmul(b0[1:], a0[1:], odd[: b0.shape[0] - 1], out=h[2::2])  # h_{2k} = a_{2k} h_{2k-1} + b_{2k}
    return h


class LinearScan(torch.autograd.Function):
    """``h = scan(a, b, h0)`` with its backward as a reverse scan: for ``g_t = dL/dh_t`` (all paths),
    ``g_t = dh_t + a_{t+1} g_{t+1}``, then ``dL/db_t = g_t``, ``dL/da_t = g_t h_{t-1}``,
    ``dL/dh0 = a_0 g_0``."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:  # type: ignore[override]
        h = _scan(a, b, h0)
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, dh: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        # reversed time s = T-1-t: r_s = dh_{T-1-s} + a_{T-s} r_{s-1}, so the coefficients are a[1:]
        # reversed, after a first one that multiplies the zero r_{-1}. Written with differentiable ops
        # (linear_scan again), so double backward works too.
        back = torch.cat([torch.ones_like(a[:1]), a[1:].flip(0)])
        g = linear_scan(back, dh.flip(0), torch.zeros_like(h0)).flip(0)  # (T, ...)
        da = g * torch.cat([h0[None], h[:-1]]) if ctx.needs_input_grad[0] else None
        dh0 = a[0] * g[0] if ctx.needs_input_grad[2] else None
        return da, g, dh0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` for all t at once (elementwise).

    Args:
        a, b: (T, ...) the coefficients of each step. h0: (...) the state before step 0.

    Returns:
        h: (T, ...), the state after every step. Differentiable in a, b and h0 (the backward is a
        reverse scan; see :class:`LinearScan`).
    """
    check(
        a.dim() >= 1 and a.shape[0] >= 1 and a.shape == b.shape,
        f"linear_scan: a and b must have the same shape (T, ...) with T >= 1, got {tuple(a.shape)} "
        f"and {tuple(b.shape)}",
    )
    check(
        h0.shape == a.shape[1:],
        f"linear_scan: h0 must be one step's shape {tuple(a.shape[1:])}, got {tuple(h0.shape)}",
    )
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or h0.requires_grad):
        return LinearScan.apply(a, b, h0)
    return _scan(a, b, h0)


# -- the cells' coefficients: a, b for all steps from one product ------------------------------------


def mingru_coefficients(cell: MinGRUCell, x: Tensor) -> tuple[Tensor, Tensor]:
    """minGRU as ``h_t = a_t h_{t-1} + b_t``: ``a = 1 - z``, ``b = z * h~``. x: (T, B, F) -> (T, B, H) x 2."""
    k_z, k_h = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(2, -1)  # (T, B, H) each
    z = torch.sigmoid(k_z)
    return torch.sigmoid(-k_z), z * cell.h_tilde(k_h)  # sigmoid(-k) = 1 - z, without the cancellation


def minlstm_coefficients(cell: MinLSTMCell, x: Tensor) -> tuple[Tensor, Tensor]:
    """minLSTM as ``h_t = a_t h_{t-1} + b_t``: ``a = f'``, ``b = i' * h~``. x: (T, B, F) -> (T, B, H) x 2.

    ``f' = f / (f + i) = sigmoid(log f - log i)`` with ``log sigmoid(k) = -softplus(-k)``: the same
    number as the cell's quotient, and finite even where both gates underflow (the paper's Appendix B
    uses the same log form)."""
    k_f, k_i, k_h = F.linear(x, cell.weight_ih, cell.bias_ih).chunk(3, -1)  # (T, B, H) each
    diff = F.softplus(-k_i) - F.softplus(-k_f)  # log f - log i
    return torch.sigmoid(diff), torch.sigmoid(-diff) * cell.h_tilde(k_h)


def scan_kernel(cell: Cell) -> Callable[[Cell, Tensor], tuple[Tensor, Tensor]] | None:
    """The function giving this cell's ``(a, b)`` for a whole sequence (the cell's declared ``scan``
    fast path), or None if it has no scan."""
    return fast_path(cell, "scan")


# Steps per block: about this many elements of (steps, B, H). The scan streams its tensors through
# memory a few dozen times; blocks of 4 MB (float32) stay in cache, and fresh tensors that small are
# recycled by the allocator instead of mapped page by page. Measured 1.15-1.7x faster than one block
# for T >= 2048 at B=16, H=256 in training, the same for T <= 512 (docs/benchmarks.md).
BLOCK_ELEMENTS = 1 << 20


def run_scan(
    cell: Cell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool = False
) -> tuple[Tensor, State]:
    """Same contract as ``layers.recurrent.run_cell``, through the parallel scan.

    x: (T, B, F); state: (B, H); lengths: (B,) or None. Returns (y (T, B, H), zeros at padded steps;
    the state at each sequence's last step (B, H)). Long sequences run in blocks of steps (see
    ``BLOCK_ELEMENTS``), each block's scan starting from the previous block's last state: the same
    numbers, the steps within a block in parallel.
    """
    coefficients = scan_kernel(cell)
    if coefficients is None:
        raise ValueError(f"no parallel scan for {cell!r}")
    if reverse:
        x = reverse_padded(x, lengths)
    T, B = x.shape[:2]
    alive = step_mask(T, lengths)  # (T, B, 1) or None
    steps = max(1, BLOCK_ELEMENTS // max(1, B * cell.hidden_size))  # B may be 0
    hs, h = [], state
    # split, not slices: autograd turns each slice into a full (T, B, F) gradient
    for i, x_block in enumerate(x.split(steps)):
        a, b = coefficients(cell, x_block)  # (steps, B, H) each
        if alive is not None:  # past its end a sequence keeps its state: h_t = 1 * h_{t-1} + 0
            on = alive[i * steps : (i + 1) * steps]
            a, b = torch.where(on, a, 1.0), torch.where(on, b, 0.0)
        hs.append(linear_scan(a, b, h))  # (steps, B, H)
        h = hs[-1][-1]
    final = h  # frozen after each sequence's end, so this is its last step's state
    y = hs[0] if len(hs) == 1 else torch.cat(hs)
    y = y if alive is None else torch.where(alive, y, 0.0)
    return (reverse_padded(y, lengths) if reverse else y), final
