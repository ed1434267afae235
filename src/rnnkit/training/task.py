"""What the trainer trains: a task hands out batches, computes a loss, evaluates, and saves its place.

:func:`rnnkit.training.trainer.fit` runs any object with the methods of :class:`Task`. Each application
(``rnnkit.apps.<name>.task``) writes its own: truncated BPTT over a corpus, shuffled series, pairs.
A class that inherits from :class:`Task` gets do-nothing versions of the optional methods.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from torch import Tensor, nn


class Task(Protocol):
    """The interface :func:`~rnnkit.training.trainer.fit` trains through.

    ``train_step`` and ``evaluate`` are required; the others default to doing nothing (``shard`` to
    refusing to run in more than one process), so a task in one process with no carried state writes
    only those two, plus ``state_dict``/``load_state_dict`` if it has a place in its data.
    """

    def shard(self, rank: int, world: int) -> None:
        """Train and evaluate on this rank's share of every batch from now on (many processes)."""
        if world > 1:
            raise NotImplementedError(f"{type(self).__name__} runs in one process")

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        """Take the next batch and return its loss (a scalar with a graph, the mean over this rank's
        share) and numbers to log (their means over ranks are logged). ``"items"``, if given, counts
        what throughput is measured in (tokens); it is summed over ranks instead."""
        raise NotImplementedError

    def after_backward(self) -> None:
        """Called after ``loss.backward()``: cut what must not be differentiated through next time."""

    def reset(self) -> None:
        """Forget any carried state (after a skipped non-finite step)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation numbers, over all ranks, including ``"loss"`` (lower is better)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Where the task is (data position, carried state), as tensors and plain values."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go back to where :meth:`state_dict` said the task was."""


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
