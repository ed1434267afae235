"""Gated recurrent unit, in both the textbook and torch/cuDNN forms."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import check_int
from .base import Cell, FastPaths, param


class GRUCell(Cell):
    r"""The GRU step (Cho et al. 2014) with reset gate ``r`` and update gate ``z``.

    .. math::
        r_t = \sigma(x_t W_{ir} + b_{ir} + h_{t-1} W_{hr} + b_{hr})
        z_t = \sigma(x_t W_{iz} + b_{iz} + h_{t-1} W_{hz} + b_{hz})
        \tilde h_t = \tanh(x_t W_{in} + b_{in} + r_t \odot (h_{t-1} W_{hn} + b_{hn}))
            \quad\text{(reset\_after=True: torch, cuDNN)}
        \tilde h_t = \tanh(x_t W_{in} + b_{in} + (r_t \odot h_{t-1}) W_{hn} + b_{hn})
            \quad\text{(reset\_after=False: the textbook form)}
        h_t = z_t \odot h_{t-1} + (1 - z_t) \odot \tilde h_t

    The two forms differ only in where the reset gate acts: after the recurrent product (so
    ``b_hn`` is reset too) or before it. They share one parameter layout: ``weight_ih`` (3H, input_size)
    and ``weight_hh`` (3H, H) hold the r, z, n blocks in torch's order, so torch GRU weights load into
    either form.

    Shapes: ``x_t`` (B, input_size), state ``h`` (B, H), ``y_t = h_t`` (B, H).
    """

    fast_paths = FastPaths(
        native="rnnkit.kernels.native:gru_op",
        fused="rnnkit.kernels.fused.gru:gru_kernel",
        compiled="gru",
        step="rnnkit.kernels.steps:gru_step",
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset_after: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.reset_after = input_size, hidden_size, reset_after
        self.weight_ih = param((3 * hidden_size, input_size), kw)
        self.weight_hh = param((3 * hidden_size, hidden_size), kw)
        self.bias_ih = param((3 * hidden_size,), kw) if bias else None
        self.bias_hh = param((3 * hidden_size,), kw) if bias else None
        self.output_size = self.state_size = hidden_size
        self.reset_parameters()

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        r, z, n = self._gates(x, h)
        h = z * h + (1 - z) * n
        return h, h

    def masked_step(self, x: Tensor, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """State dropout: the masked ``h`` feeds the gates' products, the unmasked one is carried on
        (``z * h``), as in Gal & Ghahramani's GRU; masking the carried ``h`` too would rescale it by
        1/(1-p) at every step."""
        r, z, n = self._gates(x, h * mask)
        h = z * h + (1 - z) * n
        return h, h

    def gates(self, x: Tensor, h: Tensor) -> dict[str, Tensor]:
        """The step's gate activations, each (B, H): ``reset`` r and ``update`` z in (0, 1) and the
        candidate ``new`` n in (-1, 1). (For diagnostics; :meth:`step` computes the same.)"""
        r, z, n = self._gates(x, h)
        return {"reset": r, "update": z, "new": n}

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        i_r, i_z, i_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, -1)
        W_hr, W_hz, W_hn = self.weight_hh.chunk(3, 0)
        b_hr, b_hz, b_hn = self.bias_hh.chunk(3) if self.bias_hh is not None else (None,) * 3
        r = torch.sigmoid(i_r + F.linear(h, W_hr, b_hr))
        z = torch.sigmoid(i_z + F.linear(h, W_hz, b_hz))
        if self.reset_after:
            n = torch.tanh(i_n + r * F.linear(h, W_hn, b_hn))
        else:
            n = torch.tanh(i_n + F.linear(r * h, W_hn, b_hn))
        return r, z, n

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, reset_after={self.reset_after}"
