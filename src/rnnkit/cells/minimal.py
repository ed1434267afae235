r"""minGRU and minLSTM: the minimal RNNs of Feng et al. 2024, "Were RNNs All We Needed?"
(https://arxiv.org/abs/2410.01201).

Their gates and candidate read the input only, never ``h_{t-1}``, so each step is the linear recurrence

    h_t = a_t * h_{t-1} + b_t        (a_t, b_t computed from x_t alone)

which a parallel scan solves for a whole sequence at once (``kernels/scan.py``); ``step`` here is the
one-step form, used for generation and as the reference the scan is tested against.

The candidate ``\tilde h_t`` comes in the paper's two forms (option ``candidate``):
- ``"g"`` (default): ``\tilde h_t = g(x_t W_h + b_h)`` with ``g(v) = v + 0.5`` for ``v >= 0`` and
  ``sigmoid(v)`` otherwise (Appendix B). The paper adds it for its log-space scan, which needs
  ``h > 0``; it is the form of the paper's experiments (and of its reference code). rnnkit's scan
  runs in linear space and does not need it, so it is kept as the paper's model, not as a necessity.
- ``"linear"``: ``\tilde h_t = x_t W_h + b_h`` (Sections 3.1.3 and 3.2.3, the plain form).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import check_int
from .base import Cell, FastPaths, param

CANDIDATES = ("g", "linear")


def g(v: Tensor) -> Tensor:
    """The paper's positive activation (Appendix B): ``v + 0.5`` for ``v >= 0``, ``sigmoid(v)`` below.
    Continuous at 0 (both give 0.5) with slope 1 above and at most 1/4 below."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def _candidate(name: str) -> str:
    if name not in CANDIDATES:
        raise ValueError(f"candidate must be one of {CANDIDATES}, got {name!r}")
    return name


class _MinimalCell(Cell):
    """What minGRU and minLSTM share: one input projection ``weight_ih`` (G*H, input_size) holding the
    G blocks in the order of the cell's equations, no recurrent weights, and ``h`` as output and state."""

    blocks: int  # G, the number of (H, input_size) blocks in weight_ih

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        candidate: str = "g",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_int("input_size", input_size)
        check_int("hidden_size", hidden_size)
        kw = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.candidate = input_size, hidden_size, _candidate(candidate)
        self.weight_ih = param((self.blocks * hidden_size, input_size), kw)
        self.bias_ih = param((self.blocks * hidden_size,), kw) if bias else None
        self.output_size = self.state_size = hidden_size
        self.reset_parameters()

    def h_tilde(self, v: Tensor) -> Tensor:
        """The candidate state from its pre-activation ``v = x W_h + b_h``."""
        return g(v) if self.candidate == "g" else v

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, candidate={self.candidate!r}"


class MinGRUCell(_MinimalCell):
    r"""minGRU (Feng et al. 2024, Section 3.1): a GRU whose update gate and candidate read only x_t.

    .. math::
        z_t = \sigma(x_t W_{z}^\top + b_{z})
        \tilde h_t = g(x_t W_{h}^\top + b_{h})      \quad (\text{or } x_t W_h^\top + b_h, candidate="linear")
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    There is no reset gate and no recurrent weight. Parameters: ``weight_ih`` (2H, input_size) with the
    z, h blocks in that order, ``bias_ih`` (2H,). Initialisation as torch's RNNs: U(-1/sqrt(H), 1/sqrt(H)).

    Shapes: ``x_t`` (B, input_size), state ``h`` (B, H), ``y_t = h_t`` (B, H).
    As a scan (``kernels/scan.py``): ``a_t = 1 - z_t``, ``b_t = z_t * \tilde h_t``.

    Args:
        input_size, hidden_size: F and H.
        bias: learn ``bias_ih`` (default True).
        candidate: ``"g"`` (the paper's positive g, default) or ``"linear"`` (see the module docstring).
        device, dtype: of the parameters.
    """

    fast_paths = FastPaths(scan="rnnkit.kernels.scan:mingru_coefficients")

    blocks = 2

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        k_z, k_h = F.linear(x, self.weight_ih, self.bias_ih).chunk(2, -1)
        z = torch.sigmoid(k_z)
        h = (1 - z) * h + z * self.h_tilde(k_h)
        return h, h

    def gates(self, x: Tensor, h: Tensor) -> dict[str, Tensor]:
        """The step's gate, (B, H): ``update`` z in (0, 1). (For diagnostics. The candidate is not a
        gate: with g it lies in (0, inf), not in a fixed range.)"""
        k_z, _ = F.linear(x, self.weight_ih, self.bias_ih).chunk(2, -1)
        return {"update": torch.sigmoid(k_z)}


class MinLSTMCell(_MinimalCell):
    r"""minLSTM (Feng et al. 2024, Section 3.2): an LSTM whose gates and candidate read only x_t, with
    the forget and input gates normalised to sum to one and no output gate or cell state.

    .. math::
        f_t = \sigma(x_t W_{f}^\top + b_{f}) \qquad i_t = \sigma(x_t W_{i}^\top + b_{i})
        \tilde h_t = g(x_t W_{h}^\top + b_{h})      \quad (\text{or } x_t W_h^\top + b_h, candidate="linear")
        f'_t = f_t / (f_t + i_t) \qquad i'_t = i_t / (f_t + i_t)
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    The normalisation (Section 3.2.3) makes h a convex combination of the past and the candidate, so
    its scale does not grow with time. Parameters: ``weight_ih`` (3H, input_size) with the f, i, h
    blocks in that order, ``bias_ih`` (3H,). The state is ``h`` alone (B, H), not an LSTM's (h, c).

    Shapes: ``x_t`` (B, input_size), state ``h`` (B, H), ``y_t = h_t`` (B, H).
    As a scan (``kernels/scan.py``): ``a_t = f'_t``, ``b_t = i'_t * \tilde h_t``.
    The scan computes ``f'`` in the equivalent log form ``sigmoid(log f - log i)`` (Appendix B), which
    stays finite where both gates underflow to 0 (pre-activations below about -100 in float32), where
    this step's quotient would be 0/0.

    Args:
        input_size, hidden_size: F and H.
        bias: learn ``bias_ih`` (default True).
        candidate: ``"g"`` (the paper's positive g, default) or ``"linear"`` (see the module docstring).
        device, dtype: of the parameters.
    """

    fast_paths = FastPaths(scan="rnnkit.kernels.scan:minlstm_coefficients")

    blocks = 3

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        f, i, h_tilde = self._gates(x)
        h = f * h + i * h_tilde
        return h, h

    def gates(self, x: Tensor, h: Tensor) -> dict[str, Tensor]:
        """The step's normalised gates, each (B, H) in (0, 1): ``forget`` f' and ``input`` i'
        (f' + i' = 1). (For diagnostics; :meth:`step` computes the same.)"""
        f, i, _ = self._gates(x)
        return {"forget": f, "input": i}

    def _gates(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(f', i', h~): the normalised gates and the candidate."""
        k_f, k_i, k_h = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, -1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        return f / (f + i), i / (f + i), self.h_tilde(k_h)
