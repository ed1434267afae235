"""Convolutional recurrent cells: ConvLSTM and ConvGRU, the matrix products replaced by convolutions.

The state is a stack of feature maps with the input's spatial size, so what a unit remembers stays
where it was seen. Both cells run through :class:`rnnkit.layers.Recurrent` like any other cell
(stacking, both directions, lengths, dropout): there ``input`` is (T, B, C_in, H, W).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import check, check_int
from .base import Cell, LSTMState, State, check_state, check_tensor, param


def same_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Stride-1 convolution that keeps the spatial size: (B, C, H, W) -> (B, weight rows, H, W)."""
    return F.conv2d(x, weight, bias, padding="same")


def _pair(name: str, value: int | tuple[int, int]) -> tuple[int, int]:
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return check_int(name, pair[0]), check_int(name, pair[1])


class ConvCell(Cell):
    """What ConvLSTM and ConvGRU share: the two convolutions' parameters, their initialisation, and a
    checked single step. ``G`` is the number of gate blocks (4 for LSTM, 3 for GRU)."""

    spatial_dims = 2
    input_arg = "in_channels"
    gate_blocks: int

    def _conv_parameters(
        self, in_channels: int, hidden_channels: int, kernel_size: Any, bias: bool, kw: dict[str, Any]
    ) -> None:
        check_int("in_channels", in_channels)
        check_int("hidden_channels", hidden_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        G, C = self.gate_blocks, hidden_channels
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.input_size, self.hidden_size = in_channels, hidden_channels  # the names Recurrent reads
        self.weight_ih = param((G * C, in_channels, *self.kernel_size), kw)
        self.weight_hh = param((G * C, hidden_channels, *self.kernel_size), kw)
        self.bias_ih = param((G * C,), kw) if bias else None
        self.bias_hh = param((G * C,), kw) if bias else None
        self.output_size = hidden_channels

    def reset_parameters(self) -> None:
        """nn.Conv2d's initialisation for each convolution: weight and bias ~ U(-1/sqrt(fan_in),
        1/sqrt(fan_in)), fan_in = channels * kernel area of that convolution's input."""
        area = self.kernel_size[0] * self.kernel_size[1]
        for name, fan_in in (("ih", self.in_channels * area), ("hh", self.hidden_channels * area)):
            bound = fan_in**-0.5
            for p in (getattr(self, f"weight_{name}"), getattr(self, f"bias_{name}")):
                if p is not None:
                    nn.init.uniform_(p, -bound, bound)

    def init_state(
        self,
        batch_size: int,
        *,
        spatial: tuple[int, ...] = (),
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> State:
        """The zero state for frames of size ``spatial`` (H, W) (default: ``frame_size``), each field
        (batch_size, C_hid, H, W)."""
        spatial = tuple(spatial) or self.frame_size or ()
        check(
            len(spatial) == 2,
            f"{type(self).__name__}.init_state needs the frames' size: spatial=(H, W), got {spatial}",
        )
        return super().init_state(batch_size, spatial=spatial, dtype=dtype, device=device)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One checked step: ``x`` (B, C_in, H, W); ``state`` as :meth:`init_state` (zeros if omitted)."""
        who = type(self).__name__
        check_tensor(x, self, who)
        check(
            x.dim() == 4, f"{who}: Expected input to be 4D (batch, channels, height, width), got {x.dim()}D"
        )
        check(
            x.shape[1] == self.in_channels,
            f"{who}: input has inconsistent in_channels: got {x.shape[1]} expected {self.in_channels}",
        )
        spatial = tuple(x.shape[2:])
        check(
            self.frame_size in (None, spatial),
            f"{who}: input frames are {spatial}, the cell was built for frame_size={self.frame_size}",
        )
        if state is None:
            state = self.init_state(x.shape[0], spatial=spatial, dtype=x.dtype, device=x.device)
        else:
            state = check_state(state, self.state_size, x.shape[:1], x, who, True, spatial)
        return self.step(x, state)

    def _repr_options(self) -> str:
        s = f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}"
        return s + ("" if self.bias_ih is not None else ", bias=False")


class ConvLSTMCell(ConvCell):
    r"""The ConvLSTM step (Shi et al. 2015, "Convolutional LSTM Network", eq. 3,
    https://arxiv.org/abs/1506.04214), with ``*`` a convolution and ``\circ`` the Hadamard product:

    .. math::
        i_t = \sigma(W_{xi} * X_t + b_{xi} + W_{hi} * H_{t-1} + b_{hi} + W_{ci} \circ C_{t-1})
        f_t = \sigma(W_{xf} * X_t + b_{xf} + W_{hf} * H_{t-1} + b_{hf} + W_{cf} \circ C_{t-1})
        g_t = \tanh(W_{xg} * X_t + b_{xg} + W_{hg} * H_{t-1} + b_{hg})
        C_t = f_t \circ C_{t-1} + i_t \circ g_t
        o_t = \sigma(W_{xo} * X_t + b_{xo} + W_{ho} * H_{t-1} + b_{ho} + W_{co} \circ C_t)
        H_t = o_t \circ \tanh(C_t)

    The peephole terms ``W_c \circ C`` are present only with ``peephole=True``. In the paper they are
    full (C_hid, H, W) maps, which ties the cell to one frame size: give ``frame_size=(H, W)`` for
    that. Without ``frame_size`` they are one weight per channel, (C_hid, 1, 1), broadcast over space,
    and the cell takes frames of any size.

    Every convolution has stride 1 and "same" padding, so H and W are kept (an even kernel pads one
    more at the end, as ``nn.Conv2d(padding="same")``). The paper has one bias per gate; as in torch's
    LSTM there are two (``bias_ih``, ``bias_hh``), so with 1x1 kernels on 1x1 frames the cell is
    exactly :class:`LSTMCell` with the weights viewed as (4C_hid, C_in) and (4C_hid, C_hid).

    Parameters: ``weight_ih`` (4C_hid, C_in, kh, kw), ``weight_hh`` (4C_hid, C_hid, kh, kw), ``bias_ih``,
    ``bias_hh`` (4C_hid), gate blocks in torch's order i, f, g, o; with ``peephole``, ``weight_ci``,
    ``weight_cf``, ``weight_co`` (C_hid, H, W) or (C_hid, 1, 1).

    Shapes: ``x_t`` (B, C_in, H, W); state ``LSTMState(h, c)``, each (B, C_hid, H, W); ``y_t = h_t``.
    """

    gate_blocks = 4

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        bias: bool = True,
        peephole: bool = False,
        frame_size: tuple[int, int] | None = None,
        forget_bias: float | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self._conv_parameters(in_channels, hidden_channels, kernel_size, bias, kw)
        if frame_size is not None and not peephole:
            raise ValueError("frame_size sizes the peephole weights: it needs peephole=True")
        if forget_bias is not None and not bias:
            raise ValueError(f"forget_bias needs bias=True (got forget_bias={forget_bias}, bias={bias})")
        self.peephole, self.forget_bias = peephole, forget_bias
        self.frame_size = _pair("frame_size", frame_size) if frame_size is not None else None
        if peephole:
            shape = (hidden_channels, *(self.frame_size or (1, 1)))
            self.weight_ci, self.weight_cf, self.weight_co = (param(shape, kw) for _ in range(3))
        self.state_size = LSTMState(h=hidden_channels, c=hidden_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.peephole:  # Hadamard weights start small: the gates begin as the plain LSTM's
            for w in (self.weight_ci, self.weight_cf, self.weight_co):
                nn.init.uniform_(w, -0.1, 0.1)
        if self.forget_bias is not None:
            C = self.hidden_channels
            with torch.no_grad():
                self.bias_ih[C : 2 * C].fill_(self.forget_bias)
                self.bias_hh[C : 2 * C].zero_()

    def step(self, x: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        h, c = state
        gx, gh = same_conv(x, self.weight_ih, self.bias_ih), same_conv(h, self.weight_hh, self.bias_hh)
        i, f, g, o = (gx + gh).chunk(4, 1)  # each (B, C_hid, H, W)
        if self.peephole:
            i, f = i + self.weight_ci * c, f + self.weight_cf * c
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        c = f * c + i * g
        if self.peephole:
            o = o + self.weight_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, LSTMState(h, c)

    def extra_repr(self) -> str:
        s = self._repr_options()
        if self.peephole:
            s += f", peephole=True, frame_size={self.frame_size}"
        return s + (f", forget_bias={self.forget_bias}" if self.forget_bias is not None else "")


class ConvGRUCell(ConvCell):
    r"""The ConvGRU step (Ballas et al. 2016, "Delving Deeper into Convolutional Networks for Learning
    Video Representations", sec. 3, https://arxiv.org/abs/1511.06432), ``*`` a convolution:

    .. math::
        r_t = \sigma(W_{xr} * x_t + b_{xr} + W_{hr} * h_{t-1} + b_{hr})
        z_t = \sigma(W_{xz} * x_t + b_{xz} + W_{hz} * h_{t-1} + b_{hz})
        n_t = \tanh(W_{xn} * x_t + b_{xn} + W_{hn} * (r_t \circ h_{t-1}) + b_{hn})
            \quad\text{(reset\_after=False, the default: the paper's and the textbook form)}
        n_t = \tanh(W_{xn} * x_t + b_{xn} + r_t \circ (W_{hn} * h_{t-1} + b_{hn}))
            \quad\text{(reset\_after=True: torch's GRU)}
        h_t = z_t \circ h_{t-1} + (1 - z_t) \circ n_t

    ``z`` is torch's update gate: the paper writes ``h_t = (1 - z_t) h_{t-1} + z_t n_t``, the same model
    with z's weights and bias negated. Convolutions have stride 1 and "same" padding, so H and W are kept.
    With 1x1 kernels on 1x1 frames the cell is exactly :class:`GRUCell` with the same ``reset_after``
    and the weights viewed as (3C_hid, C_in) and (3C_hid, C_hid).

    Parameters: ``weight_ih`` (3C_hid, C_in, kh, kw), ``weight_hh`` (3C_hid, C_hid, kh, kw), ``bias_ih``,
    ``bias_hh`` (3C_hid), gate blocks in torch's order r, z, n.

    Shapes: ``x_t`` (B, C_in, H, W); state ``h`` (B, C_hid, H, W); ``y_t = h_t``.
    """

    gate_blocks = 3

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        bias: bool = True,
        reset_after: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self._conv_parameters(in_channels, hidden_channels, kernel_size, bias, kw)
        self.reset_after = reset_after
        self.state_size = hidden_channels
        self.reset_parameters()

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        split = [2 * self.hidden_channels, self.hidden_channels]  # the r, z blocks | the n block
        x_rz, x_n = same_conv(x, self.weight_ih, self.bias_ih).split(
            split, 1
        )  # (B, 2C_hid, H, W), (B, C_hid, H, W)
        if self.reset_after:
            h_rz, h_n = same_conv(h, self.weight_hh, self.bias_hh).split(split, 1)
            r, z = torch.sigmoid(x_rz + h_rz).chunk(2, 1)
            n = torch.tanh(x_n + r * h_n)
        else:
            W_hrz, W_hn = self.weight_hh.split(split)
            b_hrz, b_hn = self.bias_hh.split(split) if self.bias_hh is not None else (None, None)
            r, z = torch.sigmoid(x_rz + same_conv(h, W_hrz, b_hrz)).chunk(2, 1)
            n = torch.tanh(x_n + same_conv(r * h, W_hn, b_hn))
        h = z * h + (1 - z) * n
        return h, h

    def extra_repr(self) -> str:
        return self._repr_options() + f", reset_after={self.reset_after}"


__all__ = ["ConvCell", "ConvGRUCell", "ConvLSTMCell", "same_conv"]
