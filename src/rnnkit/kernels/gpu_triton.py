"""Triton kernels for one time step of the recurrences cuDNN lacks: the pointwise half of a step.

A step of a fused GPU recurrence (``gpu_fused.py``) is torch's matrix product for the recurrent part
(cuBLAS) and then one of these kernels for everything else: gate activations, layer norm (a row
reduction: one program holds a whole row), peepholes, zoneout, state dropout. The backward step is the
same in reverse: one kernel that turns ``dL/dh_t``, ``dL/dc_t`` into the gate gradients (and the
parts of ``dL/dh_{t-1}``, ``dL/dc_{t-1}`` that bypass the product), then one product.

Layout: every per-step buffer is a contiguous (B, N) row-major matrix; gate blocks are laid out as in
torch (LSTM i, f, g, o; GRU r, z, n). A program handles one batch row and ``BLOCK`` hidden units (with
layer norm, all of them). Math runs in float32 whatever the storage type (float32 or bfloat16).

On CPU tensors the kernels run in Triton's interpreter (no GPU needed; TRITON_INTERPRET=1 must be set
before triton is imported), which is how the normal test suite checks them; on CUDA tensors they are
compiled. ``tanh`` is ``2 sigmoid(2x) - 1``: the
interpreter has no ``tanh`` of its own, and the two agree to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import triton
import triton.language as tl
from torch import Tensor

ACT_CODES = {"tanh": 0, "sigmoid": 1, "relu": 2, "identity": 3}


class Kernel:
    """A Triton kernel that runs compiled on CUDA tensors and interpreted on CPU tensors:
    ``Kernel(fn)[grid](tensor_args..., device=x.device)`` is called like a ``@triton.jit`` function."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn
        self._jit: Any = None
        self._interp: Any = None

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        def launch(*args: Any, **kw: Any) -> None:
            cpu = next(a for a in args if isinstance(a, Tensor)).device.type == "cpu"
            self._compiled(cpu)[grid](*args, **kw)

        return launch

    def _compiled(self, cpu: bool) -> Any:
        if cpu:
            if not triton.knobs.runtime.interpret:
                raise RuntimeError(
                    "rnnkit's Triton kernels run on CPU tensors only in Triton's interpreter: set "
                    "TRITON_INTERPRET=1 before triton is imported (or pass CUDA tensors)"
                )
            if self._interp is None:
                from triton.runtime.interpreter import InterpretedFunction

                self._interp = InterpretedFunction(self.fn)
            return self._interp
        if self._jit is None:
            self._jit = triton.jit(self.fn)
        return self._jit


def block_for(n: int, whole_row: bool) -> int:
    """Hidden units per program: all of them (a power of two >= n) for row reductions, else up to 128
    (B=64 rows of 512 units then make 256 programs, enough to spread over the GPU's 132 SMs)."""
    b = triton.next_power_of_2(n)
    return b if whole_row else min(b, 128)


# -- LSTM (peephole, layer norm, zoneout, state dropout) -------------------------------------------------


def _lstm_step(
    XW,
    P,
    HPREV,
    CPREV,
    PEEP,
    GH,
    GC,
    BC,
    ZH,
    ZC,
    MASK,
    ACTS,
    CCAND,
    HOUT,
    COUT,
    HM,
    H,
    eps,
    PEEPHOLE: tl.constexpr,
    LN: tl.constexpr,
    ZONE_H: tl.constexpr,
    ZONE_C: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One forward step. P = (h_{t-1} mask) W_hh^T (B, 4H); XW the input side, biases in (B, 4H).
    Writes ACTS (B, 4H) i, f, g, o (float32), CCAND c~_t before zoneout (float32), HOUT/COUT the
    zoned state, HM = HOUT * mask (what the next product reads)."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r4 = b * 4 * H
    r = b * H
    pi = tl.load(P + r4 + j, mask=m, other=0.0).to(tl.float32)
    pf = tl.load(P + r4 + H + j, mask=m, other=0.0).to(tl.float32)
    pg = tl.load(P + r4 + 2 * H + j, mask=m, other=0.0).to(tl.float32)
    po = tl.load(P + r4 + 3 * H + j, mask=m, other=0.0).to(tl.float32)
    if LN:  # LN_h over the whole 4H row of the product, gain only (its bias is b_hh, already in XW)
        mean = (tl.sum(pi, 0) + tl.sum(pf, 0) + tl.sum(pg, 0) + tl.sum(po, 0)) / (4 * H)
        pi = tl.where(m, pi - mean, 0.0)
        pf = tl.where(m, pf - mean, 0.0)
        pg = tl.where(m, pg - mean, 0.0)
        po = tl.where(m, po - mean, 0.0)
        var = (tl.sum(pi * pi, 0) + tl.sum(pf * pf, 0) + tl.sum(pg * pg, 0) + tl.sum(po * po, 0)) / (4 * H)
        rstd = 1.0 / tl.sqrt(var + eps)
        pi = pi * rstd * tl.load(GH + j, mask=m, other=0.0).to(tl.float32)
        pf = pf * rstd * tl.load(GH + H + j, mask=m, other=0.0).to(tl.float32)
        pg = pg * rstd * tl.load(GH + 2 * H + j, mask=m, other=0.0).to(tl.float32)
        po = po * rstd * tl.load(GH + 3 * H + j, mask=m, other=0.0).to(tl.float32)
    ai = tl.load(XW + r4 + j, mask=m, other=0.0).to(tl.float32) + pi
    af = tl.load(XW + r4 + H + j, mask=m, other=0.0).to(tl.float32) + pf
    ag = tl.load(XW + r4 + 2 * H + j, mask=m, other=0.0).to(tl.float32) + pg
    ao = tl.load(XW + r4 + 3 * H + j, mask=m, other=0.0).to(tl.float32) + po
    c = tl.load(CPREV + r + j, mask=m, other=0.0).to(tl.float32)
    if PEEPHOLE:
        ai += tl.load(PEEP + j, mask=m, other=0.0).to(tl.float32) * c
        af += tl.load(PEEP + H + j, mask=m, other=0.0).to(tl.float32) * c
    i = tl.sigmoid(ai)
    f = tl.sigmoid(af)
    g = 2.0 * tl.sigmoid(2.0 * ag) - 1.0
    cn = f * c + i * g
    if PEEPHOLE:
        ao += tl.load(PEEP + 2 * H + j, mask=m, other=0.0).to(tl.float32) * cn
    o = tl.sigmoid(ao)
    if LN:  # LN_c over the H units, with gain and bias
        mc = tl.sum(tl.where(m, cn, 0.0), 0) / H
        dcn = tl.where(m, cn - mc, 0.0)
        rc = 1.0 / tl.sqrt(tl.sum(dcn * dcn, 0) / H + eps)
        v = dcn * rc * tl.load(GC + j, mask=m, other=0.0).to(tl.float32)
        v += tl.load(BC + j, mask=m, other=0.0).to(tl.float32)
        tc = 2.0 * tl.sigmoid(2.0 * v) - 1.0
    else:
        tc = 2.0 * tl.sigmoid(2.0 * cn) - 1.0
    h = o * tc
    tl.store(ACTS + r4 + j, i, mask=m)
    tl.store(ACTS + r4 + H + j, f, mask=m)
    tl.store(ACTS + r4 + 2 * H + j, g, mask=m)
    tl.store(ACTS + r4 + 3 * H + j, o, mask=m)
    if ZONE_C:
        tl.store(CCAND + r + j, cn, mask=m)
        zc = tl.load(ZC + r + j, mask=m, other=0.0).to(tl.float32)
        cn = cn + zc * (c - cn)
    if ZONE_H:
        zh = tl.load(ZH + r + j, mask=m, other=0.0).to(tl.float32)
        h = h + zh * (tl.load(HPREV + r + j, mask=m, other=0.0).to(tl.float32) - h)
    tl.store(COUT + r + j, cn, mask=m)
    tl.store(HOUT + r + j, h.to(HOUT.dtype.element_ty), mask=m)
    if MASKED:
        hm = h * tl.load(MASK + r + j, mask=m, other=0.0).to(tl.float32)
        tl.store(HM + r + j, hm.to(HM.dtype.element_ty), mask=m)


def _lstm_back(
    DY,
    PROD,
    MASK,
    PASSH,
    DC,
    ZH,
    ZC,
    ACTS,
    CPREV,
    CCAND,
    P,
    PEEP,
    GH,
    GC,
    BC,
    DGATES,
    DREC,
    DZC,
    H,
    eps,
    PEEPHOLE: tl.constexpr,
    LN: tl.constexpr,
    ZONE_H: tl.constexpr,
    ZONE_C: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One backward step. dL/dh_t = DY + PASSH + PROD * mask (PROD = the next step's recurrent
    gradient times W_hh, PASSH what bypassed it: zoneout's share); DC holds dL/dc_t (float32).
    Writes DGATES (B, 4H) = dL/d(gate pre-activations) (= dL/dXW), DREC = dL/dP (with layer norm; else
    DGATES is it), DZC = dL/d(LN_c output), and in place PASSH, DC for step t-1."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r4 = b * 4 * H
    r = b * H
    prod = tl.load(PROD + r + j, mask=m, other=0.0).to(tl.float32)
    if MASKED:
        prod = prod * tl.load(MASK + r + j, mask=m, other=0.0).to(tl.float32)
    gh = tl.load(DY + r + j, mask=m, other=0.0).to(tl.float32) + tl.load(PASSH + r + j, mask=m, other=0.0)
    gh += prod
    if ZONE_H:
        zh = tl.load(ZH + r + j, mask=m, other=0.0).to(tl.float32)
        tl.store(PASSH + r + j, zh * gh, mask=m)
        gh = gh - zh * gh
    else:
        tl.store(PASSH + r + j, gh * 0.0, mask=m)
    dc = tl.load(DC + r + j, mask=m, other=0.0)
    passc = dc * 0.0
    if ZONE_C:
        zc = tl.load(ZC + r + j, mask=m, other=0.0).to(tl.float32)
        passc = zc * dc
        dc = dc - passc
    i = tl.load(ACTS + r4 + j, mask=m, other=0.0)
    f = tl.load(ACTS + r4 + H + j, mask=m, other=0.0)
    g = tl.load(ACTS + r4 + 2 * H + j, mask=m, other=0.0)
    o = tl.load(ACTS + r4 + 3 * H + j, mask=m, other=0.0)
    cn = tl.load(CCAND + r + j, mask=m, other=0.0)
    if LN:
        mc = tl.sum(tl.where(m, cn, 0.0), 0) / H
        xc = tl.where(m, cn - mc, 0.0)
        rc = 1.0 / tl.sqrt(tl.sum(xc * xc, 0) / H + eps)
        xc = xc * rc
        gc = tl.load(GC + j, mask=m, other=0.0).to(tl.float32)
        v = xc * gc + tl.load(BC + j, mask=m, other=0.0).to(tl.float32)
        tc = 2.0 * tl.sigmoid(2.0 * v) - 1.0
    else:
        tc = 2.0 * tl.sigmoid(2.0 * cn) - 1.0
    do = gh * tc * o * (1.0 - o)
    dtc = gh * o * (1.0 - tc * tc)
    if LN:
        tl.store(DZC + r + j, dtc, mask=m)
        u = tl.where(m, dtc * gc, 0.0)
        dc += rc * (u - tl.sum(u, 0) / H - xc * (tl.sum(u * xc, 0) / H))
    else:
        dc += dtc
    if PEEPHOLE:
        dc += do * tl.load(PEEP + 2 * H + j, mask=m, other=0.0).to(tl.float32)
    cp = tl.load(CPREV + r + j, mask=m, other=0.0)
    df = dc * cp * f * (1.0 - f)
    di = dc * g * i * (1.0 - i)
    dg = dc * i * (1.0 - g * g)
    dcp = dc * f + passc
    if PEEPHOLE:
        dcp += di * tl.load(PEEP + j, mask=m, other=0.0).to(tl.float32)
        dcp += df * tl.load(PEEP + H + j, mask=m, other=0.0).to(tl.float32)
    tl.store(DC + r + j, dcp, mask=m)
    out = DGATES.dtype.element_ty
    tl.store(DGATES + r4 + j, di.to(out), mask=m)
    tl.store(DGATES + r4 + H + j, df.to(out), mask=m)
    tl.store(DGATES + r4 + 2 * H + j, dg.to(out), mask=m)
    tl.store(DGATES + r4 + 3 * H + j, do.to(out), mask=m)
    if LN:  # back through LN_h: recompute the product's normalisation from P
        pi = tl.load(P + r4 + j, mask=m, other=0.0).to(tl.float32)
        pf = tl.load(P + r4 + H + j, mask=m, other=0.0).to(tl.float32)
        pg = tl.load(P + r4 + 2 * H + j, mask=m, other=0.0).to(tl.float32)
        po = tl.load(P + r4 + 3 * H + j, mask=m, other=0.0).to(tl.float32)
        mean = (tl.sum(pi, 0) + tl.sum(pf, 0) + tl.sum(pg, 0) + tl.sum(po, 0)) / (4 * H)
        pi = tl.where(m, pi - mean, 0.0)
        pf = tl.where(m, pf - mean, 0.0)
        pg = tl.where(m, pg - mean, 0.0)
        po = tl.where(m, po - mean, 0.0)
        var = (tl.sum(pi * pi, 0) + tl.sum(pf * pf, 0) + tl.sum(pg * pg, 0) + tl.sum(po * po, 0)) / (4 * H)
        rstd = 1.0 / tl.sqrt(var + eps)
        pi = pi * rstd
        pf = pf * rstd
        pg = pg * rstd
        po = po * rstd
        ui = tl.where(m, di * tl.load(GH + j, mask=m, other=0.0).to(tl.float32), 0.0)
        uf = tl.where(m, df * tl.load(GH + H + j, mask=m, other=0.0).to(tl.float32), 0.0)
        ug = tl.where(m, dg * tl.load(GH + 2 * H + j, mask=m, other=0.0).to(tl.float32), 0.0)
        uo = tl.where(m, do * tl.load(GH + 3 * H + j, mask=m, other=0.0).to(tl.float32), 0.0)
        mu = (tl.sum(ui, 0) + tl.sum(uf, 0) + tl.sum(ug, 0) + tl.sum(uo, 0)) / (4 * H)
        mux = (tl.sum(ui * pi, 0) + tl.sum(uf * pf, 0) + tl.sum(ug * pg, 0) + tl.sum(uo * po, 0)) / (4 * H)
        tl.store(DREC + r4 + j, (rstd * (ui - mu - pi * mux)).to(out), mask=m)
        tl.store(DREC + r4 + H + j, (rstd * (uf - mu - pf * mux)).to(out), mask=m)
        tl.store(DREC + r4 + 2 * H + j, (rstd * (ug - mu - pg * mux)).to(out), mask=m)
        tl.store(DREC + r4 + 3 * H + j, (rstd * (uo - mu - po * mux)).to(out), mask=m)


# -- Elman (any built-in activation) --------------------------------------------------------------------


def _elman_step(
    XW,
    P,
    HPREV,
    Z,
    MASK,
    CAND,
    HOUT,
    HM,
    H,
    ACT: tl.constexpr,
    ZONE: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """h~_t = act(XW + P), P = (h_{t-1} mask) W_hh^T; HOUT = zoneout of it; CAND = h~_t (float32)."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r = b * H + j
    a = tl.load(XW + r, mask=m, other=0.0).to(tl.float32) + tl.load(P + r, mask=m, other=0.0).to(tl.float32)
    if ACT == 0:
        h = 2.0 * tl.sigmoid(2.0 * a) - 1.0
    elif ACT == 1:
        h = tl.sigmoid(a)
    elif ACT == 2:
        h = tl.maximum(a, 0.0)
    else:
        h = a
    tl.store(CAND + r, h, mask=m)
    if ZONE:
        z = tl.load(Z + r, mask=m, other=0.0).to(tl.float32)
        h = h + z * (tl.load(HPREV + r, mask=m, other=0.0).to(tl.float32) - h)
    tl.store(HOUT + r, h.to(HOUT.dtype.element_ty), mask=m)
    if MASKED:
        tl.store(
            HM + r, (h * tl.load(MASK + r, mask=m, other=0.0).to(tl.float32)).to(HM.dtype.element_ty), mask=m
        )


def _elman_back(
    DY,
    PROD,
    MASK,
    PASSH,
    Z,
    CAND,
    DA,
    H,
    ACT: tl.constexpr,
    ZONE: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dL/dh_t = DY + PASSH + PROD * mask; writes DA = dL/d(pre-activation) and PASSH (zoneout's share)."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r = b * H + j
    prod = tl.load(PROD + r, mask=m, other=0.0).to(tl.float32)
    if MASKED:
        prod = prod * tl.load(MASK + r, mask=m, other=0.0).to(tl.float32)
    g = tl.load(DY + r, mask=m, other=0.0).to(tl.float32) + tl.load(PASSH + r, mask=m, other=0.0) + prod
    if ZONE:
        z = tl.load(Z + r, mask=m, other=0.0).to(tl.float32)
        tl.store(PASSH + r, z * g, mask=m)
        g = g - z * g
    else:
        tl.store(PASSH + r, g * 0.0, mask=m)
    h = tl.load(CAND + r, mask=m, other=0.0)
    if ACT == 0:
        d = 1.0 - h * h
    elif ACT == 1:
        d = h * (1.0 - h)
    elif ACT == 2:
        d = tl.where(h > 0.0, 1.0, 0.0)
    else:
        d = h * 0.0 + 1.0
    tl.store(DA + r, (g * d).to(DA.dtype.element_ty), mask=m)


# -- GRU (reset-before: the textbook form; reset-after: torch's) ------------------------------------------


def _gru_gates(XW, P, BHH, HM, RZ, RH, H, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    """Textbook GRU, first half: r, z = sigmoid(XW_rz + P + b_hrz), P = h' W_hrz^T (B, 2H), h' the masked
    state HM; writes RZ (B, 2H, float32) and RH = r * h' (B, H), which the second product reads."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r3, r2, r1 = b * 3 * H, b * 2 * H, b * H
    ar = tl.load(XW + r3 + j, mask=m, other=0.0).to(tl.float32) + tl.load(P + r2 + j, mask=m, other=0.0).to(
        tl.float32
    )
    az = tl.load(XW + r3 + H + j, mask=m, other=0.0).to(tl.float32)
    az += tl.load(P + r2 + H + j, mask=m, other=0.0).to(tl.float32)
    if HAS_BIAS:
        ar += tl.load(BHH + j, mask=m, other=0.0).to(tl.float32)
        az += tl.load(BHH + H + j, mask=m, other=0.0).to(tl.float32)
    r = tl.sigmoid(ar)
    tl.store(RZ + r2 + j, r, mask=m)
    tl.store(RZ + r2 + H + j, tl.sigmoid(az), mask=m)
    rh = r * tl.load(HM + r1 + j, mask=m, other=0.0).to(tl.float32)
    tl.store(RH + r1 + j, rh.to(RH.dtype.element_ty), mask=m)


def _gru_step(
    XW,
    P,
    BHH,
    HPREV,
    RZ,
    Z,
    MASK,
    N,
    M,
    HOUT,
    HM,
    H,
    AFTER: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ZONE: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The GRU step's end: n = tanh(XW_n + r (P_n + b_hn)) (AFTER, P (B, 3H) = h' W_hh^T: r and z are
    computed here) or tanh(XW_n + P + b_hn) (textbook, P (B, H) = (r h') W_hn^T, RZ from
    ``_gru_gates``); h = z h_{t-1} + (1 - z) n, then zoneout. Writes N = n (float32), with AFTER also
    RZ and M = P_n + b_hn (float32), and HOUT, HM."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r3, r2, r1 = b * 3 * H, b * 2 * H, b * H
    xn = tl.load(XW + r3 + 2 * H + j, mask=m, other=0.0).to(tl.float32)
    if AFTER:
        ar = tl.load(XW + r3 + j, mask=m, other=0.0).to(tl.float32) + tl.load(
            P + r3 + j, mask=m, other=0.0
        ).to(tl.float32)
        az = tl.load(XW + r3 + H + j, mask=m, other=0.0).to(tl.float32)
        az += tl.load(P + r3 + H + j, mask=m, other=0.0).to(tl.float32)
        pn = tl.load(P + r3 + 2 * H + j, mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            ar += tl.load(BHH + j, mask=m, other=0.0).to(tl.float32)
            az += tl.load(BHH + H + j, mask=m, other=0.0).to(tl.float32)
            pn += tl.load(BHH + 2 * H + j, mask=m, other=0.0).to(tl.float32)
        r = tl.sigmoid(ar)
        z = tl.sigmoid(az)
        tl.store(RZ + r2 + j, r, mask=m)
        tl.store(RZ + r2 + H + j, z, mask=m)
        tl.store(M + r1 + j, pn, mask=m)
        an = xn + r * pn
    else:
        z = tl.load(RZ + r2 + H + j, mask=m, other=0.0)
        an = xn + tl.load(P + r1 + j, mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            an += tl.load(BHH + 2 * H + j, mask=m, other=0.0).to(tl.float32)
    n = 2.0 * tl.sigmoid(2.0 * an) - 1.0
    tl.store(N + r1 + j, n, mask=m)
    hp = tl.load(HPREV + r1 + j, mask=m, other=0.0).to(tl.float32)
    h = z * hp + (1.0 - z) * n
    if ZONE:
        zo = tl.load(Z + r1 + j, mask=m, other=0.0).to(tl.float32)
        h = h + zo * (hp - h)
    tl.store(HOUT + r1 + j, h.to(HOUT.dtype.element_ty), mask=m)
    if MASKED:
        tl.store(
            HM + r1 + j,
            (h * tl.load(MASK + r1 + j, mask=m, other=0.0).to(tl.float32)).to(HM.dtype.element_ty),
            mask=m,
        )


def _gru_back(
    DY,
    PROD,
    MASK,
    PASSH,
    Z,
    HPREV,
    RZ,
    N,
    M,
    DG,
    DREC,
    H,
    AFTER: tl.constexpr,
    ZONE: tl.constexpr,
    MASKED: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dL/dh_t = DY + PASSH + PROD * mask. Writes DG (B, 3H) = dL/dXW (r, z, n pre-activations), and
    with AFTER DREC (B, 3H) = dL/dP (r, z, and r * dL/dn-pre for the P_n block); textbook: DG's r
    block is left for ``_gru_back_reset``. PASSH becomes what reaches h_{t-1} outside the products:
    z dL/dh~ (the carried state) plus zoneout's share."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r3, r2, r1 = b * 3 * H, b * 2 * H, b * H
    prod = tl.load(PROD + r1 + j, mask=m, other=0.0).to(tl.float32)
    if MASKED:
        prod = prod * tl.load(MASK + r1 + j, mask=m, other=0.0).to(tl.float32)
    g = (
        tl.load(DY + r1 + j, mask=m, other=0.0).to(tl.float32)
        + tl.load(PASSH + r1 + j, mask=m, other=0.0)
        + prod
    )
    keep = g * 0.0
    if ZONE:
        zo = tl.load(Z + r1 + j, mask=m, other=0.0).to(tl.float32)
        keep = zo * g
        g = g - keep
    z = tl.load(RZ + r2 + H + j, mask=m, other=0.0)
    n = tl.load(N + r1 + j, mask=m, other=0.0)
    hp = tl.load(HPREV + r1 + j, mask=m, other=0.0).to(tl.float32)
    tl.store(PASSH + r1 + j, keep + g * z, mask=m)
    dz = g * (hp - n) * z * (1.0 - z)
    dn = g * (1.0 - z) * (1.0 - n * n)
    out = DG.dtype.element_ty
    tl.store(DG + r3 + H + j, dz.to(out), mask=m)
    tl.store(DG + r3 + 2 * H + j, dn.to(out), mask=m)
    if AFTER:
        r = tl.load(RZ + r2 + j, mask=m, other=0.0)
        dr = dn * tl.load(M + r1 + j, mask=m, other=0.0) * r * (1.0 - r)
        tl.store(DG + r3 + j, dr.to(out), mask=m)
        tl.store(DREC + r3 + j, dr.to(out), mask=m)
        tl.store(DREC + r3 + H + j, dz.to(out), mask=m)
        tl.store(DREC + r3 + 2 * H + j, (dn * r).to(out), mask=m)


def _gru_back_reset(Q, HM, RZ, DG, DHM, H, BLOCK: tl.constexpr):
    """Textbook GRU: Q = dL/d(r h') (B, H) from the second product; writes DG's r block
    dL/d(r pre-activation) = Q h' r (1 - r) and DHM = Q r, the n-path's share of dL/dh' (float32)."""
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = j < H
    r3, r2, r1 = b * 3 * H, b * 2 * H, b * H
    q = tl.load(Q + r1 + j, mask=m, other=0.0).to(tl.float32)
    r = tl.load(RZ + r2 + j, mask=m, other=0.0)
    hm = tl.load(HM + r1 + j, mask=m, other=0.0).to(tl.float32)
    tl.store(DG + r3 + j, (q * hm * r * (1.0 - r)).to(DG.dtype.element_ty), mask=m)
    tl.store(DHM + r1 + j, (q * r).to(DHM.dtype.element_ty), mask=m)


lstm_step, lstm_back = Kernel(_lstm_step), Kernel(_lstm_back)
elman_step, elman_back = Kernel(_elman_step), Kernel(_elman_back)
gru_gates, gru_step, gru_back, gru_back_reset = (
    Kernel(_gru_gates),
    Kernel(_gru_step),
    Kernel(_gru_back),
    Kernel(_gru_back_reset),
)
