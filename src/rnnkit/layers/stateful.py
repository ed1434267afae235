"""A Recurrent layer that keeps its state between calls: online inference over streams, and truncated
BPTT.

Feeding a sequence chunk by chunk gives exactly the outputs of one pass over the whole sequence: each
call starts from the state the previous call left. Streams (the batch) advance independently: with
``lengths`` each stream takes its own number of new steps from a chunk (0 included), and the others'
states wait.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..cells.base import State, map_state
from ..errors import InputError, check
from .recurrent import Recurrent


class Stateful(nn.Module):
    r"""Carry a unidirectional :class:`Recurrent` layer's state from one call to the next.

    Equivalent to::

        y, self.state = layer(chunk, self.state, lengths=lengths)   # state is None (zeros) at first

    with streams that take no new step (``lengths[b] == 0``) left as they were. The layer's own
    dispatch runs each call, so under ``torch.no_grad()`` chunks of one step take its cached one-step
    path and longer chunks torch's or rnnkit's fused kernels.

    Shape legend: T the chunk's steps, B streams, F features, O the layer's output size, K layers, n a
    state field's size.

    Args:
        layer: a unidirectional Recurrent (drop-ins such as ``rnnkit.nn.LSTM`` included). A
            bidirectional layer cannot stream: its reverse direction starts at the end of the sequence.

    Call:
        chunk: (T, B, F), or (B, T, F) with the layer's ``batch_first``.
        lengths: (B,) new steps per stream, 0 <= lengths[b] <= T; all T if omitted. A stream's steps
            past its length are padding: they are not read, its state stays at its last real step and
            its outputs there are zeros.
        reset: (T, B) bool ((B, T) with batch_first): a stream starts again from the layer's initial
            state (zeros, or its learned one) before the steps marked, e.g. at each document's first
            token. A stream that takes no new step ignores its marks.

    Returns:
        the layer's output for the chunk, (T, B, O) ((B, T, O) batch_first), zeros at padded steps.

    Attributes:
        state: the state after the last call (as the layer returns it: (K, B, n), or a tuple of them for
            an LSTM), or None before the first call and after :meth:`reset`.
    """

    def __init__(self, layer: Recurrent) -> None:
        super().__init__()
        if not isinstance(layer, Recurrent):
            raise TypeError(
                f"Stateful wraps a Recurrent layer (rnnkit.nn.LSTM etc.), got {type(layer).__name__}"
            )
        if layer.bidirectional:
            raise InputError(
                "Stateful needs a unidirectional layer: the reverse direction of a bidirectional layer "
                "starts from the end of the sequence, which a stream has not seen yet. Run the layer over "
                "the whole sequence instead, or stream with bidirectional=False."
            )
        self.layer = layer
        self.state: State | None = None

    def forward(
        self, chunk: Tensor, lengths: Tensor | Sequence[int] | None = None, reset: Tensor | None = None
    ) -> Tensor:
        if not isinstance(chunk, Tensor):
            raise TypeError(f"Stateful: chunk must be a Tensor, got {type(chunk).__name__}")
        layout = "(B, T, F)" if self.layer.batch_first else "(T, B, F)"
        check(
            chunk.dim() == 3,
            f"Stateful: expected a 3-D chunk {layout}, got {chunk.dim()}-D of shape {tuple(chunk.shape)} "
            "(one stream is a batch of 1)",
        )
        batch_dim = 0 if self.layer.batch_first else 1
        B, T = chunk.shape[batch_dim], chunk.shape[1 - batch_dim]
        if self.state is not None:
            streams = self._fields()[0].shape[1]
            check(
                streams == B,
                f"Stateful: the state holds {streams} streams but the chunk has {B}; call reset() to "
                "start a new set of streams",
            )
        idle = None
        if lengths is not None:
            lengths = _check_lengths(lengths, B, T, chunk.device)
            idle = lengths == 0  # (B,)
            if bool(idle.any()):
                lengths = lengths.clamp(min=1)  # Recurrent runs >= 1 step; the idle streams are undone below
            else:
                idle = None
        y, state = self.layer(chunk, self.state, lengths=lengths, reset=reset)  # the one call
        if idle is not None:
            before = self.state if self.state is not None else self.layer.initial_state(B)
            state = map_state(lambda new, old: torch.where(idle[:, None], old, new), state, before)
            y = y.masked_fill(idle[:, None, None] if batch_dim == 0 else idle[None, :, None], 0.0)
        self.state = state
        return y

    def reset(self, streams: Tensor | Sequence[int] | Sequence[bool] | None = None) -> None:
        """Start streams afresh (their state back to the layer's initial state: zeros, or its learned
        one) before the next chunk.

        ``streams``: None for all (the next chunk may then have any number of streams), a (B,) bool mask,
        or a list / tensor of stream indices.
        """
        if streams is None or self.state is None:
            self.state = None
            return
        B = self._fields()[0].shape[1]
        device = self._fields()[0].device
        index = torch.as_tensor(streams, device=device)
        if index.dtype == torch.bool:
            check(
                index.shape == (B,),
                f"reset: a mask needs one bool per stream, shape ({B},), got {tuple(index.shape)}",
            )
            index = index.nonzero().flatten()
        else:
            check(
                index.dim() <= 1 and not index.is_floating_point() and not index.is_complex(),
                f"reset: streams must be a bool mask or integer indices, got {index.dtype} of shape "
                f"{tuple(index.shape)}",
            )
            index = index.flatten().long()
            if index.numel():
                low, high = int(index.min()), int(index.max())
                check(
                    low >= -B and high < B, f"reset: stream indices must be in [{-B}, {B - 1}], got {streams}"
                )
            index = index % B
        fresh = self.layer.initial_state(B)
        restart = lambda s, f: s.index_copy(1, index, f.index_select(1, index))  # noqa: E731
        self.state = map_state(restart, self.state, fresh)

    def detach(self) -> None:
        """Cut the graph behind the state (truncated BPTT): later backward passes stop here."""
        if self.state is not None:
            self.state = map_state(lambda s: s.detach(), self.state)

    def _fields(self) -> tuple[Tensor, ...]:
        return tuple(self.state) if isinstance(self.state, tuple) else (self.state,)

    def extra_repr(self) -> str:
        return "no state" if self.state is None else f"{self._fields()[0].shape[1]} streams"


def _check_lengths(lengths: Tensor | Sequence[int], B: int, T: int, device: torch.device) -> Tensor:
    lengths = torch.as_tensor(lengths)
    check(
        lengths.dim() == 1 and lengths.numel() == B and not lengths.is_floating_point()
        and lengths.dtype != torch.bool,
        f"Stateful: lengths must be a 1-D integer tensor of shape ({B},), got {lengths.dtype} of shape "
        f"{tuple(lengths.shape)}",
    )  # fmt: skip
    if B:
        low, high = int(lengths.min()), int(lengths.max())
        check(
            low >= 0 and high <= T,
            f"Stateful: lengths must be in [0, {T}] (the chunk's steps), got {low}..{high}",
        )
    return lengths.to(device=device, dtype=torch.long)


__all__ = ["Stateful"]
