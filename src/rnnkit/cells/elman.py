"""Elman (vanilla) recurrent cell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from ..errors import check_int
from .base import Cell, FastPaths, activation, param


class ElmanCell(Cell):
    r"""The vanilla RNN step (Elman, 1990), with any activation and an optional readout.

    .. math::
        h_t = \phi(x_t W_{xh} + b_{ih} + h_{t-1} W_{hh} + b_{hh})
        y_t = h_t                      \quad\text{or, with a readout,}\quad
        y_t = \psi(h_t W_{hy} + b_y)

    ``W_xh`` is ``weight_ih.T`` and ``W_hh`` is ``weight_hh.T`` (torch's layout, so torch's RNN weights
    load unchanged). The two biases are torch's (cuDNN keeps both); only their sum matters.

    Shapes: ``x_t`` (B, input_size), state ``h`` (B, hidden_size), ``y_t`` (B, output_size) where
    output_size is ``readout_size`` if given, else ``hidden_size``.

    Args:
        input_size: features of ``x_t``.
        hidden_size: units of ``h``.
        nonlinearity: ``phi``: "tanh", "relu", "sigmoid", "identity" or a callable.
        bias: add ``b_ih`` and ``b_hh``.
        readout_size: if set, add a readout ``y_t = psi(h_t W_hy + b_y)`` of this size.
        readout_activation: ``psi`` (default "identity").
    """

    fast_paths = FastPaths(
        native="rnnkit.kernels.native:elman_op",
        fused="rnnkit.kernels.fused.elman:elman_kernel",
        compiled="elman",
        step="rnnkit.kernels.steps:elman_step",
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str | Callable[[Tensor], Tensor] = "tanh",
        bias: bool = True,
        readout_size: int | None = None,
        readout_activation: str | Callable[[Tensor], Tensor] = "identity",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        if readout_size is not None:
            check_int("readout_size", readout_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size = input_size, hidden_size
        self.nonlinearity = nonlinearity
        self.phi = activation(nonlinearity)
        self.psi = activation(readout_activation)
        self.weight_ih = param((hidden_size, input_size), kw)
        self.weight_hh = param((hidden_size, hidden_size), kw)
        self.bias_ih = param((hidden_size,), kw) if bias else None
        self.bias_hh = param((hidden_size,), kw) if bias else None
        self.readout_size = readout_size
        if readout_size is not None:
            self.weight_hy = param((readout_size, hidden_size), kw)
            self.bias_y = param((readout_size,), kw) if bias else None
        self.output_size = readout_size or hidden_size
        self.state_size = hidden_size
        self.reset_parameters()

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        h = self.phi(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))
        y = h if self.readout_size is None else self.psi(F.linear(h, self.weight_hy, self.bias_y))
        return y, h

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"
        return s + (f", readout_size={self.readout_size}" if self.readout_size else "")
