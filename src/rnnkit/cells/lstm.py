"""Long short-term memory cell, with projection, peephole and layer-norm variants."""

from __future__ import annotations

from numbers import Real
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import check_int
from .base import Cell, FastPaths, LSTMState, param


class LSTMCell(Cell):
    r"""The LSTM step (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

    .. math::
        i_t = \sigma(x_t W_{ii} + b_{ii} + h_{t-1} W_{hi} + b_{hi} + p_i \odot c_{t-1})
        f_t = \sigma(x_t W_{if} + b_{if} + h_{t-1} W_{hf} + b_{hf} + p_f \odot c_{t-1})
        g_t = \tanh(x_t W_{ig} + b_{ig} + h_{t-1} W_{hg} + b_{hg})          \text{(input node)}
        c_t = f_t \odot c_{t-1} + i_t \odot g_t
        o_t = \sigma(x_t W_{io} + b_{io} + h_{t-1} W_{ho} + b_{ho} + p_o \odot c_t)
        h_t = o_t \odot \tanh(c_t)                \quad\text{then, with proj\_size,}\quad h_t = h_t W_{hr}

    The peephole terms ``p * c`` (Gers & Schmidhuber 2000) are present only with ``peephole=True``.
    With ``layer_norm=True`` (Ba et al. 2016) the input and recurrent products are each layer-
    normalised before they are added, and ``c_t`` is normalised before the output ``tanh``:
    ``gates = LN_x(x W_x) + LN_h(h W_h) + b``, ``h_t = o_t * tanh(LN_c(c_t))``; the biases stay outside
    the norms so ``forget_bias`` means the same thing in every variant.

    Parameters follow torch: ``weight_ih`` (4H, input_size), ``weight_hh`` (4H, R), ``bias_ih``,
    ``bias_hh`` (4H) with blocks in the order i, f, g, o, and ``weight_hr`` (R, H) when
    ``proj_size = R > 0``; torch's LSTM weights load unchanged.

    Shapes: ``x_t`` (B, input_size); state ``LSTMState(h (B, R), c (B, H))`` with ``R = proj_size``
    or ``H``; ``y_t = h_t`` (B, R).

    Args:
        forget_bias: if set, the forget gate's bias starts at this value (``bias_ih``'s f block; the
            ``bias_hh`` f block starts at 0). 1.0 is the usual choice (Jozefowicz et al. 2015).
    """

    fast_paths = FastPaths(
        native="rnnkit.kernels.native:lstm_op",
        fused="rnnkit.kernels.fused.lstm:lstm_kernel",
        compiled="lstm",
        step="rnnkit.kernels.steps:lstm_step",
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        check_int("proj_size", proj_size, minimum=0)
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} "
                f"and hidden_size={hidden_size}"
            )
        if forget_bias is not None and (isinstance(forget_bias, bool) or not isinstance(forget_bias, Real)):
            raise TypeError(f"forget_bias should be a real number or None, got: {type(forget_bias).__name__}")
        if forget_bias is not None and not bias:
            raise ValueError(f"forget_bias needs bias=True (got forget_bias={forget_bias}, bias={bias})")
        kw = {"device": device, "dtype": dtype}
        H, R = hidden_size, proj_size or hidden_size
        self.input_size, self.hidden_size, self.proj_size = input_size, hidden_size, proj_size
        self.peephole, self.layer_norm, self.forget_bias = peephole, layer_norm, forget_bias
        self.weight_ih = param((4 * H, input_size), kw)
        self.weight_hh = param((4 * H, R), kw)
        self.bias_ih = param((4 * H,), kw) if bias else None
        self.bias_hh = param((4 * H,), kw) if bias else None
        self.weight_hr = param((R, H), kw) if proj_size else None
        if peephole:
            self.weight_ci, self.weight_cf, self.weight_co = (param((H,), kw) for _ in range(3))
        if layer_norm:
            self.norm_x = nn.LayerNorm(4 * H, bias=False, **kw)
            self.norm_h = nn.LayerNorm(4 * H, bias=False, **kw)
            self.norm_c = nn.LayerNorm(H, **kw)
        self.output_size = R
        self.state_size = LSTMState(h=R, c=H)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for norm in (getattr(self, n, None) for n in ("norm_x", "norm_h", "norm_c")):
            if norm is not None:
                norm.reset_parameters()
        if self.forget_bias is not None:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H].fill_(self.forget_bias)
                self.bias_hh[H : 2 * H].zero_()

    def step(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        i, f, g, o, c = self._gates(x, state)
        h = o * torch.tanh(self.norm_c(c) if self.layer_norm else c)
        if self.weight_hr is not None:
            h = F.linear(h, self.weight_hr)
        return h, LSTMState(h, c)

    def gates(self, x: Tensor, state: LSTMState) -> dict[str, Tensor]:
        """The step's gate activations, each (B, H): ``input``, ``forget``, ``output`` in (0, 1) and
        the candidate ``cell`` g in (-1, 1). (For diagnostics; :meth:`step` computes the same.)"""
        i, f, g, o, _ = self._gates(x, state)
        return {"input": i, "forget": f, "cell": g, "output": o}

    def _gates(self, x: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """i, f, g, o and the new cell state c."""
        h, c = state
        gx, gh = F.linear(x, self.weight_ih), F.linear(h, self.weight_hh)
        if self.layer_norm:
            gx, gh = self.norm_x(gx), self.norm_h(gh)
        gates = gx + gh
        if self.bias_ih is not None:
            gates = gates + self.bias_ih + self.bias_hh
        i, f, g, o = gates.chunk(4, -1)
        if self.peephole:
            i, f = i + self.weight_ci * c, f + self.weight_cf * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c = f * c + i * g
        if self.peephole:
            o = o + self.weight_co * c
        return i, f, g, torch.sigmoid(o), c

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name in ("proj_size", "peephole", "layer_norm", "forget_bias"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        return s
