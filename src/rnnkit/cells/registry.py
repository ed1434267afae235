"""One place that maps a cell's name to its class (and, as they are declared, to its fast paths).

Model builders, the CLI's ``--cell`` choices, dispatch, streaming, checkpoints and diagnostics all read
this table instead of keeping their own maps or asking ``type(cell) is X``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Cell
from .elman import ElmanCell
from .gru import GRUCell
from .lstm import LSTMCell
from .minimal import MinGRUCell, MinLSTMCell


@dataclass(frozen=True)
class CellEntry:
    """A named cell: ``cls(input_size, hidden_size, **options)`` builds it."""

    name: str
    cls: type[Cell]
    help: str
    options: tuple[tuple[str, object], ...] = ()

    def build(self, input_size: int, hidden_size: int) -> Cell:
        return self.cls(input_size, hidden_size, **dict(self.options))


CELLS: dict[str, CellEntry] = {
    e.name: e
    for e in (
        CellEntry("lstm", LSTMCell, "LSTM (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000)"),
        CellEntry("gru", GRUCell, "GRU, reset-after (the cuDNN / torch.nn form)"),
        CellEntry("rnn", ElmanCell, "Elman RNN with tanh"),
        CellEntry("mingru", MinGRUCell, "minGRU (Feng et al. 2024), trained by a parallel scan"),
        CellEntry("minlstm", MinLSTMCell, "minLSTM (Feng et al. 2024), trained by a parallel scan"),
    )
}


def names(*, minimal: bool = True) -> tuple[str, ...]:
    """The registered names, for ``--cell`` choices; ``minimal=False`` leaves out minGRU/minLSTM."""
    return tuple(n for n, e in CELLS.items() if minimal or not n.startswith("min"))


def build(name: str, input_size: int, hidden_size: int) -> Cell:
    """The cell called ``name``; a clear error names the choices."""
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}; got {name!r}")
    return CELLS[name].build(input_size, hidden_size)
