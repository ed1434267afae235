"""The reference loop as one traceable operator, for ``torch.export`` (``impl="traced"``).

A Python ``for t in range(T)`` is unrolled by every tracer, which fixes the sequence length, and
torch's own RNN ops are decomposed into such a loop by ``torch.export`` (pytorch/pytorch#115092). Run
inside torch's ``scan`` operator, ``cell.step`` is traced once as the loop body and ``T`` stays
symbolic, for any cell. ``scan`` is a prototype in torch: it runs only when traced (in eager mode it
compiles the body first), so this runner is for exporting, not for training.
"""

from __future__ import annotations

from torch import Tensor

from ..cells import Cell
from ..cells.base import State, state_fields
from .masks import reverse_padded, step_mask


def run_traced(
    cell: Cell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool = False
) -> tuple[Tensor, State]:
    """Exactly ``run_cell`` (same arguments and results), as one ``scan`` over ``cell.step``."""
    from torch._higher_order_ops.scan import scan  # the prototype's only home in torch 2.13

    if reverse:
        x = reverse_padded(x, lengths)
    structure = type(state) if isinstance(state, tuple) else None
    alive = step_mask(x.shape[0], lengths)  # (T, B, 1) or None

    def body(carry: tuple[Tensor, ...], inputs: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], Tensor]:
        # scan carries plain tuples of tensors, never a NamedTuple
        previous = structure(*carry) if structure else carry[0]
        y, new = cell.step(inputs[0], previous)
        fields = state_fields(new)
        if len(inputs) == 2:  # past its end a sequence keeps its state and outputs zeros
            fields = tuple(n.where(inputs[1], s) for n, s in zip(fields, carry, strict=True))
            y = y.where(inputs[1], 0.0)
        return fields, y.clone()  # y may be the new h itself: scan's outputs must not alias each other

    final, y = scan(body, state_fields(state), (x,) if alive is None else (x, alive))
    final = structure(*final) if structure else final[0]
    return (reverse_padded(y, lengths) if reverse else y), final
