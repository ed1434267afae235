"""Drop-in replacements for torch.nn.RNNCell, GRUCell and LSTMCell, built on rnnkit's cells.

torch's cell interface (``cell(input, hx=None)`` returns the new state: ``h`` for RNNCell and GRUCell,
``(h, c)`` for LSTMCell) over one :meth:`~rnnkit.cells.Cell.step` of rnnkit's own ElmanCell,
GRUCell (reset-after, torch's form) and LSTMCell: the same equations as every rnnkit layer, not a
second implementation. Constructor arguments, parameter names and registration order
(``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``), initialisation (same seed, same weights),
``state_dict``, ``repr`` and error messages are torch's.

As in ``torch_compat``, the parameters live on the module and an unregistered *template* cell (on
the ``meta`` device, owning no memory) is pointed at them before every step, so ``.to()``,
``load_state_dict(assign=True)`` and ``torch.func.functional_call`` are always seen.

rnnkit's own cells (``rnnkit.GRUCell`` etc.) are a different interface: ``cell(x, state)`` returns
``(y, state)``, and they take more options (textbook GRU, peepholes, projection, layer norm).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn

from .. import cells  # rnnkit's cells; the classes here take torch's names
from ..cells import Cell, LSTMState
from ..cells.base import State, check_tensor, map_state
from ..errors import InputError, check


def torch_equivalent(module: nn.Module) -> str:
    """The torch.nn constructor call that builds ``module``'s model, e.g. ``torch.nn.LSTM(3, 5,
    num_layers=2)``: the arguments of its class that differ from their defaults (rnnkit's own, such
    as ``impl``, left out)."""
    name = type(module).__name__
    args = [repr(module.input_size), repr(module.hidden_size)]
    for arg in list(inspect.signature(type(module)).parameters.values())[2:]:
        if arg.name in ("device", "dtype", "impl") or arg.kind is arg.VAR_KEYWORD:
            continue
        value = getattr(module, arg.name)
        if value != arg.default:
            args.append(f"{arg.name}={value!r}")
    return f"torch.nn.{name}({', '.join(args)})"


def no_torchscript(module: nn.Module) -> None:
    """What ``torch.jit.script`` meets on a drop-in: a clear error that says what to use instead."""
    reg = getattr(module, "regularization", None)  # rnnkit's options on the layers, which torch lacks
    extras = [f.name for f in dataclasses.fields(reg) if getattr(reg, f.name)] if reg is not None else []
    extras += ["learn_initial_state"] if getattr(module, "learn_initial_state", False) else []
    raise RuntimeError(
        f"torch.jit.script cannot compile rnnkit.nn.{type(module).__name__} (TorchScript takes only a "
        f"subset of Python). Use torch.compile(model), which runs rnnkit.nn, or torch.export; for "
        f"TorchScript, put {torch_equivalent(module)} in its place and load this module's state_dict into it"
        + (
            f" (it has no {', '.join(extras)}: only torch.compile and torch.export keep them)"
            if extras
            else ""
        )
    )


class _TorchCell(nn.Module):
    """What the three cells share: torch's RNNCellBase (attributes, parameters, init, repr)."""

    input_size: int
    hidden_size: int
    bias: bool

    def __init__(self, cell: Cell, bias: bool, device: Any, dtype: Any) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = cell.input_size, cell.hidden_size, bias
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):  # torch's order, None if no bias
            p = getattr(cell, name)
            self.register_parameter(
                name, None if p is None else nn.Parameter(torch.empty(p.shape, device=device, dtype=dtype))
            )
        self._template = (cell,)  # a tuple: not registered, not in state_dict
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def cell(self) -> Cell:
        """rnnkit's cell (``step(x, state) -> (y, state)``) on this module's current parameters."""
        template = self._template[0]
        for name in template._parameters:
            template._parameters[name] = getattr(self, name)
        return template

    def _check(self, input: Tensor, hx: tuple[Tensor, ...] | None, names: tuple[str, ...]) -> None:
        """torch's checks, in torch's order and wording (the op's own for sizes)."""
        who = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{who}: input must be a Tensor, got {type(input).__name__}")
        check(input.dim() in (1, 2), f"{who}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        for name, h in zip(names, hx or (), strict=False):
            if not isinstance(h, Tensor):
                raise TypeError(f"{who}: {name} must be a Tensor, got {type(h).__name__}")
            check(h.dim() in (1, 2), f"{who}: Expected {name} to be 1D or 2D, got {h.dim()}D instead")
        check(
            input.size(-1) == self.input_size,
            f"input has inconsistent input_size: got {input.size(-1)} expected {self.input_size}",
        )
        for k, (name, h) in enumerate(zip(names, hx or (), strict=False)):
            check(
                h.dim() == input.dim(),
                f"{who}: for {input.dim()}D input, {name} should also be {input.dim()}D, got {h.dim()}D",
            )
            if input.dim() == 2:
                check(
                    h.size(0) == input.size(0),
                    f"Input batch size {input.size(0)} doesn't match hidden{k} batch size {h.size(0)}",
                )
            check(
                h.size(-1) == self.hidden_size,
                f"hidden{k} has inconsistent hidden_size: got {h.size(-1)}, expected {self.hidden_size}",
            )
            check(
                h.dtype == input.dtype and h.device == input.device,
                f"{who}: {name} must have the input's dtype and device ({input.dtype}, {input.device}), "
                f"got ({h.dtype}, {h.device})",
            )
        check_tensor(input, self, who)  # dtype and device, after the sizes as in torch's op

    def _run(self, input: Tensor, hx: State | None) -> State:
        """One step on a checked input: batch it, fill in a zero state, step, unbatch."""
        cell = self.cell()
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
            hx = None if hx is None else map_state(lambda s: s.unsqueeze(0), hx)
        if hx is None:
            hx = cell.init_state(input.size(0), dtype=input.dtype, device=input.device)
        _, state = cell.step(input, hx)
        return state if batched else map_state(lambda s: s.squeeze(0), state)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def __prepare_scriptable__(self) -> nn.Module:
        no_torchscript(self)
        return self


class RNNCell(_TorchCell):
    r"""Drop-in for :class:`torch.nn.RNNCell`: ``h' = tanh|relu(x W_ih^T + b_ih + h W_hh^T + b_hh)``,
    one step of :class:`rnnkit.ElmanCell`.

    Shapes: ``input`` (N, H_in) or unbatched (H_in,); ``hx`` (N, H) or (H,), zeros if omitted.
    Returns ``h'`` with ``hx``'s shape.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        # torch only finds out at the first forward; refusing here is earlier, in the same words as RNN
        if nonlinearity not in ("tanh", "relu"):
            raise InputError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        template = cells.ElmanCell(
            input_size, hidden_size, nonlinearity, bool(bias), device="meta", dtype=dtype
        )
        super().__init__(template, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        self._check(input, None if hx is None else (hx,), ("hidden",))
        return self._run(input, hx)


class GRUCell(_TorchCell):
    r"""Drop-in for :class:`torch.nn.GRUCell`: one step of :class:`rnnkit.GRUCell` in torch's
    reset-after form (``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``).

    Shapes: ``input`` (N, H_in) or unbatched (H_in,); ``hx`` (N, H) or (H,), zeros if omitted.
    Returns ``h'`` with ``hx``'s shape.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        template = cells.GRUCell(
            input_size, hidden_size, bool(bias), reset_after=True, device="meta", dtype=dtype
        )
        super().__init__(template, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        self._check(input, None if hx is None else (hx,), ("hidden",))
        return self._run(input, hx)


class LSTMCell(_TorchCell):
    r"""Drop-in for :class:`torch.nn.LSTMCell`: one step of :class:`rnnkit.LSTMCell`
    (``c' = f * c + i * g``, ``h' = o * tanh(c')``, gate blocks i, f, g, o as torch).

    Shapes: ``input`` (N, H_in) or unbatched (H_in,); ``hx = (h, c)``, each (N, H) or (H,), zeros if
    omitted. Returns ``(h', c')`` as an :class:`~rnnkit.LSTMState` (a tuple, as rnnkit.nn.LSTM's state).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        template = cells.LSTMCell(input_size, hidden_size, bool(bias), device="meta", dtype=dtype)
        super().__init__(template, bias, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> LSTMState:
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            got = (
                f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else type(hx).__name__
            )
            raise InputError(f"LSTMCell: Expected hx to be a tuple (h_0, c_0) of two tensors, got {got}")
        self._check(input, None if hx is None else tuple(hx), ("hx[0]", "hx[1]"))
        return self._run(input, None if hx is None else LSTMState(*hx))


__all__ = ["GRUCell", "LSTMCell", "RNNCell"]
