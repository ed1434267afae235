"""Attention over an encoder's outputs: additive (Bahdanau) and multiplicative (Luong ``dot``, ``general``).

Every form scores a query against each source position, masks the padding, and returns the weighted
average of the source ("the context") with the weights::

    e_s = score(q, m_s)                     for every source position s < length
    a   = softmax(e)                        (padded positions get exactly 0)
    c   = sum_s a_s m_s

    additive (Bahdanau et al. 2015, https://arxiv.org/abs/1409.0473, appendix A.1.2):
        score(q, m) = v^T tanh(W_q q + W_m m)
    dot      (Luong et al. 2015, https://arxiv.org/abs/1508.04025, section 3.1, eq. 8):
        score(q, m) = q^T m
    general  (Luong et al. 2015, eq. 8):
        score(q, m) = q^T W_a m

Shape legend: B batch, S source positions, Q query size, M memory (encoder output) size, A the additive
form's hidden size.

The part of the score that depends on the source alone (``W_m m`` for additive, ``W_a m`` for general) is
computed once per sequence by :meth:`Attention.prepare`, not once per decoder step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import check

ATTENTIONS = ("additive", "dot", "general")


class Memory(NamedTuple):
    """What the decoder attends over, batch-first. ``keys`` are the prepared memory (see
    :meth:`Attention.prepare`); ``mask`` is True at real positions, False at padding."""

    values: Tensor  # (B, S, M)
    keys: Tensor  # (B, S, A) additive, (B, S, Q) general, (B, S, M) dot
    mask: Tensor  # (B, S) bool

    def select(self, index: Tensor) -> Memory:
        """The rows ``index`` (N,) of every field: (N, S, ...)."""
        return Memory(*(f.index_select(0, index) for f in self))


class Attention(nn.Module):
    """Score a query against every source position and average the source by the softmax of the scores.

    Args:
        kind: "additive", "dot" or "general" (see the module docstring for the equations).
        query_size: Q, the decoder's hidden size.
        memory_size: M, the encoder's output size (2H for a concatenated bidirectional encoder). ``dot``
            needs M == Q.
        hidden_size: A, the additive form's hidden size (default Q).

    Forward:
        query: (B, Q). memory: a :class:`Memory` from :meth:`prepare`.

    Returns:
        ``(context (B, M), weights (B, S))``; the weights sum to 1 over the real positions and are 0 at
        padded ones, so the padding cannot change the result.
    """

    def __init__(self, kind: str, query_size: int, memory_size: int, hidden_size: int | None = None) -> None:
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention scores q . m, so the query size must equal the memory size: got "
                f"query_size={query_size}, memory_size={memory_size} (a bidirectional encoder outputs 2H; "
                "use 'general' there, which learns a (Q, M) matrix)"
            )
        self.kind, self.query_size, self.memory_size = kind, query_size, memory_size
        if kind == "additive":
            A = hidden_size or query_size
            self.query_proj = nn.Linear(query_size, A, bias=False)  # W_q
            self.memory_proj = nn.Linear(memory_size, A)  # W_m (its bias is the b inside the tanh)
            self.v = nn.Linear(A, 1, bias=False)  # v
        elif kind == "general":
            self.memory_proj = nn.Linear(memory_size, query_size, bias=False)  # W_a m, one per position

    def prepare(self, values: Tensor, lengths: Tensor) -> Memory:
        """The memory of a batch: ``values`` (B, S, M), ``lengths`` (B,) -> :class:`Memory`."""
        check(
            values.dim() == 3 and values.shape[-1] == self.memory_size,
            f"attention memory must be (B, S, {self.memory_size}), got {tuple(values.shape)}",
        )
        S = values.shape[1]
        mask = torch.arange(S, device=values.device)[None, :] < lengths.to(values.device)[:, None]  # (B, S)
        keys = values if self.kind == "dot" else self.memory_proj(values)  # (B, S, A | Q | M)
        return Memory(values, keys, mask)

    def score(self, query: Tensor, memory: Memory) -> Tensor:
        """Unnormalised scores e (B, S), before masking."""
        if self.kind == "additive":
            hidden = torch.tanh(self.query_proj(query)[:, None, :] + memory.keys)  # (B, S, A)
            return self.v(hidden).squeeze(-1)  # (B, S)
        return torch.bmm(memory.keys, query[:, :, None]).squeeze(-1)  # (B, S): q . k_s

    def forward(self, query: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        check(
            query.dim() == 2 and query.shape[-1] == self.query_size,
            f"attention query must be (B, {self.query_size}), got {tuple(query.shape)}",
        )
        e = self.score(query, memory).masked_fill(~memory.mask, float("-inf"))  # (B, S)
        a = torch.softmax(e, dim=-1)  # (B, S); exp(-inf) = 0 at padding
        context = torch.bmm(a[:, None, :], memory.values).squeeze(1)  # (B, M)
        return context, a

    def extra_repr(self) -> str:
        return f"{self.kind}, query_size={self.query_size}, memory_size={self.memory_size}"


__all__ = ["ATTENTIONS", "Attention", "Memory"]
