"""Saving a checkpoint: every file written atomically, the directory renamed into place when complete,
the ``latest`` pointer moved after that, and older checkpoints pruned last."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import Tensor

from .. import __version__
from ..errors import InputError, check_bool, check_int
from .atomic import _TEMP, _atomic_write, _fsync_dir, _move_into_place, _temp_name
from .checkpoint_format import (
    FORMAT,
    MANIFEST,
    STATE_JSON,
    STATE_TENSORS,
    VERSION,
    WEIGHTS,
    _checkpoint_names,
    _json_bytes,
    _manifest_body_bytes,
    _sha256,
    _step_of,
)
from .checkpoint_read import _pointer_or_none
from .state_codec import _encode


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    model_state: Mapping[str, Tensor],
    train_state: Mapping[str, Any],
    step: int,
    keep_last: int = 3,
    is_best: bool = False,
) -> Path:
    """Write ``run_dir/checkpoints/step-{step:06d}/``, point ``latest`` at it, and prune old checkpoints.

    Arguments:
        run_dir: the run directory (created if needed).
        model_state: the model's tensors, e.g. ``model.state_dict()``.
        train_state: everything else needed to resume: optimizer and scheduler ``state_dict()``s, epoch,
            :func:`capture_rng`, the data position, a carried hidden state. Nested dicts (any scalar keys),
            lists and tuples of tensors, str, int, float, bool and None; an :class:`~rnnkit.LSTMState`
            comes back as one. Dict and list subclasses come back as plain ones.
        step: the optimizer step count; names the checkpoint. Saving a step that exists replaces it.
        keep_last: how many checkpoints to keep, this one included (the best one is kept besides).
        is_best: also point ``best`` at this checkpoint.

    Returns:
        The checkpoint's directory.
    """
    step = check_int("step", step, minimum=0)
    keep_last = check_int("keep_last", keep_last)
    is_best = check_bool("is_best", is_best)
    weights = _model_tensors(model_state)
    if not isinstance(train_state, Mapping):
        raise InputError(f"train_state must be a dict, got {type(train_state).__name__}")
    state_tensors: dict[str, Tensor] = {}
    skeleton = _encode(dict(train_state), (), state_tensors, 0)

    files = {
        WEIGHTS: _safetensors_bytes(weights, "weights"),
        STATE_TENSORS: _safetensors_bytes(state_tensors, "state"),
        STATE_JSON: _json_bytes(skeleton),
    }
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    _fsync_dir(root.parent)  # a new checkpoints/ must survive a power loss with what goes in it
    name = f"step-{step:06d}"
    final = root / name

    tmp = root / _temp_name(name)
    tmp.mkdir()
    try:
        for file, data in files.items():
            _atomic_write(tmp / file, data)
        # the manifest last: a directory with a manifest has everything the manifest lists
        _atomic_write(tmp / MANIFEST, _manifest_bytes(step, files))
        _move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)

    if is_best:
        _atomic_write(root / "best", f"{name}\n".encode())
    _atomic_write(root / "latest", f"{name}\n".encode())  # the commit point of the save
    try:
        _prune(root, name, keep_last)
    except OSError as e:  # the checkpoint is saved; failing the save over clean-up would mislead
        warnings.warn(f"{root}: could not prune old checkpoints: {e}", RuntimeWarning, stacklevel=2)
    return final


def _prune(root: Path, new: str, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (``new`` counts as newest) and the best one."""
    best = _pointer_or_none(root / "best")
    others = sorted((n for n in _checkpoint_names(root) if n != new), key=_step_of, reverse=True)
    doomed = [n for n in others[keep_last - 1 :] if n != best]
    for name in doomed:
        # renamed first, so a kill mid-delete never leaves half a checkpoint under a checkpoint's name
        aside = root / _temp_name(name)
        os.replace(root / name, aside)
    # what earlier crashes left in flight, and what was just moved aside
    for entry in os.scandir(root):
        if entry.name.startswith(_TEMP):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def _model_tensors(model_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    if not isinstance(model_state, Mapping):
        raise InputError(f"model_state must be a dict of tensors, got {type(model_state).__name__}")
    for key, value in model_state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise InputError(
                f"model_state must map str to Tensor, got {type(key).__name__} -> {type(value).__name__} "
                f"at {key!r}"
            )
    return dict(model_state)


def _safetensors_bytes(tensors: dict[str, Tensor], kind: str) -> bytes:
    plain, seen = {}, set()
    for key, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        # safetensors refuses tensors that share memory (tied weights, views of one buffer): copy those
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and (ptr in seen or t.untyped_storage().nbytes() != t.nbytes):
            t = t.clone()
        seen.add(ptr)
        plain[key] = t
    try:
        # safetensors sorts its tensors; "keys" keeps the caller's order (state_dict order)
        meta = {"format": FORMAT, "kind": kind, "keys": json.dumps(list(plain))}
        return safetensors.torch.save(plain, metadata=meta)
    except Exception as e:  # an unsupported dtype, say; the library's own exception type varies
        raise InputError(f"cannot store the {kind} tensors as safetensors: {e}") from e


def _manifest_bytes(step: int, files: dict[str, bytes]) -> bytes:
    body: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "files": {name: {"size": len(data), "sha256": _sha256(data)} for name, data in files.items()},
        "written_by": f"rnnkit {__version__}",
    }
    # the manifest's own checksum (of its other fields, as canonical JSON): any change to it shows
    body["checksum"] = _sha256(_manifest_body_bytes(body))
    return _json_bytes(body)
