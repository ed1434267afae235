"""The reference loop: one cell over time, ``y_t, s_t = cell.step(x_t, s_{t-1})`` (the source of truth
every fast path is tested against), with zoneout and packing helpers."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ..cells.base import Cell, State, map_state, mask_first, stack_states, state_fields
from ..kernels.fused import record
from ..kernels.masks import Recurrence, reset_in_processing_order, reverse_padded, step_mask


def run_cell(
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    reverse: bool = False,
    *,
    rec: Recurrence | None = None,
    trace: dict | None = None,
) -> tuple[Tensor, State]:
    """The reference loop: run one cell over time.

    Args:
        x: (T, B, F) or (T, B, C, *S) inputs. state: the cell's state for (B, ...). lengths: (B,) or None.
        reverse: run each sequence from its own last step back to its first.
        rec: this forward's state dropout mask, zoneout masks and resets (``kernels/masks.py``).
        trace: a dict of lists ``states`` and ``gates``, or None: the state after every step, (T, B, n)
            per field, and the gate activations (``cell.gates``: name -> (T, B, H), {} for cells without
            them) are appended, in the input's time order (past a sequence's end: the frozen state and
            zero gates).

    Returns:
        (y (T, B, O) with zeros at padded steps, the state at each sequence's last step).
    """
    if reverse:
        x = reverse_padded(x, lengths)
    alive = step_mask(x.shape[0], lengths, x.dim() - 2)
    rec = rec or Recurrence()
    reset = reset_in_processing_order(rec.reset, lengths, reverse, alive)
    gated = trace is not None and hasattr(cell, "gates")
    ys, seen, gates = [], [], []
    # unbind, not x[t]: autograd turns each x[t] into a full (T, B, F) gradient, O(T^2) in all
    for t, x_t in enumerate(x.unbind(0)):
        if reset is not None:  # a new document: start again from the initial state
            state = map_state(lambda s, s0, r=reset[t]: torch.where(r, s0, s), state, rec.init)
        if rec.state_mask is None:
            y, new = cell.step(x_t, state)
        else:
            y, new = cell.masked_step(x_t, state, rec.state_mask)
        if gated:  # what the step's gates saw: the masked state, as in masked_step
            mask = rec.state_mask
            gates.append(cell.gates(x_t, state if mask is None else mask_first(state, mask)))
        if rec.zoneout is not None:
            y, new = zone_out(y, new, state, rec.zoneout, t)
        if alive is not None:  # past its end a sequence keeps its state and outputs zeros
            new = map_state(lambda n, s, a=alive[t]: torch.where(a, n, s), new, state)
            y = torch.where(alive[t], y, 0.0)
        ys.append(y)
        if trace is not None:
            seen.append(new)
        state = new
    y = torch.stack(ys)
    if trace is not None:
        gate_steps = {name: torch.stack([g[name] for g in gates]) for name in (gates[0] if gates else {})}
        record(trace, stack_states(seen), gate_steps, alive, lengths, reverse)
    return (reverse_padded(y, lengths) if reverse else y), state


def zone_out(
    y: Tensor, new: State, old: State, zoneout: tuple[Tensor | None, ...], t: int
) -> tuple[Tensor, State]:
    """Zoneout (Krueger et al. 2017, https://arxiv.org/abs/1606.01305): each unit of each state field
    keeps its previous value with weight ``z = zoneout[field][t]``: ``z * old + (1 - z) * new``. Where
    the step's output is its state (every built-in cell but Elman with a readout), the output is the
    zoned state too."""
    fields = state_fields(new)
    triples = zip(fields, state_fields(old), zoneout, strict=True)
    zoned = [n if z is None else torch.lerp(n, o, z[t]) for n, o, z in triples]
    if y is fields[0]:
        y = zoned[0]
    return y, (type(new)(*zoned) if isinstance(new, tuple) else zoned[0])


def pack_like(y: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack padded outputs y (T, B, O) with the batch sizes and ordering of ``like``."""
    if like.sorted_indices is not None:
        y = y.index_select(1, like.sorted_indices)
    batch_sizes = like.batch_sizes.to(y.device)
    mask = torch.arange(y.shape[1], device=y.device)[None, :] < batch_sizes[:, None]  # (T, B)
    return PackedSequence(y[mask], like.batch_sizes, like.sorted_indices, like.unsorted_indices)


__all__ = ["pack_like", "run_cell", "zone_out"]
