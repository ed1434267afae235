"""A sequence tagger: one label per time step (many-to-many, aligned).

    tokens (T, B) -> embedding (T, B, E) -> Recurrent, uni- or bidirectional (T, B, D*H)
                  -> dropout -> linear readout (T, B, K) scores for K tags at every step

A unidirectional tagger labels step t from tokens 0..t only; a bidirectional one reads the whole
sequence, so the label of t can depend on what comes after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...cells.registry import CELLS
from ...errors import check_bool, check_int, check_probability
from ...layers.recurrent import Recurrent


@dataclass
class TaggerConfig:
    """The tagger's shape; saved in the run directory.

    Attributes:
        vocab_size: V input token ids.
        num_tags: K labels per step.
        cell: "lstm", "gru" or "rnn".
        hidden: H per direction; the embedding has the same size.
        layers: stacked recurrent layers.
        bidirectional: read both ways (outputs concatenated, 2H).
        dropout: between layers and before the readout.
    """

    vocab_size: int
    num_tags: int = 2
    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size)
        check_int("num_tags", self.num_tags, minimum=2)
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        check_int("hidden", self.hidden)
        check_int("layers", self.layers)
        check_bool("bidirectional", self.bidirectional)
        check_probability("dropout", self.dropout)


class SequenceTagger(nn.Module):
    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
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
