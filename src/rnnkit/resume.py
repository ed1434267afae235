"""``--resume`` needs only ``--out``: the run's saved settings are the defaults, options given again must
agree with them, and a difference is named key by key. Only what cannot change the numbers of the run
may change (:data:`FREE`: how long it goes on, how often it saves, what it draws).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .errors import InputError
from .rundir import read_json

# TrainConfig fields that may differ on resume
FREE = ("steps", "minutes", "plots", "log_every", "checkpoint_every", "keep_last", "tensorboard")
# config field -> the CLI option's dest, where the two names differ
ALIASES = {"batch_size": "batch", "warmup_steps": "warmup", "n_train": "train_pairs",
           "n_valid": "valid_pairs", "n_test": "test_pairs", "max_digits": "digits"}  # fmt: skip
# fields stored in another form than the option of that name takes (reset_on: a token id, the option its text)
_NOT_OPTIONS = {"reset_on", "vocab_size"}  # vocab_size: the model's; --vocab-size: a word limit


def fill_from_saved(args: argparse.Namespace, run_dir: str | os.PathLike[str]) -> None:
    """Set every option of ``args`` that was not given (None) to the run's saved value."""
    run_dir = Path(run_dir)
    saved = read_json(run_dir / "config.json")
    sections = [saved.get("train") or {}, saved.get("model") or {}]
    data = read_json(run_dir / "data.json") if (run_dir / "data.json").is_file() else {}
    if isinstance(data, dict):
        sections.append(data.get("options") or {})
        for key in ("data", "task"):  # the corpus of `train lm`/`train tag`, the task of `train seq2seq`
            if key in data and getattr(args, key, "absent") is None:
                setattr(args, key, data[key])
    if (run_dir / "classes.json").is_file():
        classes = read_json(run_dir / "classes.json")
        for key in ("train", "test"):
            if isinstance(classes, dict) and classes.get(key) and getattr(args, key, "absent") is None:
                setattr(args, key, classes[key])
    for section in sections:
        for field, value in section.items():
            dest = ALIASES.get(field, field)
            if field in _NOT_OPTIONS or not hasattr(args, dest) or getattr(args, dest) is not None:
                continue
            setattr(args, dest, value)
    train = sections[0]
    if "clip_norm" in train and train["clip_norm"] is None and getattr(args, "clip_norm", 0) is None:
        args.clip_norm = 0  # the option's way of saying "off"


def check_same(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse to resume the run of ``path`` (its config.json) with settings ``new`` unlike its ``old``."""
    diffs = differences(old, new)
    if diffs:
        free = ", ".join(f"--{k.replace('_', '-')}" for k in FREE if k not in ("plots", "log_every"))
        raise InputError(
            f"{path}: the run was started with other settings: {'; '.join(diffs)} "
            f"(leave an option out to keep the saved value; only {free} may change)"
        )


def differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: saved A, given B"`` for every leaf that differs (``FREE`` training fields left out)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "(absent)"), new.get(key, "(absent)")
        name = f"{prefix}{key}"
        if prefix == "train." and key in FREE:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(differences(a, b, f"{name}."))
        elif a != b:
            out.append(f"{name}: saved {a!r}, given {b!r}")
    return out
