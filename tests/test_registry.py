"""The cell registry: which fast paths each cell declares, exact-class lookup, and the layering it
keeps (cells never import kernels; no import circles in cells/, kernels/, layers/)."""

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


def _imports(path: pathlib.Path, module: str) -> set[str]:
    """rnnkit modules that ``module`` imports anywhere (functions included), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            if node.module:  # ``from . import x`` imports x, not (again) the package it sits in
                found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m and m.startswith("rnnkit")}


def test_no_import_circles_in_cells_kernels_layers():
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {m: {t for t in _imports(p, m) if t in modules and t != m} for m, p in modules.items()}
    ours = [m for m in modules if m.split(".")[1:2] in (["cells"], ["kernels"], ["layers"])]

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for t in graph[m]:
                if t == goal:
                    return True
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return False

    # (a module importing its own package, ``from .. import x``, is not a circle)
    circles = [(m, t) for m in ours for t in graph[m] if not m.startswith(t + ".") and reaches(t, m)]
    assert circles == []
    # the cells are the lowest layer: they name their kernels as strings, never import them
    cells = [m for m in modules if m.startswith("rnnkit.cells")]
    assert {t for m in cells for t in graph[m] if not t.startswith("rnnkit.cells")} <= {"rnnkit.errors"}
