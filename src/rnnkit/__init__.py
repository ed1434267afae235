"""rnnkit: recurrent neural networks on PyTorch.

Cells written from their equations (:mod:`rnnkit.cells`: Elman, Jordan, LSTM, GRU, minGRU, minLSTM),
one Recurrent layer that runs any cell over time (:class:`Recurrent`), and drop-ins for torch.nn's RNN,
LSTM, GRU and their cells (:mod:`rnnkit.nn`).

Names are imported on first use (PEP 562), so ``rnnkit --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Cell": "rnnkit.cells",
    "ConvGRUCell": "rnnkit.cells",
    "ConvLSTMCell": "rnnkit.cells",
    "ElmanCell": "rnnkit.cells",
    "GRUCell": "rnnkit.cells",
    "JordanCell": "rnnkit.cells",
    "LSTMCell": "rnnkit.cells",
    "LSTMState": "rnnkit.cells",
    "MinGRUCell": "rnnkit.cells",
    "MinLSTMCell": "rnnkit.cells",
    "InputError": "rnnkit.errors",
    "Recurrent": "rnnkit.layers",
    "RNN": "rnnkit.layers",
    "LSTM": "rnnkit.layers",
    "GRU": "rnnkit.layers",
    "Stateful": "rnnkit.layers",
}

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Cell",
    "ConvGRUCell",
    "ConvLSTMCell",
    "ElmanCell",
    "GRUCell",
    "InputError",
    "JordanCell",
    "LSTMCell",
    "LSTMState",
    "MinGRUCell",
    "MinLSTMCell",
    "Recurrent",
    "Stateful",
    "nn",
]

if TYPE_CHECKING:
    from . import nn
    from .cells import (
        Cell,
        ConvGRUCell,
        ConvLSTMCell,
        ElmanCell,
        GRUCell,
        JordanCell,
        LSTMCell,
        LSTMState,
        MinGRUCell,
        MinLSTMCell,
    )
    from .errors import InputError
    from .layers import GRU, LSTM, RNN, Recurrent, Stateful


def __getattr__(name: str) -> Any:
    if name == "nn":
        return importlib.import_module("rnnkit.nn")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
