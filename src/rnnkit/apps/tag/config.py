"""The case tagger's configs: its model's shape and the preset (about 2 minutes on 2 CPU cores).

Torch-free: ``rnnkit train tag --help`` reads the flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...configs import cell_names, option
from ...errors import check_bool, check_int, check_probability
from ...training.config import TrainConfig


@dataclass
class TaggerConfig:
    """The tagger's shape; saved in the run directory. ``vocab_size`` comes from the tokenizer."""

    vocab_size: int | None = option(None, "V input token ids (the tokenizer's)", cli=False)
    num_tags: int = option(2, "K labels per step", cli=False)
    cell: str = option("lstm", "the recurrent cell: %(choices)s", choices=cell_names)
    hidden: int = option(128, "H per direction; the embedding has the same size", minimum=1)
    layers: int = option(1, "stacked recurrent layers", minimum=1)
    bidirectional: bool = option(
        True, "read both ways (outputs concatenated, 2H)"
    )  # --bidirectional|--unidirectional
    dropout: float = option(0.0, "dropout between layers and before the readout")

    def __post_init__(self) -> None:
        if self.vocab_size is not None:  # complete (not a preset): check the cell against the registry too
            check_int("vocab_size", self.vocab_size)
        check_int("num_tags", self.num_tags, minimum=2)
        if self.vocab_size is not None and self.cell not in cell_names():
            raise ValueError(f"cell must be one of {sorted(cell_names())}, got {self.cell!r}")
        check_int("hidden", self.hidden)
        check_int("layers", self.layers)
        check_bool("bidirectional", self.bidirectional)
        check_probability("dropout", self.dropout)


# A bidirectional LSTM, 128 per direction: about 2 minutes on 2 CPU cores
MODEL = TaggerConfig(cell="lstm", hidden=128, layers=1, bidirectional=True, dropout=0.0)
TRAIN = TrainConfig(steps=3000, batch_size=32, seq_len=128, lr=3e-3, eval_every=500, checkpoint_every=500)
