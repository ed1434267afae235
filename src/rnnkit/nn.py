"""torch.nn's recurrent modules as drop-ins: ``import rnnkit.nn as rnn; rnn.LSTM(...)``.

Only torch's names live here, and each behaves as torch.nn's module of that name (arguments, parameter
names, ``state_dict``, shapes, return values, errors): ``RNN``, ``LSTM``, ``GRU`` (stacks run by
:class:`rnnkit.Recurrent`) and ``RNNCell``, ``GRUCell``, ``LSTMCell`` (one step of rnnkit's cells).
rnnkit's own cells and layer, with their own interface (``cell(x, state) -> (y, state)``), are
``rnnkit.ElmanCell``, ``rnnkit.GRUCell``, ``rnnkit.LSTMCell``, ``rnnkit.Recurrent``, ...
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from .layers import GRU, LSTM, RNN
from .layers.torch_cells import GRUCell, LSTMCell, RNNCell

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]

# rnnkit's own names that used to sit here too; kept for one release, with a warning
_MOVED = {"ElmanCell": "rnnkit.cells", "JordanCell": "rnnkit.cells", "Recurrent": "rnnkit.layers"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"rnnkit.nn.{name} is deprecated and will be removed in the next release: rnnkit.nn holds only "
            f"torch.nn's names. Use rnnkit.{name}.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'rnnkit.nn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
