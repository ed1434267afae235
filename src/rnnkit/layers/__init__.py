"""Layers: the Recurrent wrapper and the torch.nn drop-ins."""

from .recurrent import Recurrent
from .stateful import Stateful
from .torch_compat import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "Recurrent", "Stateful"]
