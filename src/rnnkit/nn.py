"""Drop-in replacements for ``torch.nn``'s recurrent layers: ``import rnnkit.nn as rnn; rnn.LSTM(...)``."""

from .cells import ElmanCell, GRUCell, JordanCell, LSTMCell
from .layers import GRU, LSTM, RNN, Recurrent

__all__ = ["GRU", "LSTM", "RNN", "ElmanCell", "GRUCell", "JordanCell", "LSTMCell", "Recurrent"]
