"""Reproducible minibatches that resume exactly: which examples a step sees depends only on the seed and
the step's place, so a task's ``state_dict`` is two integers, not a generator's internals."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import check_int


class EpochBatches:
    """Minibatches of indices into ``n`` examples, each epoch a fresh permutation.

    Epoch e's permutation comes from ``torch.Generator().manual_seed(seed + e)``; the batches are its
    consecutive slices, the last one shorter when ``batch_size`` does not divide ``n``. The state is
    ``(epoch, position)``.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0) -> None:
        self.n = check_int("number of examples", n)
        self.batch_size = check_int("batch_size", batch_size)
        self.seed = check_int("seed", seed, minimum=0)
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def next(self) -> Tensor:
        """The next batch of indices, (b,) int64, b <= batch_size."""
        if self.position >= self.n:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation()
        batch = self._order[self.position : self.position + self.batch_size]
        self.position += len(batch)
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "n": self.n, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if (state["n"], state["seed"]) != (self.n, self.seed):
            raise ValueError(
                f"batch state is for {state['n']} examples with seed {state['seed']}, "
                f"not {self.n} with seed {self.seed}"
            )
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation()


def random_windows(length: int, window: int, count: int, seed: int, step: int) -> Tensor:
    """``count`` random start offsets of windows of ``window`` items in a sequence of ``length``, drawn
    from a generator seeded by ``(seed, step)``: the same step always gets the same windows. (count,)"""
    if length < window:
        raise ValueError(f"a sequence of {length} items is shorter than one window of {window}")
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, length - window + 1, (count,), generator=g)
