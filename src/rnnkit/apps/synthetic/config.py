"""The synthetic tasks' configs: which task, the model's cell and size, the sequence length, and the
training preset. Torch-free: ``rnnkit train task --help`` reads the flags from these fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...configs import option
from ...training.config import TrainConfig

# (input: features or vocabulary, outputs, token input?, readout at every step?, loss)
TASK_SHAPES: dict[str, tuple[int, int, bool, bool, str]] = {
    "adding": (2, 1, False, False, "mse"),
    "copy": (10, 9, True, True, "ce"),
    "binary_addition": (2, 2, False, True, "ce"),
    "parity": (1, 2, False, True, "ce"),
    "sine": (1, 1, False, True, "mse"),
}
# the registry's lstm, gru and rnn, and irnn: a ReLU Elman cell started from the identity (Le et al. 2015)
CELL_NAMES = ("lstm", "gru", "rnn", "irnn")


@dataclass
class SyntheticConfig:
    """A fresh model on one synthetic task."""

    task: str = option("adding", "the task", choices=tuple(TASK_SHAPES), cli=False)
    cell: str = option("lstm", "the recurrent cell", choices=CELL_NAMES)
    hidden: int = option(64, "hidden units", minimum=1)
    length: int = option(100, "sequence length T (copy: the delay)")


MODEL = SyntheticConfig()
TRAIN = TrainConfig(steps=2000, batch_size=64, lr=1e-3, eval_every=200, checkpoint_every=1000)
