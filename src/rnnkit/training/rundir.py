"""The run directory's rules, in one place: a fresh run never writes over another run's checkpoints; its
JSON files are read so that a damaged or hand-edited one is named; a resumed run keeps its settings, and
a difference is named key by key (only :data:`FREE` fields, which cannot change the run's numbers, may
change)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

CLI_HINT = "pass --resume, or choose a new --out"
JSON_FILES = ("config.json", "classes.json", "vocab.json", "tokenizer.json", "data.json")
# TrainConfig fields that may differ on resume: how long it goes on, how often it saves, what it draws
FREE = ("steps", "minutes", "plots", "log_every", "checkpoint_every", "keep_last", "tensorboard")


def check_fresh(run_dir: str | os.PathLike[str], hint: str = CLI_HINT) -> None:
    """Refuse to start a fresh run in ``run_dir`` if it already holds checkpoints (say how to go on)."""
    if (Path(run_dir) / "checkpoints").exists():
        raise InputError(f"{run_dir} already holds checkpoints: {hint}")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file's content; a missing, unreadable or malformed file is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); damaged") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def check_json_files(run_dir: str | os.PathLike[str]) -> None:
    """Every JSON file of the run parses (and ``config.json`` is an object): else an error naming it."""
    d = Path(run_dir)
    for name in JSON_FILES:
        if (d / name).exists():
            content = read_json(d / name)
            if name == "config.json" and not (isinstance(content, dict) and "train" in content):
                raise InputError(f"{d / name}: not a run's config (expected an object with 'train', 'model')")


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
