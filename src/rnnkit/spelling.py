"""One-to-many, end to end: spelling the digit in an image.

The 8x8 handwritten digits that scikit-learn ships (1,797 images, from the UCI optical digits set) go
to the word for the digit ("seven"), character by character, with :class:`~rnnkit.models.speller.Speller`.
A stratified quarter of the images (the same one for every seed) is held out. ``rnnkit train spell``
is a thin shell over :func:`train_speller`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError
from .models.speller import EOS, Speller, SpellerConfig
from .options import field_names, route
from .training.batches import EpochBatches
from .training.tasks import evaluating
from .training.trainer import TrainConfig, fit

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PRESET: tuple[dict[str, Any], dict[str, Any]] = (
    {"cell": "gru", "hidden": 128, "dropout": 0.2},
    {"steps": 1000, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4, "eval_every": 250,
     "checkpoint_every": 500},
)  # fmt: skip


def load_digits_split(held_out: float = 0.25, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_train (N, 64), y_train (N,), x_test, y_test)``: pixels scaled to [0, 1], a stratified split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # a dependency, but say what to do if it is missing
        raise InputError("the digits come from scikit-learn: pip install scikit-learn") from e
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # (1797, 64)
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for digit in range(10):  # the same fraction of every class
        members = (y == digit).nonzero().squeeze(1)
        chosen = members[torch.randperm(len(members), generator=g)[: round(held_out * len(members))]]
        test[chosen] = True
    return x[~test], y[~test], x[test], y[test]


class SpellTask:
    """Shuffled minibatches of (image, word); the loss is the per-step cross-entropy summed over the
    word's characters and its <eos> (padding ignored), averaged over the batch."""

    def __init__(self, model: Speller, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                 batch_size: int, seed: int) -> None:  # fmt: skip
        self.x, self.y = train
        self.tx, self.ty = test
        self.targets, self.mask = targets_for(model, self.y)
        self.test_targets, self.test_mask = targets_for(model, self.ty)
        self.batches = EpochBatches(len(self.y), batch_size, seed)

    def shard(self, rank: int, world: int) -> None:
        raise InputError("rnnkit train spell runs in one process (the data set is 1,797 images)")

    def train_step(self, model: nn.Module, teacher_forcing: float) -> tuple[Tensor, dict[str, float]]:
        idx = self.batches.next()
        targets, mask = self.targets[:, idx], self.mask[:, idx]
        scores = model(self.x[idx], targets, teacher_forcing=teacher_forcing)  # (L, b, V)
        loss = masked_loss(scores, targets, mask) / len(idx)
        return loss, {"items": float(mask.sum())}

    def after_backward(self) -> None:
        pass

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        with evaluating(model):
            scores = model(self.tx, self.test_targets)
            loss = masked_loss(scores, self.test_targets, self.test_mask) / len(self.ty)
            words = model.spell(self.tx)
        exact = sum(w == WORDS[int(d)] for w, d in zip(words, self.ty, strict=True)) / len(words)
        return {"loss": loss.item(), "exact_match": exact}

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])


def targets_for(model: Speller, digits: Tensor) -> tuple[Tensor, Tensor]:
    """Target ids (L, N) and a mask (L, N), True up to and including each word's <eos>."""
    words = [WORDS[int(d)] for d in digits]
    targets = model.encode_words(words)  # (L, N)
    lengths = torch.tensor([len(w) + 1 for w in words])
    mask = torch.arange(targets.shape[0])[:, None] < lengths[None, :]
    return targets, mask


def masked_loss(scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    per_step = F.cross_entropy(scores.flatten(0, 1), targets.flatten(), reduction="none")
    return (per_step * mask.flatten()).sum()


def train_speller(
    out: str | os.PathLike[str],
    model_options: dict[str, Any],
    train_options: dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a speller on the digits; report held-out exact match and a few of its spellings."""
    x_train, y_train, x_test, y_test = load_digits_split()
    alphabet = sorted(set("".join(WORDS)))
    model = Speller(SpellerConfig(features=64, alphabet=alphabet, max_length=max(map(len, WORDS)),
                                  **model_options))  # fmt: skip
    config = TrainConfig(**train_options)
    task = SpellTask(model, (x_train, y_train), (x_test, y_test), config.batch_size, config.seed)
    if not resume and (Path(out) / "checkpoints").exists():
        raise InputError(f"{out} already holds checkpoints: pass --resume, or choose a new --out")
    report = fit(model, task, config, out, resume=resume, progress=progress)
    scores = task.evaluate(model)
    model.eval()
    words = model.spell(x_test)
    wrong = [(WORDS[int(d)], w) for w, d in zip(words, y_test, strict=True) if w != WORDS[int(d)]]
    return {
        **{k: v for k, v in report.items() if k != "valid_loss"},
        "test_loss": scores["loss"],
        "exact_match": scores["exact_match"],
        "test_examples": len(y_test),
        "train_examples": len(y_train),
        "errors": [{"truth": t, "spelled": w} for t, w in wrong[:20]],
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def options(**overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preset's model and training options with every non-None override applied."""
    model_opts, train_opts = dict(PRESET[0]), dict(PRESET[1])
    route(overrides, (model_opts, {"cell", "hidden", "dropout"}), (train_opts, field_names(TrainConfig)))
    return model_opts, train_opts


__all__ = ["EOS", "WORDS", "SpellTask", "load_digits_split", "options", "train_speller"]
