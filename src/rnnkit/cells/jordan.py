"""Jordan recurrent cell: the previous *output* is fed back, not the hidden state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from ..errors import check_int
from .base import Cell, FastPaths, activation, param


class JordanCell(Cell):
    r"""The Jordan network step (Jordan, 1986): the recurrence runs through the output.

    .. math::
        h_t = \phi(x_t W_{xh} + y_{t-1} W_{yh} + b_h)
        y_t = \psi(h_t W_{hy} + b_y)

    ``W_xh`` is ``weight_ih.T``, ``W_yh`` is ``weight_yh.T``, ``W_hy`` is ``weight_hy.T``. The state
    carried between steps is ``y_{t-1}``; ``h_t`` is recomputed each step and not carried.

    Shapes: ``x_t`` (B, input_size), state ``y_{t-1}`` (B, output_size), ``y_t`` (B, output_size).

    Args:
        input_size: features of ``x_t``.
        hidden_size: units of ``h_t``.
        output_size: units of ``y_t`` (and of the state).
        nonlinearity: ``phi`` (default "tanh").
        output_activation: ``psi`` (default "tanh": a bounded output keeps the feedback stable).
        bias: add ``b_h`` and ``b_y``.
    """

    fast_paths = FastPaths(
        fused="rnnkit.kernels.fused.jordan:jordan_kernel",
        compiled="jordan",
    )

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        nonlinearity: str | Callable[[Tensor], Tensor] = "tanh",
        output_activation: str | Callable[[Tensor], Tensor] = "tanh",
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        check_int("output_size", output_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.nonlinearity, self.output_activation = nonlinearity, output_activation
        self.phi, self.psi = activation(nonlinearity), activation(output_activation)
        self.weight_ih = param((hidden_size, input_size), kw)
        self.weight_yh = param((hidden_size, output_size), kw)
        self.bias_h = param((hidden_size,), kw) if bias else None
        self.weight_hy = param((output_size, hidden_size), kw)
        self.bias_y = param((output_size,), kw) if bias else None
        self.state_size = output_size
        self.reset_parameters()

    def step(self, x: Tensor, y_prev: Tensor) -> tuple[Tensor, Tensor]:
        h = self.phi(F.linear(x, self.weight_ih, self.bias_h) + F.linear(y_prev, self.weight_yh))
        y = self.psi(F.linear(h, self.weight_hy, self.bias_y))
        return y, y

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, {self.output_size}"
