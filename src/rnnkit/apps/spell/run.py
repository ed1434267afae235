"""One-to-many, end to end: spelling the digit in an image.

The 8x8 handwritten digits that scikit-learn ships (1,797 images, from the UCI optical digits set) go
to the word for the digit ("seven"), character by character, with :class:`~rnnkit.models.speller.Speller`.
A stratified quarter of the images (the same one for every seed) is held out. ``rnnkit train spell``
is a thin shell over :func:`train_speller`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from ...configs import as_config
from ...errors import InputError
from ...options import field_names, options_of, route
from ...training.config import TrainConfig
from ...training.rundir import check_fresh
from ...training.trainer import fit
from .config import MODEL, TRAIN, SpellerConfig
from .model import EOS, Speller
from .task import WORDS, SpellTask, masked_loss, targets_for

PRESET = (MODEL, TRAIN)  # the preset: the model and how to train it (see config.py)


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


def train_speller(
    out: str | os.PathLike[str],
    model_options: SpellerConfig | dict[str, Any],
    train_options: TrainConfig | dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a speller on the digits; report held-out exact match and a few of its spellings."""
    x_train, y_train, x_test, y_test = load_digits_split()
    alphabet = sorted(set("".join(WORDS)))
    shape = as_config(SpellerConfig, model_options, features=64, alphabet=alphabet,
                      max_length=max(map(len, WORDS)))  # fmt: skip
    model = Speller(shape)
    config = as_config(TrainConfig, train_options)
    task = SpellTask(model, (x_train, y_train), (x_test, y_test), config.batch_size, config.seed)
    if not resume:
        check_fresh(out)
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
    model_opts, train_opts = options_of(MODEL), options_of(TRAIN)
    route(overrides, (model_opts, {"cell", "hidden", "dropout"}), (train_opts, field_names(TrainConfig)))
    return model_opts, train_opts


__all__ = ["EOS", "WORDS", "SpellTask", "load_digits_split", "masked_loss", "options", "targets_for",
           "train_speller"]  # fmt: skip
