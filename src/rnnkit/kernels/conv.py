"""Convolutional cells: the input convolution of all T steps as one call.

A conv cell's input side ``W_x * x_t + b_x`` does not depend on the state, so one convolution over the
T*B frames replaces T small ones (larger calls run nearer oneDNN's peak and pay its per-call overhead
once); the loop then runs the cell's ``step_gates`` on each step's slice. The loop itself is the
reference loop (``layers.recurrent.run_cell``: lengths, reversal, masks), handed in as ``loop``, so the
only change is where the input convolution is computed. ``tests/test_conv.py`` checks values and
gradients against the reference.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..cells.base import State
from ..cells.conv import ConvCell


def run_conv(
    cell: ConvCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool = False, *, loop: Callable
) -> tuple[Tensor, State]:
    """Same contract as ``layers.recurrent.run_cell``; x (T, B, C_in, H, W)."""
    T, B = x.shape[:2]
    gx = cell.input_conv(x.flatten(0, 1)).unflatten(0, (T, B))  # (T, B, G*C_hid, H, W)
    return loop(cell, gx, state, lengths, reverse, step=cell.step_gates)
