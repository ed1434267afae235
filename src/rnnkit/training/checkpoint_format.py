"""The checkpoint format: file names, limits, the error, the loaded checkpoint, and the names and
pointers of a run's ``checkpoints/`` directory (see :mod:`rnnkit.training.checkpoint` for the layout)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import InputError

FORMAT = "rnnkit.checkpoint"


VERSION = 1  # bump when the layout changes; readers refuse versions newer than theirs


WEIGHTS, STATE_TENSORS, STATE_JSON, MANIFEST = (
    "weights.safetensors",
    "state.safetensors",
    "state.json",
    "manifest.json",
)


FILES = (WEIGHTS, STATE_TENSORS, STATE_JSON)  # what a manifest lists, and all it may list


POINTERS = ("latest", "best")


_NAME = re.compile(r"step-(\d{6,})")  # checkpoint directory names; also all a pointer may hold


_MAX_DEPTH = 100  # nesting of the training state (deeper is a cycle, or a hostile state.json)


_MAX_MANIFEST = 1 << 20  # bytes; a manifest is a few hundred


_MAX_POINTER = 256


_MAX_HEADER = 100 << 20  # safetensors' own limit on its JSON header


class CheckpointError(InputError):
    """A checkpoint is missing, incomplete, corrupt or not an rnnkit checkpoint.

    The message starts with the file (or directory) and says what is wrong with it.
    """


@dataclass
class Checkpoint:
    """A loaded checkpoint. Tensors are on the CPU; ``path`` is the checkpoint's directory."""

    model_state: dict[str, Tensor]
    train_state: dict[str, Any]
    step: int
    path: Path


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _lstat(path: Path) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None


def _step_of(name: str) -> int:
    return int(name.split("-", 1)[1])


def _checkpoint_names(root: Path) -> list[str]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    return [e.name for e in entries if _NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
