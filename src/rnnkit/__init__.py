"""rnnkit: recurrent neural networks on PyTorch.

Cells written from their equations (:mod:`rnnkit.cells`), one Recurrent layer that runs any cell over
time (:class:`Recurrent`), and drop-ins for torch.nn's RNN, LSTM and GRU (:mod:`rnnkit.nn`).
"""

from . import nn
from .cells import Cell, ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState
from .errors import InputError
from .layers import GRU, LSTM, RNN, Recurrent

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Cell",
    "ElmanCell",
    "GRUCell",
    "InputError",
    "JordanCell",
    "LSTMCell",
    "LSTMState",
    "Recurrent",
    "nn",
]
