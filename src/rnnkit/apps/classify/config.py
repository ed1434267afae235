"""The classifier's configs: its shape, and a preset per model kind (a model and how to train it).

The rnn preset is measured in docs/results.md ("Japanese Vowels"); the mlp one is the simple baseline.
Torch-free: ``rnnkit train classify --help`` reads the flags from these fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...configs import option
from ...errors import check_bool, check_int, check_probability
from ...training.config import TrainConfig

POOLS = ("last", "mean", "max", "attention")
MODELS = ("rnn", "mlp")


def cell_names() -> tuple[str, ...]:
    """The registry's full-recurrence cells (a classifier reads each series once, no parallel scan)."""
    from ...cells import registry

    return registry.names(minimal=False)


@dataclass
class ClassifierConfig:
    """The classifier's shape. Validated on construction, saved in every run directory. ``input_size``
    (C), ``num_classes`` (K) and, for the MLP, ``max_len`` come from the data; a preset leaves them out.
    """

    input_size: int | None = option(None, "C, values per time step", cli=False)
    num_classes: int | None = option(None, "K classes", cli=False)
    model: str = option("rnn", "rnn: recurrent stack + pooling; mlp: the baseline on the flattened padded "
                        "series", choices=MODELS)  # fmt: skip
    cell: str = option("gru", "the recurrent cell: %(choices)s (rnn model only)", choices=cell_names)
    hidden: int = option(64, "H, the recurrent hidden size (mlp: units per hidden layer)", minimum=1)
    layers: int = option(1, "stacked recurrent layers (mlp: hidden layers)", minimum=1)
    bidirectional: bool = option(True, "read each series both ways (rnn model only)", action="optional")
    pool: str = option("mean", "how the outputs over time become one vector (rnn model only)", choices=POOLS)
    dropout: float = option(0.0, "dropout between layers and before the readout (mlp: on its input too)")
    input_noise: float = option(0.0, "training only: Gaussian noise of this std added to the normalised "
                                "inputs, a regulariser for small datasets")  # fmt: skip
    max_len: int | None = option(None, "mlp only: the length every series is padded (or cut) to", cli=False)

    def __post_init__(self) -> None:
        complete = self.input_size is not None  # not a preset: the data's fields and the cell too
        if complete:
            check_int("input_size", self.input_size)
            check_int("num_classes", self.num_classes, minimum=2)
        cells = cell_names() if complete else (self.cell,)
        for name, value, choices in (("model", self.model, MODELS), ("cell", self.cell, cells),
                                     ("pool", self.pool, POOLS)):  # fmt: skip
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        check_int("hidden", self.hidden)
        check_int("layers", self.layers)
        check_bool("bidirectional", self.bidirectional)
        check_probability("dropout", self.dropout)
        if not (isinstance(self.input_noise, (int, float)) and 0 <= self.input_noise < math.inf):
            raise ValueError(f"input_noise must be a number >= 0, got {self.input_noise!r}")
        if complete and self.model == "mlp":
            if self.max_len is None:
                raise ValueError("the mlp model needs max_len, the length series are padded to")
            check_int("max_len", self.max_len)


PRESETS: dict[str, tuple[ClassifierConfig, TrainConfig]] = {
    "rnn": (
        ClassifierConfig(model="rnn", cell="gru", hidden=96, layers=2, bidirectional=True, pool="mean",
                         dropout=0.0),
        TrainConfig(steps=800, batch_size=32, lr=5e-3, schedule="cosine", warmup_steps=30, eval_every=50,
                    checkpoint_every=100),
    ),
    "mlp": (
        ClassifierConfig(model="mlp", hidden=500, layers=3, dropout=0.1),
        TrainConfig(steps=1000, batch_size=32, lr=1e-3, eval_every=100, checkpoint_every=500),
    ),
}  # fmt: skip
