"""Cells: the equations of one time step, written the way they read (the source of truth)."""

from .base import Cell, LSTMState, State, activation
from .conv import ConvGRUCell, ConvLSTMCell
from .elman import ElmanCell
from .gru import GRUCell
from .jordan import JordanCell
from .lstm import LSTMCell
from .minimal import MinGRUCell, MinLSTMCell

__all__ = [
    "Cell",
    "ConvGRUCell",
    "ConvLSTMCell",
    "ElmanCell",
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "LSTMState",
    "MinGRUCell",
    "MinLSTMCell",
    "State",
    "activation",
]
