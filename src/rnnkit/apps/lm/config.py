"""The language model's configs: its shape, and the presets (a model and how to train it).

"quick" is the README's main job: about two minutes on 2 CPU cores; "best" trains a bigger model for a
30-minute budget (issue 5's bar for tinyshakespeare). Torch-free: ``rnnkit train lm --help`` reads the
flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...configs import cell_names, option
from ...errors import check_bool, check_int, check_probability
from ...training.config import TrainConfig


@dataclass
class LMConfig:
    """The model's shape. Validated on construction, saved in every run directory. ``vocab_size`` (V)
    comes from the tokenizer. The minimal RNNs "mingru" / "minlstm" (Feng et al. 2024) read only the
    input in their gates, so a whole chunk trains by a parallel scan, and need several layers for a
    good model. Tied weights: Press & Wolf 2017, https://arxiv.org/abs/1608.05859."""

    vocab_size: int | None = option(None, "V, the number of token ids (the tokenizer's)", cli=False)
    cell: str = option("lstm", "the recurrent cell: %(choices)s", choices=cell_names)
    hidden: int = option(128, "H, the hidden size; also the embedding size (so the readout can be tied)",
                         minimum=1)  # fmt: skip
    layers: int = option(1, "K, stacked recurrent layers", minimum=1)
    dropout: float = option(0.0, "dropout between layers and before the readout")
    tie_weights: bool = option(False, "tie readout and embedding: fewer parameters, usually a better "
                               "perplexity", action="store_true")  # fmt: skip

    def __post_init__(self) -> None:
        if self.vocab_size is not None:  # complete (not a preset): check the cell against the registry too
            check_int("vocab_size", self.vocab_size)
        if self.vocab_size is not None and self.cell not in cell_names():
            raise ValueError(f"cell must be one of {sorted(cell_names())}, got {self.cell!r}")
        check_int("hidden", self.hidden)
        check_int("layers", self.layers)
        check_probability("dropout", self.dropout)
        check_bool("tie_weights", self.tie_weights)


PRESETS: dict[str, tuple[LMConfig, TrainConfig]] = {
    "quick": (
        LMConfig(cell="lstm", hidden=256, layers=1, dropout=0.0),
        TrainConfig(steps=2500, batch_size=32, seq_len=64, lr=3e-3, eval_every=500, checkpoint_every=500),
    ),
    "best": (
        LMConfig(cell="lstm", hidden=512, layers=2, dropout=0.2),
        TrainConfig(steps=100000, minutes=30, batch_size=32, seq_len=128, lr=2e-3, eval_every=500,
                    checkpoint_every=500),
    ),
}  # fmt: skip
TOKENIZERS = ("char", "word")  # what `rnnkit train lm --tokenizer` offers
