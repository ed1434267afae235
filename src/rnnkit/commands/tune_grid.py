"""The grid of ``rnnkit tune``: build a layer per case, let :mod:`rnnkit.kernels.tuning` measure it.

It lives above the layers (it builds ``Recurrent`` layers to time), so kernels never import layers.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..kernels.dispatch import static_name
from ..kernels.tuning import MAX_STEPS, tune_case  # noqa: F401  (MAX_STEPS: named in a docstring)

# -- ahead of time: `rnnkit tune` ------------------------------------------------------------------------

GRID_CELLS = ("lstm", "gru", "rnn", "lstm-layernorm", "gru-textbook", "lstm-peephole", "mingru")


def _grid_layer(name: str, H: int, layers: int) -> torch.nn.Module:
    from ..cells import GRUCell, LSTMCell, registry
    from ..layers import Recurrent

    extra = {
        "lstm-layernorm": lambda: LSTMCell(H, H, layer_norm=True),
        "lstm-peephole": lambda: LSTMCell(H, H, peephole=True),
        "gru-textbook": lambda: GRUCell(H, H, reset_after=False),
    }
    if name not in extra and name not in registry.CELLS:
        raise ValueError(
            f"cell must be one of {', '.join(GRID_CELLS)} (or {', '.join(registry.CELLS)}); got {name!r}"
        )
    cell = extra[name]() if name in extra else registry.build(name, H, H)
    return Recurrent(cell, num_layers=layers)


def tune_grid(
    cells: Sequence[str] = ("lstm", "gru", "rnn"),
    batches: Sequence[int] = (1, 16, 64),
    hiddens: Sequence[int] = (128, 256, 512),
    layers: Sequence[int] = (1,),
    modes: Sequence[str] = ("infer", "train"),
    dtypes: Sequence[torch.dtype] = (torch.float32,),
    seq_len: int = 100,
    fresh: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Fill the tuning file for a grid of cases (``rnnkit tune``): one row per case with the choice,
    what the static rules would have run (``static``), and each candidate's time (ms, forward or
    forward + backward of ``min(seq_len, MAX_STEPS)`` steps; empty when the case has one candidate).
    Cases already in the file are read back, not measured again, unless ``fresh``."""
    from ..layers.recurrent import run_cell

    for m in modes:
        if m not in ("infer", "train"):
            raise ValueError(f"mode must be 'infer' or 'train', got {m!r}")
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name, n_layers, H, B, dtype, mode in itertools.product(
        cells, layers, hiddens, batches, dtypes, modes
    ):
        layer = _grid_layer(name, H, n_layers).to(dtype)
        layer.requires_grad_(mode == "train")
        stack = layer.layer_cells()
        x = torch.randn(seq_len, B, H, generator=gen).to(dtype)
        with torch.set_grad_enabled(mode == "train"):
            static = static_name(stack, layer.merge, run_cell, x)
            found = tune_case(stack, layer.merge, run_cell, x, lambda s=static: s, fresh=fresh)
        choice, ms = (found[0].name, found[1].get("ms", {})) if found else (static, {})
        row = {"cell": name, "layers": n_layers, "H": H, "B": B, "dtype": str(dtype).removeprefix("torch."),
               "mode": mode, "choice": choice, "static": static, "ms": ms}  # fmt: skip
        rows.append(row)
        if progress is not None:
            progress(format_row(row))
    return rows


def format_row(row: dict[str, Any]) -> str:
    ms = row["ms"]
    gain = ms[row["static"]] / ms[row["choice"]] if row["static"] in ms and ms.get(row["choice"]) else 1.0
    times = "  ".join(f"{k} {v:.2f}" for k, v in ms.items())
    return (
        f"{row['cell']:<15} {row['layers']:>2} {row['H']:>5} {row['B']:>4} {row['dtype']:<9} {row['mode']:<6}"
        f" {row['choice']:<13} {row['static']:<13} {gain:>5.2f}x  {times}"
    )


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`tune_grid` as text: ``gain`` = static path's time / chosen path's time."""
    head = (
        f"{'cell':<15} {'L':>2} {'H':>5} {'B':>4} {'dtype':<9} {'mode':<6} {'choice':<13} {'static':<13}"
        f" {'gain':>6}  ms per candidate"
    )
    return "\n".join([head, *(format_row(r) for r in rows)])
