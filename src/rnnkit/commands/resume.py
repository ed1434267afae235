"""``--resume`` needs only ``--out``: the run's saved settings are the defaults, options given again must
agree with them, and a difference is named key by key. Only what cannot change the numbers of the run
may change (:data:`rnnkit.training.rundir.FREE`: how long it goes on, how often it saves, what it draws).
The comparison is :func:`rnnkit.training.rundir.check_same`, when the trainer resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from ..training.rundir import read_json

# a saved field -> the option's dest, where the two names differ
ALIASES = {"max_digits": "digits"}
# plain options that share a saved field's name but not its meaning (reset_on: a token id, the option its
# text; vocab_size: the model's, --vocab-size a word limit)
_NOT_OPTIONS = {"reset_on", "vocab_size"}


def fill_from_saved(args: argparse.Namespace, run_dir: str | os.PathLike[str]) -> None:
    """Give every option of ``args`` that was not given the run's saved value: a config field's flag
    (absent from ``args`` when not typed) and a plain option (None when not typed)."""
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
    fields = _config_fields(args)
    for section in sections:
        for field, value in section.items():
            dest = ALIASES.get(field, field)
            if dest in fields:
                if not hasattr(args, dest):
                    setattr(args, dest, value)
            elif dest not in _NOT_OPTIONS and getattr(args, dest, "absent") is None:
                setattr(args, dest, value)


def _config_fields(args: argparse.Namespace) -> set[str]:
    """The command-line fields of the configs the command builds (its ``configs`` default)."""
    configs = getattr(args, "configs", None)
    if configs is None:
        return set()
    return {f.name for c in configs(args) for f in dataclasses.fields(c) if f.metadata.get("cli", True)}
