"""Drop-in replacements for torch.nn.RNN, LSTM and GRU, built on rnnkit's cells and Recurrent layer.

Same constructor arguments, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
registration order, initialisation (so the same seed gives the same weights), shapes, return types and
``state_dict`` as torch. The parameters live on the module under torch's names; each layer and
direction has an unregistered *template* cell that is pointed at the current parameters before every
forward, so swapping or reassigning parameters (``load_state_dict(assign=True)``, ``.to()``,
``torch.func.functional_call``) is always seen.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..cells import Cell, ElmanCell, GRUCell, LSTMCell
from ..cells.base import State
from ..errors import check_bool, check_int
from .recurrent import Recurrent

# rnnkit's options beyond torch's arguments, passed to Recurrent._configure_state (all off by default)
STATE_OPTIONS = (
    "input_dropout",
    "variational",
    "state_dropout",
    "zoneout",
    "weight_drop",
    "learn_initial_state",
)


class _TorchRNN(Recurrent):
    """What the three drop-ins share: torch's argument checks, parameter names and layout."""

    mode: str

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        impl: str = "auto",
        **options: Any,
    ) -> None:
        nn.Module.__init__(self)
        # torch's checks, in torch's wording
        check_bool("bias", bias)
        input_size = check_int("input_size", input_size)
        hidden_size = check_int("hidden_size", hidden_size)
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError(
                f"proj_size should be a positive integer or zero to disable projections, got {proj_size}"
            )
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and "
                f"hidden_size={hidden_size}"
            )
        # stacklevel 4: the warning points at the user's line (user -> LSTM -> _TorchRNN -> here)
        self._configure(num_layers, bidirectional, "concat", dropout, batch_first, impl, stacklevel=4)
        self.input_size, self.hidden_size, self.proj_size, self.bias = (
            input_size,
            hidden_size,
            proj_size,
            bias,
        )

        factory = {"device": device, "dtype": dtype}
        templates = []
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        real_hidden = proj_size or hidden_size
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                layer_input = input_size if layer == 0 else real_hidden * self.num_directions
                template = self._make_cell(layer_input, device="meta", dtype=dtype)
                suffix = "_reverse" if direction == 1 else ""
                names = []
                for name, p in template.named_parameters():
                    full = f"{name}_l{layer}{suffix}"
                    self.register_parameter(full, nn.Parameter(torch.empty(p.shape, **factory)))
                    names.append(full)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
                templates.append(template)
        self._templates = tuple(templates)  # a tuple: not registered, not in state_dict
        self.reset_parameters()
        unknown = sorted(set(options) - set(STATE_OPTIONS))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unknown}")
        self._configure_state(**options)  # rnnkit's extensions; all off by default

    def _make_cell(self, input_size: int, **factory: Any) -> Cell:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:  # torch's weights only: a learned initial state starts at 0
            nn.init.uniform_(getattr(self, name), -bound, bound)

    def layer_cells(self) -> Sequence[Cell]:
        # Point each template at the parameters the module holds *now*.
        for template, names in zip(self._templates, self._all_weights, strict=True):
            for name, full in zip(template._parameters, names, strict=True):
                template._parameters[name] = getattr(self, full)
        return self._templates

    def _bound_parameters(self) -> tuple[Tensor, ...] | None:
        # only while layer_cells is the binding above (a subclass may bind otherwise)
        return tuple(self._parameters.values()) if type(self).layer_cells is _TorchRNN.layer_cells else None

    def forward(  # type: ignore[override]
        self,
        input: Tensor | PackedSequence,
        hx: State | None = None,
        lengths: Tensor | Sequence[int] | None = None,
        reset: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        """As torch; ``lengths`` (B,) and ``reset`` are rnnkit extensions (see ``Recurrent.forward``)."""
        return super().forward(input, hx, lengths=lengths, reset=reset)

    def _name(self) -> str:
        return self.mode.split("_")[0]

    # torch API surface that user code touches
    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op, kept for torch compatibility (rnnkit never needs a flat weight buffer)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += f", bidirectional={self.bidirectional}"
        reg = self.regularization
        for name in ("input_dropout", "state_dropout", "weight_drop", "variational"):
            if getattr(reg, name):
                s += f", {name}={getattr(reg, name)}"
        if reg.zoneout:
            s += f", zoneout={reg.zoneout}"
        if self.learn_initial_state:
            s += ", learn_initial_state=True"
        return s


class RNN(_TorchRNN):
    r"""Drop-in for :class:`torch.nn.RNN`: stacked Elman cells, ``h_t = tanh|relu(x W_ih^T + b_ih +
    h W_hh^T + b_hh)``. Input (L, N, H_in) or (N, L, H_in) with batch_first, (L, H_in) unbatched, or a
    PackedSequence; ``hx`` (D*num_layers, N, H_out). Returns ``(output, h_n)``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        impl: str = "auto",
        **kwargs: Any,
    ) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            impl=impl,
            **kwargs,
        )

    def _make_cell(self, input_size: int, **factory: Any) -> Cell:
        return ElmanCell(input_size, self.hidden_size, self.nonlinearity, self.bias, **factory)


class LSTM(_TorchRNN):
    r"""Drop-in for :class:`torch.nn.LSTM` (with ``proj_size``). ``hx = (h_0, c_0)``, each
    (D*num_layers, N, H_out) and (D*num_layers, N, H_cell). Returns ``(output, (h_n, c_n))``, the
    pair as an :class:`~rnnkit.cells.LSTMState` (a tuple)."""

    mode = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: Any = None,
        dtype: Any = None,
        impl: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device=device,
            dtype=dtype,
            impl=impl,
            **kwargs,
        )

    def _make_cell(self, input_size: int, **factory: Any) -> Cell:
        return LSTMCell(input_size, self.hidden_size, self.bias, self.proj_size, **factory)


class GRU(_TorchRNN):
    r"""Drop-in for :class:`torch.nn.GRU` (torch's reset-after form). Returns ``(output, h_n)``."""

    mode = "GRU"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
        impl: str = "auto",
        **kwargs: Any,
    ) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            impl=impl,
            **kwargs,
        )

    def _make_cell(self, input_size: int, **factory: Any) -> Cell:
        return GRUCell(input_size, self.hidden_size, self.bias, reset_after=True, **factory)


__all__ = ["GRU", "LSTM", "RNN"]
