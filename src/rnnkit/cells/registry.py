"""One place that maps a cell's name to its class, and a cell to the fast paths it has.

``CELLS``: name -> class, for the model builders and the CLI's ``--cell`` choices.

:func:`fast_path`: a cell -> its torch op, fused kernel, one-step function or scan coefficients, as
its class declares them (``fast_paths = FastPaths(...)``, see :class:`~rnnkit.cells.base.FastPaths`).
Dispatch (``kernels/native.py``, ``kernels/fused/``, ``kernels/scan.py``), streaming
(``layers/streaming.py``) and export read them here; nothing else asks ``type(cell) is X``. The lookup
is by the exact class: a subclass may change ``step``, so it inherits no fast path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from .base import Cell, FastPaths
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


KINDS = tuple(f.name for f in fields(FastPaths) if f.name != "compiled")  # the paths that are functions
_NONE = FastPaths()


def fast_paths(cls: type[Cell]) -> FastPaths:
    """What ``cls`` itself declares (never a parent's: a subclass may change ``step``)."""
    return vars(cls).get("fast_paths", _NONE)


@cache
def _resolve(ref: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ImportError(f"fast path {ref!r} (expected 'module:function'): {e}") from None


def fast_path(cell: Cell, kind: str) -> Callable[..., Any] | None:
    """The function ``cell``'s class declares for ``kind`` (one of :data:`KINDS`: native, fused, step,
    scan), imported on first use, or None."""
    key = (type(cell), kind)
    try:
        return _FOUND[key]  # dispatch asks at every forward: one dict lookup
    except KeyError:
        pass
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    ref = getattr(fast_paths(type(cell)), kind)
    found = _FOUND[key] = _resolve(ref) if isinstance(ref, str) else ref
    return found


_FOUND: dict[tuple[type, str], Callable[..., Any] | None] = {}
