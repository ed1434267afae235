"""Many-to-one over tokens: a class for each text ("the sentiment of a phrase").

:class:`TextClassifier` embeds token ids, runs a :class:`~rnnkit.layers.Recurrent` stack (any registered
cell, one or both directions) over the true length of every text, pools the outputs over time into one
vector, and reads out class scores::

    e_t = E[x_t]                                  embedding                      (B, T, E)
    y_t = Recurrent(e)_t                          outputs, zero past each end    (B, T, D)
    z   = pool(y_1 .. y_L)                        last | mean | max | attention  (B, D)
    logits = W dropout(z) + b                                                    (B, K)

Attention pooling is the series classifier's :class:`~rnnkit.apps.classify.model.AttentionPool`
(additive attention with one learned query, Yang et al. 2016, https://aclanthology.org/N16-1174,
section 2.2): ``a_t = softmax_t(v . tanh(W y_t + b))``, ``z = sum_t a_t y_t``; padded steps get
weight exactly 0. :meth:`TextClassifier.attention` returns the weights a (B, T) for inspection.

Shape legend: B batch, T padded length (tokens), V vocabulary, E embedding size, H hidden size,
D = H or 2H (bidirectional), K classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...cells import registry
from ...cells.base import State
from ...errors import InputError
from ...layers.recurrent import Recurrent
from .config import TextClassifierConfig
from .model import AttentionPool, _mask, pool

__all__ = ["TextClassifier", "TextClassifierConfig"]


def _check_tokens(tokens: Tensor, lengths: Tensor | None, vocab_size: int) -> Tensor:
    """Check (B, T) token ids and return the (B,) lengths (T for every text if omitted)."""
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
        what = (
            f"{tokens.dtype} of shape {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens)
        )
        raise InputError(f"the text classifier expects integer token ids (B, T), got {what}")
    B, T = tokens.shape
    if B and T and not (int(tokens.min()) >= 0 and int(tokens.max()) < vocab_size):
        raise InputError(
            f"token ids must be in [0, {vocab_size}), got {int(tokens.min())}..{int(tokens.max())}"
        )
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=tokens.device)
    lengths = torch.as_tensor(lengths, device=tokens.device)
    if lengths.shape != (B,) or lengths.is_floating_point():
        raise InputError(
            f"lengths must be ({B},) integers, got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    if B and not (int(lengths.min()) >= 1 and int(lengths.max()) <= T):
        raise InputError(f"lengths must be in [1, {T}], got {int(lengths.min())}..{int(lengths.max())}")
    return lengths.long()


class TextClassifier(nn.Module):
    """embed -> dropout -> Recurrent over the true lengths -> pool -> dropout -> linear readout.

    ``forward(tokens (B, T), lengths (B,))`` returns ``(logits (B, K), state)``: unnormalised class
    scores and the recurrent stack's final state. Tokens past a text's length are never read.
    """

    def __init__(self, config: TextClassifierConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.vocab_size is None or c.num_classes is None:
            raise InputError("TextClassifier needs vocab_size and num_classes (they come from the data)")
        self.embedding = nn.Embedding(c.vocab_size, c.embed)
        self.rnn = Recurrent(
            registry.build(c.cell, c.embed, c.hidden), num_layers=c.layers, bidirectional=c.bidirectional,
            dropout=c.dropout if c.layers > 1 else 0.0, batch_first=True,
        )  # fmt: skip
        D = self.rnn.output_size
        self.attention_pool = AttentionPool(D) if c.pool == "attention" else None
        self.dropout = nn.Dropout(c.dropout)
        self.readout = nn.Linear(D, c.num_classes)

    def encode(self, tokens: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor, State]:
        """The recurrent outputs (B, T, D) (zero past each end), the checked lengths (B,), the state."""
        lengths = _check_tokens(tokens, lengths, self.config.vocab_size)  # (B,)
        e = self.dropout(self.embedding(tokens))  # (B, T, E)
        y, state = self.rnn(e, lengths=lengths)  # (B, T, D)
        return y, lengths, state

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        y, lengths, state = self.encode(tokens, lengths)  # (B, T, D), (B,)
        z = pool(y, lengths, self.config.pool, self.config.bidirectional, self.attention_pool)  # (B, D)
        return self.readout(self.dropout(z)), state  # (B, K)

    def attention(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The attention weights (B, T) over each text's tokens: they sum to 1 over the first
        ``lengths[b]`` tokens and are 0 after. Only for ``pool="attention"``."""
        if self.attention_pool is None:
            raise InputError(
                f"this model pools by {self.config.pool!r}; attention weights exist only with "
                "pool='attention'"
            )
        y, lengths, _ = self.encode(tokens, lengths)
        return self.attention_pool.weights(y, _mask(lengths, y.shape[1]))  # (B, T)
