"""The encoder-decoder's configs: its shape, the pairs to draw, and a preset per task.

Sized to train in a few minutes on one CPU core (docs/results.md has the measured times and scores):
numbers about 2 minutes, addition (17 epochs of 45,000 pairs, as Keras' example needs many epochs)
about 4. Torch-free: ``rnnkit train seq2seq --help`` reads the flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...configs import cell_names, option
from ...errors import check_bool, check_int, check_probability
from ...training.config import TrainConfig

EOS = 2  # the target vocabulary's </s>: ids 0, 1, 2 are padding, <s>, </s>


def decoders() -> tuple[str, ...]:
    """ "none" (the context vector only, Sutskever 2014) and every attention of :mod:`rnnkit.layers`."""
    from ...layers.attention import ATTENTIONS

    return ("none", *ATTENTIONS)


@dataclass
class Seq2SeqConfig:
    """The model's shape. Validated on construction, saved in every run directory. The vocabulary sizes
    come from the data (the target's includes padding, ``<s>`` and ``</s>``); a preset leaves them out."""

    src_vocab: int | None = option(None, "the source vocabulary's size", cli=False)
    tgt_vocab: int | None = option(None, "the target vocabulary's size", cli=False)
    cell: str = option("lstm", "the recurrent cell of the encoder and the decoder: %(choices)s",
                       choices=cell_names)  # fmt: skip
    hidden: int = option(128, "H, the hidden size of both", minimum=1)
    embed: int | None = option(None, "E, the embedding size of both (default H)", cli=False)
    layers: int = option(1, "stacked layers of the encoder and of the decoder", minimum=1)
    bidirectional: bool = option(False, "a bidirectional encoder (the decoder reads one way)",
                                 action="store_true")  # fmt: skip
    attention: str = option("additive", "none: the context vector only (Sutskever 2014); additive "
                            "(Bahdanau 2015); dot or general (Luong 2015)", choices=decoders)  # fmt: skip
    dropout: float = option(0.0, "dropout between stacked layers and before the readout")

    def __post_init__(self) -> None:
        if self.src_vocab is not None:  # complete (not a preset): the data's sizes and the registry's names
            check_int("src_vocab", self.src_vocab, minimum=2)
            check_int("tgt_vocab", self.tgt_vocab, minimum=EOS + 2)
            if self.cell not in cell_names():
                raise ValueError(f"cell must be one of {sorted(cell_names())}, got {self.cell!r}")
            if self.attention not in decoders():
                raise ValueError(f"attention must be one of {decoders()}, got {self.attention!r}")
        check_int("hidden", self.hidden)
        if self.embed is not None:
            check_int("embed", self.embed)
        check_int("layers", self.layers)
        check_bool("bidirectional", self.bidirectional)
        if self.attention == "dot" and self.bidirectional:
            raise ValueError(
                "attention='dot' scores q . m, so it needs the encoder's output size (2H when bidirectional) "
                "to equal the decoder's H: use attention='general' with bidirectional=True"
            )
        check_probability("dropout", self.dropout)


@dataclass
class PairsConfig:
    """The pairs a task draws (saved in the run directory's data.json as the generator's options)."""

    n_train: int = option(40000, "training pairs to draw", flag="--train-pairs", minimum=1)
    n_valid: int = option(1000, "validation pairs, scored during training", flag="--valid-pairs", minimum=1)
    n_test: int = option(2000, "held-out test pairs", flag="--test-pairs", minimum=1)
    digits: int = option(6, "numbers: below 10^N (up to 12 = hundreds of billions); addition: operands of "
                         "up to N digits", minimum=1)  # fmt: skip

    def generator_options(self, task: str) -> dict[str, Any]:
        """The keyword arguments of :data:`rnnkit.data.pairs.TASKS` ``[task]``."""
        digits = "max_digits" if task == "numbers" else "digits"
        return {"n_train": self.n_train, "n_valid": self.n_valid, "n_test": self.n_test, digits: self.digits}


PRESETS: dict[str, tuple[Seq2SeqConfig, TrainConfig, PairsConfig]] = {
    "numbers": (
        Seq2SeqConfig(cell="lstm", hidden=128, attention="additive"),
        TrainConfig(steps=2000, batch_size=64, lr=3e-3, schedule="cosine", min_lr_ratio=0.05, eval_every=500,
                    checkpoint_every=500),
        PairsConfig(n_train=40000, n_valid=1000, n_test=2000, digits=6),
    ),
    "addition": (
        Seq2SeqConfig(cell="lstm", hidden=128, attention="additive"),
        TrainConfig(steps=12000, batch_size=64, lr=3e-3, schedule="cosine", min_lr_ratio=0.05,
                    eval_every=1000, checkpoint_every=1000),
        PairsConfig(n_train=45000, n_valid=1000, n_test=4000, digits=3),
    ),
}  # fmt: skip
