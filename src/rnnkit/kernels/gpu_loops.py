"""The host side of the fused GPU kernels: the time loops (forward and backward, each run through
``gpu_graphs.run``) and the ``autograd.Function`` of each cell family. ``gpu_fused.py`` feeds them the
input projection of all steps; ``gpu_triton.py`` holds the per-step kernels.

Buffers: states h in the input's type (they feed the products), c and the gate activations in float32;
a loop's tensors all live in one dict so that a CUDA graph can run it on static copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import gpu_graphs

EPS = 1e-5  # the cells' nn.LayerNorm eps


def _grid(B: int, H: int, whole_row: bool = False) -> tuple[tuple[int, int], int]:
    from .gpu_triton import block_for

    block = block_for(H, whole_row)
    return (B, -(-H // block)), block


def _masked_starts(hs: Tensor, mask: Tensor | None) -> Tensor:
    """(T*B, H): the states each step's product read (h_{t-1} * mask), for the weight gradient."""
    s = hs[:-1] if mask is None else hs[:-1] * mask
    return s.reshape(-1, s.shape[-1])


def _flat(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-1])


# -- LSTM --------------------------------------------------------------------------------------------------


def _lstm_forward_loop(io: dict, H: int, flags: tuple) -> None:
    from .gpu_triton import lstm_step

    peephole, ln, masked = flags
    xw, hs, cs, acts, P, hm = io["xw"], io["hs"], io["cs"], io["acts"], io["P"], io["hm"]
    zh, zc = io["zh"], io["zc"]
    ccand = io["ccand"] if zc is not None else cs[1:]
    T, B, _ = xw.shape
    hs[0].copy_(io["h0"])
    cs[0].copy_(io["c0"])
    if masked:
        torch.mul(io["h0"], io["mask"], out=hm)
    wt = io["w"].t()
    grid, block = _grid(B, H, ln)
    d = xw  # stands in for absent optional tensors (never read)
    for t in range(T):
        p = P[t] if P.shape[0] == T else P[0]
        torch.mm(hm if masked else hs[t], wt, out=p)
        lstm_step[grid](
            xw[t],
            p,
            hs[t],
            cs[t],
            _or(io["peep"], d),
            _or(io["gh"], d),
            _or(io["gc"], d),
            _or(io["bc"], d),
            _at(zh, t, d),
            _at(zc, t, d),
            _or(io["mask"], d),
            acts[t],
            ccand[t],
            hs[t + 1],
            cs[t + 1],
            hm,
            H,
            EPS,
            PEEPHOLE=peephole,
            LN=ln,
            ZONE_H=zh is not None,
            ZONE_C=zc is not None,
            MASKED=masked,
            BLOCK=block,
        )


def _lstm_backward_loop(io: dict, H: int, flags: tuple) -> None:
    from .gpu_triton import lstm_back

    peephole, ln, masked = flags
    dy, dgates, drec, cs, P = io["dy"], io["dgates"], io["drec"], io["cs"], io["P"]
    zh, zc = io["zh"], io["zc"]
    ccand = io["ccand"] if zc is not None else cs[1:]
    drec = drec if ln else dgates
    T, B, _ = dy.shape
    grid, block = _grid(B, H, ln)
    d = dy
    for t in reversed(range(T)):
        lstm_back[grid](
            dy[t],
            io["prod"],
            _or(io["mask"], d),
            io["passh"],
            io["dc"],
            _at(zh, t, d),
            _at(zc, t, d),
            io["acts"][t],
            cs[t],
            ccand[t],
            _at(P if ln else None, t, d),
            _or(io["peep"], d),
            _or(io["gh"], d),
            _or(io["gc"], d),
            _or(io["bc"], d),
            dgates[t],
            drec[t],
            _at(io["dzc"], t, d),
            H,
            EPS,
            PEEPHOLE=peephole,
            LN=ln,
            ZONE_H=zh is not None,
            ZONE_C=zc is not None,
            MASKED=masked,
            BLOCK=block,
        )
        torch.mm(drec[t], io["w"], out=io["prod"])


def _or(t: Tensor | None, dummy: Tensor) -> Tensor:
    return dummy if t is None else t


def _at(t: Tensor | None, i: int, dummy: Tensor) -> Tensor:
    return dummy if t is None else t[i]


class LSTMFunction(torch.autograd.Function):
    """(xw (T, B, 4H), h0, c0 (B, H), w_hh (4H, H), peep (3, H) | None, LN gains g_h (4H), g_c, b_c (H)
    | None, state mask (B, H) | None, zoneout zh, zc (T, B, H) | None) -> y (T, B, H), h_T, c_T."""

    @staticmethod
    def forward(ctx, xw, h0, c0, w, peep, gh, gc, bc, mask, zh, zc):
        T, B, G = xw.shape
        H, ln = G // 4, gh is not None
        grad = ctx is not None
        f32 = {"dtype": torch.float32, "device": xw.device}
        io = {
            "xw": xw,
            "h0": h0,
            "c0": c0,
            "w": w.detach(),
            "peep": _d(peep),
            "gh": _d(gh),
            "gc": _d(gc),
            "bc": _d(bc),
            "mask": mask,
            "zh": zh,
            "zc": zc,
            "hs": xw.new_empty(T + 1, B, H),
            "cs": torch.empty(T + 1, B, H, **f32),
            "acts": torch.empty(T, B, G, **f32),
            "P": xw.new_empty(T if ln and grad else 1, B, G),
            "ccand": torch.empty(T, B, H, **f32) if zc is not None else None,
            "hm": xw.new_empty(B, H) if mask is not None else None,
        }
        flags = (peep is not None, ln, mask is not None)
        gpu_graphs.run(_lstm_forward_loop, io, ("hs", "cs", "acts", "P", "ccand", "hm"), consts=(H, flags))
        hs, cs = io["hs"], io["cs"]
        if grad:
            ctx.save_for_backward(
                *(io[k] for k in ("w", "peep", "gh", "gc", "bc", "mask", "zh", "zc")),
                hs,
                cs,
                io["acts"],
                io["P"],
                io["ccand"],
            )
            ctx.flags = flags
        return hs[1:], hs[-1].clone(), cs[-1].to(c0.dtype, copy=True)

    @staticmethod
    def backward(ctx, dy, dh_last, dc_last):
        w, peep, gh, gc, bc, mask, zh, zc, hs, cs, acts, P, ccand = ctx.saved_tensors
        peephole, ln, masked = ctx.flags
        T, B, G = acts.shape
        H = G // 4
        f32 = {"dtype": torch.float32, "device": acts.device}
        io = {
            "dy": dy.contiguous().to(hs.dtype),
            "prod": hs.new_zeros(B, H),
            "passh": dh_last.float().clone(),
            "dc": dc_last.float().clone(),
            "w": w,
            "peep": peep,
            "gh": gh,
            "gc": gc,
            "bc": bc,
            "mask": mask,
            "zh": zh,
            "zc": zc,
            "acts": acts,
            "cs": cs,
            "ccand": ccand,
            "P": P,
            "dgates": hs.new_empty(T, B, G),
            "drec": hs.new_empty(T, B, G) if ln else None,
            "dzc": torch.empty(T, B, H, **f32) if ln else None,
        }
        gpu_graphs.run(
            _lstm_backward_loop, io, ("dgates", "drec", "dzc"), ("prod", "passh", "dc"), (H, ctx.flags)
        )
        dgates, drec = io["dgates"], io["drec"] if ln else io["dgates"]
        prod = io["prod"].float()
        dh0 = io["passh"] + (prod * mask if masked else prod)
        dw = _flat(drec).t() @ _masked_starts(hs, mask)
        dpeep = dgh = dgc = dbc = None
        cand = ccand if ccand is not None else cs[1:]
        if peephole:
            dgf = dgates.float()
            dpeep = torch.stack(
                [
                    (dgf[..., :H] * cs[:-1]).sum((0, 1)),
                    (dgf[..., H : 2 * H] * cs[:-1]).sum((0, 1)),
                    (dgf[..., 3 * H :] * cand).sum((0, 1)),
                ]
            ).to(peep.dtype)
        if ln:
            xh = F.layer_norm(P.float(), (G,), eps=EPS)
            xc = F.layer_norm(cand, (H,), eps=EPS)
            dzc = io["dzc"]
            dgh = (dgates.float() * xh).sum((0, 1)).to(gh.dtype)
            dgc, dbc = (dzc * xc).sum((0, 1)).to(gc.dtype), dzc.sum((0, 1)).to(bc.dtype)
        return (
            dgates,
            dh0.to(hs.dtype),
            io["dc"].to(dc_last.dtype),
            dw.to(w.dtype),
            dpeep,
            dgh,
            dgc,
            dbc,
            None,
            None,
            None,
        )


def _d(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().contiguous()


# -- GRU ---------------------------------------------------------------------------------------------------


def _gru_forward_loop(io: dict, H: int, flags: tuple) -> None:
    from .gpu_triton import gru_gates, gru_step

    after, has_bias, masked = flags
    xw, hs, rz, n, m, hm, w, z = io["xw"], io["hs"], io["rz"], io["n"], io["m"], io["hm"], io["w"], io["z"]
    T, B, _ = xw.shape
    hs[0].copy_(io["h0"])
    if masked:
        torch.mul(io["h0"], io["mask"], out=hm)
    grid, block = _grid(B, H)
    d, bhh = xw, _or(io["bhh"], xw)
    for t in range(T):
        src = hm if masked else hs[t]
        if after:
            torch.mm(src, w.t(), out=io["P"])
        else:  # r and z first: the reset gate acts on h before the n product
            torch.mm(src, w[: 2 * H].t(), out=io["P2"])
            gru_gates[grid](xw[t], io["P2"], bhh, src, rz[t], m[t], H, HAS_BIAS=has_bias, BLOCK=block)
            torch.mm(m[t], w[2 * H :].t(), out=io["P"])
        gru_step[grid](
            xw[t],
            io["P"],
            bhh,
            hs[t],
            rz[t],
            _at(z, t, d),
            _or(io["mask"], d),
            n[t],
            m[t],
            hs[t + 1],
            _or(hm, d),
            H,
            AFTER=after,
            HAS_BIAS=has_bias,
            ZONE=z is not None,
            MASKED=masked,
            BLOCK=block,
        )


def _gru_backward_loop(io: dict, H: int, flags: tuple) -> None:
    from .gpu_triton import gru_back, gru_back_reset

    after, _, masked = flags
    dy, dg, drec, w, z, hs, hm = io["dy"], io["dg"], io["drec"], io["w"], io["z"], io["hs"], io["hm_all"]
    T, B, _ = dy.shape
    grid, block = _grid(B, H)
    d = dy
    for t in reversed(range(T)):
        gru_back[grid](
            dy[t],
            io["prod"],
            _or(io["mask"], d),
            io["passh"],
            _at(z, t, d),
            hs[t],
            io["rz"][t],
            io["n"][t],
            io["m"][t],
            dg[t],
            _at(drec, t, d),
            H,
            AFTER=after,
            ZONE=z is not None,
            MASKED=masked,
            BLOCK=block,
        )
        if after:
            torch.mm(drec[t], w, out=io["prod"])
        else:
            torch.mm(dg[t, :, 2 * H :], w[2 * H :], out=io["q"])  # dL/d(r h')
            gru_back_reset[grid](io["q"], hm[t], io["rz"][t], dg[t], io["dhm"], H, BLOCK=block)
            torch.addmm(io["dhm"], dg[t, :, : 2 * H], w[: 2 * H], out=io["prod"])


class GRUFunction(torch.autograd.Function):
    """(xw (T, B, 3H) = x W_ih^T + b_ih, h0 (B, H), w_hh (3H, H), b_hh (3H) | None, mask (B, H) | None,
    zoneout (T, B, H) | None, reset_after) -> y (T, B, H), h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, bhh, mask, z, after):
        T, B, G = xw.shape
        H = G // 3
        f32 = {"dtype": torch.float32, "device": xw.device}
        io = {
            "xw": xw,
            "h0": h0,
            "w": w.detach(),
            "bhh": _d(bhh),
            "mask": mask,
            "z": z,
            "hs": xw.new_empty(T + 1, B, H),
            "rz": torch.empty(T, B, 2 * H, **f32),
            "n": torch.empty(T, B, H, **f32),
            # reset-after: P_n + b_hn (float32); textbook: r * h' (the second product's input)
            "m": torch.empty(T, B, H, **f32) if after else xw.new_empty(T, B, H),
            "P": xw.new_empty(B, G if after else H),
            "P2": None if after else xw.new_empty(B, 2 * H),
            "hm": xw.new_empty(B, H) if mask is not None else None,
        }
        flags = (bool(after), bhh is not None, mask is not None)
        gpu_graphs.run(_gru_forward_loop, io, ("hs", "rz", "n", "m", "P", "P2", "hm"), consts=(H, flags))
        hs = io["hs"]
        if ctx is not None:
            ctx.save_for_backward(io["w"], io["bhh"], mask, z, hs, io["rz"], io["n"], io["m"])
            ctx.flags = flags
        return hs[1:], hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        w, bhh, mask, z, hs, rz, n, m = ctx.saved_tensors
        after, has_bias, masked = ctx.flags
        T, B, H = n.shape
        hm_all = hs[:-1] * mask if masked else hs[:-1]
        io = {
            "dy": dy.contiguous().to(hs.dtype),
            "prod": hs.new_zeros(B, H),
            "passh": dh_last.float().clone(),
            "w": w,
            "mask": mask,
            "z": z,
            "hs": hs,
            "rz": rz,
            "n": n,
            "m": m,
            "hm_all": hm_all,
            "dg": hs.new_empty(T, B, 3 * H),
            "drec": hs.new_empty(T, B, 3 * H) if after else None,
            "q": None if after else hs.new_empty(B, H),
            "dhm": None if after else hs.new_empty(B, H),
        }
        gpu_graphs.run(_gru_backward_loop, io, ("dg", "drec", "q", "dhm"), ("prod", "passh"), (H, ctx.flags))
        dg, prod = io["dg"], io["prod"].float()
        dh0 = io["passh"] + (prod * mask if masked else prod)
        hm_flat = _flat(hm_all)
        if after:
            drec = io["drec"]
            dw = _flat(drec).t() @ hm_flat
            db = drec.float().sum((0, 1)) if has_bias else None
        else:
            dw = torch.cat([_flat(dg[..., : 2 * H]).t() @ hm_flat, _flat(dg[..., 2 * H :]).t() @ _flat(m)])
            db = dg.float().sum((0, 1)) if has_bias else None
        return (
            dg,
            dh0.to(hs.dtype),
            dw.to(w.dtype),
            None if db is None else db.to(bhh.dtype),
            None,
            None,
            None,
        )


# -- Elman -------------------------------------------------------------------------------------------------


def _elman_forward_loop(io: dict, H: int, flags: tuple) -> None:
    from .gpu_triton import elman_step

    act, masked = flags
    xw, hs, hm, z = io["xw"], io["hs"], io["hm"], io["z"]
    T, B, _ = xw.shape
    hs[0].copy_(io["h0"])
    if masked:
        torch.mul(io["h0"], io["mask"], out=hm)
    wt = io["w"].t()
    grid, block = _grid(B, H)
    d = xw
    for t in range(T):
        torch.mm(hm if masked else hs[t], wt, out=io["P"])
        elman_step[grid](
            xw[t],
            io["P"],
            hs[t],
            _at(z, t, d),
            _or(io["mask"], d),
            io["cand"][t],
            hs[t + 1],
            _or(hm, d),
            H,
            ACT=act,
            ZONE=z is not None,
            MASKED=masked,
            BLOCK=block,
        )


def _elman_backward_loop(io: dict, H: int, flags: tuple) -> None:
    from .gpu_triton import elman_back

    act, masked = flags
    dy, da, z = io["dy"], io["da"], io["z"]
    T, B, _ = dy.shape
    grid, block = _grid(B, H)
    d = dy
    for t in reversed(range(T)):
        elman_back[grid](
            dy[t],
            io["prod"],
            _or(io["mask"], d),
            io["passh"],
            _at(z, t, d),
            io["cand"][t],
            da[t],
            H,
            ACT=act,
            ZONE=z is not None,
            MASKED=masked,
            BLOCK=block,
        )
        torch.mm(da[t], io["w"], out=io["prod"])


class ElmanFunction(torch.autograd.Function):
    """(xw (T, B, H) = x W_ih^T + b, h0 (B, H), w_hh (H, H), mask (B, H) | None, zoneout (T, B, H) |
    None, activation code) -> h (T, B, H), h_T."""

    @staticmethod
    def forward(ctx, xw, h0, w, mask, z, act):
        T, B, H = xw.shape
        io = {
            "xw": xw,
            "h0": h0,
            "w": w.detach(),
            "mask": mask,
            "z": z,
            "hs": xw.new_empty(T + 1, B, H),
            "cand": torch.empty(T, B, H, dtype=torch.float32, device=xw.device),
            "P": xw.new_empty(B, H),
            "hm": xw.new_empty(B, H) if mask is not None else None,
        }
        flags = (act, mask is not None)
        gpu_graphs.run(_elman_forward_loop, io, ("hs", "cand", "P", "hm"), consts=(H, flags))
        hs = io["hs"]
        if ctx is not None:
            ctx.save_for_backward(io["w"], mask, z, hs, io["cand"])
            ctx.flags = flags
        return hs[1:], hs[-1].clone()

    @staticmethod
    def backward(ctx, dy, dh_last):
        w, mask, z, hs, cand = ctx.saved_tensors
        T, B, H = cand.shape
        io = {
            "dy": dy.contiguous().to(hs.dtype),
            "prod": hs.new_zeros(B, H),
            "passh": dh_last.float().clone(),
            "w": w,
            "mask": mask,
            "z": z,
            "cand": cand,
            "da": hs.new_empty(T, B, H),
        }
        gpu_graphs.run(_elman_backward_loop, io, ("da",), ("prod", "passh"), (H, ctx.flags))
        prod = io["prod"].float()
        dh0 = io["passh"] + (prod * mask if mask is not None else prod)
        dw = _flat(io["da"]).t() @ _masked_starts(hs, mask)
        return io["da"], dh0.to(hs.dtype), dw.to(w.dtype), None, None, None
