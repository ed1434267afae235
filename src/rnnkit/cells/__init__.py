"""Cells: the equations of one time step, written the way they read (the source of truth)."""

from .base import Cell, LSTMState, State, activation
from .elman import ElmanCell
from .gru import GRUCell
from .jordan import JordanCell
from .lstm import LSTMCell
from .minimal import MinGRUCell, MinLSTMCell

__all__ = [
    "Cell",
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
