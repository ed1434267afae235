"""A sequence tagger: one label per time step (many-to-many, aligned).

    tokens (T, B) -> embedding (T, B, E) -> Recurrent, uni- or bidirectional (T, B, D*H)
                  -> dropout -> linear readout (T, B, K) scores for K tags at every step

A unidirectional tagger labels step t from tokens 0..t only; a bidirectional one reads the whole
sequence, so the label of t can depend on what comes after it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...cells.registry import CELLS
from ...layers.recurrent import Recurrent
from .config import TaggerConfig


class SequenceTagger(nn.Module):
    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("TaggerConfig.vocab_size must be set (it is the tokenizer's vocabulary size)")
        self.config = config
        H = config.hidden
        self.embedding = nn.Embedding(config.vocab_size, H)
        between = config.dropout if config.layers > 1 else 0.0
        self.rnn = Recurrent(CELLS[config.cell].build(H, H), num_layers=config.layers,
                             bidirectional=config.bidirectional, dropout=between)  # fmt: skip
        self.dropout = nn.Dropout(config.dropout)
        self.readout = nn.Linear(H * (2 if config.bidirectional else 1), config.num_tags)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """tokens (T, B) int64, optional true lengths (B,) -> tag scores (T, B, K) (zero input past a
        sequence's end: ignore those steps)."""
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be (T, B) int64, got shape {tuple(tokens.shape)} and dtype {tokens.dtype}"
            )
        y, _ = self.rnn(self.embedding(tokens), lengths=lengths)  # (T, B, D*H)
        return self.readout(self.dropout(y))  # (T, B, K)
