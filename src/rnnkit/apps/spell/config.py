"""The speller's configs: its shape, and the preset (a GRU decoder, about a minute on 2 CPU cores).

Torch-free: ``rnnkit train spell --help`` reads the flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...configs import cell_names, option
from ...errors import InputError, check_int, check_probability
from ...training.config import TrainConfig


@dataclass
class SpellerConfig:
    """The speller's shape; ``features`` and ``alphabet`` come from the data (a preset leaves them out)."""

    features: int | None = option(None, "F, the input vector's size", cli=False)
    alphabet: list[str] = option(help="the characters of the words (ids 2, 3, ... in this order)", cli=False,
                                 default_factory=list)  # fmt: skip
    cell: str = option("gru", "the decoder's cell: %(choices)s", choices=cell_names)
    hidden: int = option(128, "H, the code's and the decoder's size", minimum=1)
    dropout: float = option(0.1, "dropout in the encoder")
    max_length: int = option(12, "the longest word decoding produces (the <eos> not counted)", cli=False)

    def __post_init__(self) -> None:
        if self.features is not None:  # complete (not a preset): the data's fields and the cell
            check_int("features", self.features)
            if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet):
                raise InputError(f"alphabet must be distinct characters, got {self.alphabet!r}")
            if self.cell not in cell_names():
                raise ValueError(f"cell must be one of {sorted(cell_names())}, got {self.cell!r}")
        check_int("hidden", self.hidden)
        check_probability("dropout", self.dropout)
        check_int("max_length", self.max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 2


MODEL = SpellerConfig(cell="gru", hidden=128, dropout=0.2)
TRAIN = TrainConfig(
    steps=1000, batch_size=64, lr=3e-3, weight_decay=1e-4, eval_every=250, checkpoint_every=500
)
