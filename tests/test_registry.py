"""The cell registry: which fast paths each cell declares, exact-class lookup, and the layering it
keeps (cells never import kernels)."""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch

import rnnkit.cells as cells_pkg
from rnnkit import (
    ConvGRUCell,
    ConvLSTMCell,
    ElmanCell,
    GRUCell,
    JordanCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    Recurrent,
)
from rnnkit.cells.base import Cell, FastPaths
from rnnkit.cells.registry import KINDS, fast_path, fast_paths
from rnnkit.kernels.dispatch import paths, plan
from rnnkit.kernels.fused import run_fused
from rnnkit.layers.recurrent import run_cell

SRC = pathlib.Path(cells_pkg.__file__).parent.parent

# cell -> (torch op, fused, compiled loops, one-step, scan): written out by hand from the kernels' code
EXPECTED = [
    (lambda: LSTMCell(3, 4), ("lstm", True, "lstm", True, False)),
    (lambda: LSTMCell(3, 4, proj_size=2), ("lstm", True, "lstm", True, False)),
    (lambda: LSTMCell(3, 4, peephole=True), (None, True, "lstm", False, False)),
    (lambda: LSTMCell(3, 4, layer_norm=True), (None, True, "lstm", False, False)),
    (lambda: GRUCell(3, 4), ("gru", True, "gru", True, False)),
    (lambda: GRUCell(3, 4, reset_after=False), (None, True, "gru", True, False)),
    (lambda: ElmanCell(3, 4), ("rnn_tanh", True, "elman", True, False)),
    (lambda: ElmanCell(3, 4, "relu"), ("rnn_relu", True, "elman", True, False)),
    (lambda: ElmanCell(3, 4, "sigmoid"), (None, True, "elman", True, False)),
    (lambda: ElmanCell(3, 4, readout_size=2), (None, True, "elman", True, False)),
    (lambda: ElmanCell(3, 4, torch.tanh), (None, False, None, False, False)),
    (lambda: JordanCell(3, 4, 2), (None, True, "jordan", False, False)),
    (lambda: JordanCell(3, 4, 2, output_activation=torch.tanh), (None, False, None, False, False)),
    (lambda: MinGRUCell(3, 4), (None, False, None, False, True)),
    (lambda: MinLSTMCell(3, 4), (None, False, None, False, True)),
    (lambda: ConvLSTMCell(3, 4, 3), (None, False, None, False, False)),
    (lambda: ConvGRUCell(3, 4, 3), (None, False, None, False, False)),
]


@pytest.mark.parametrize("make, expected", EXPECTED)
def test_each_cell_has_the_fast_paths_its_kernels_take(make, expected):
    found = paths(make())
    assert tuple(found[k] for k in ("native", "fused", "compiled", "step", "scan")) == expected


def test_every_declared_path_resolves():
    """A typo in a "module:function" reference fails here, not in a user's run."""
    declared = [c for c in vars(cells_pkg).values() if isinstance(c, type) and issubclass(c, Cell)]
    assert len(declared) >= 8
    for cls in declared:
        for kind in KINDS:
            ref = getattr(fast_paths(cls), kind)
            if ref is not None:
                assert callable(fast_path(cls.__new__(cls), kind)), (cls, kind)


class PlainSubclass(LSTMCell):
    """A subclass may change step, so it must not inherit LSTMCell's kernels."""


class SameEquations(GRUCell):
    fast_paths = GRUCell.fast_paths


def test_a_subclass_gets_no_fast_path_unless_it_declares_one():
    assert paths(PlainSubclass(3, 4)) == dict.fromkeys(("native", "fused", "compiled", "scan"), None) | {
        "fused": False,
        "step": False,
        "scan": False,
    }
    x = torch.randn(5, 2, 3)
    assert plan(Recurrent(PlainSubclass(3, 4)).cells, "concat", "auto", run_cell, x).runners == (run_cell,)
    assert paths(SameEquations(3, 4))["native"] == "gru"
    assert plan(Recurrent(SameEquations(3, 4)).cells, "concat", "fused", run_cell, x).runners == (run_fused,)


def test_a_function_can_be_declared_directly_and_bad_kinds_are_refused():
    calls = []

    class Declared(ElmanCell):
        fast_paths = FastPaths(native=lambda cell: calls.append(cell) or "rnn_tanh")

    cell = Declared(3, 4)
    assert paths(cell)["native"] == "rnn_tanh" and calls == [cell]
    with pytest.raises(ValueError, match="kind must be one of native, fused, step, scan; got 'gpu'"):
        fast_path(cell, "gpu")


def test_cells_import_no_kernels():
    """Cells are the lowest layer: they name their kernels as "module:function" strings and import
    nothing above them but ``errors`` (import circles in general: tests/test_layering.py)."""
    above = set()
    for path in (SRC / "cells").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:  # ``from ..x import y``
                above.add(node.module)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                above |= {node.module} if node.module.startswith("rnnkit") else set()
            elif isinstance(node, ast.Import):
                above |= {a.name for a in node.names if a.name.startswith("rnnkit")}
    assert above == {"errors"}
