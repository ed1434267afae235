"""Loading a checkpoint: the manifest is verified before any file is trusted (format, checksum, size,
SHA-256), names inside JSON are never paths, symbolic links are refused, and a failure is one
:class:`~rnnkit.training.checkpoint_format.CheckpointError` naming the file and the problem."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from ..errors import InputError
from .checkpoint_format import (
    _MAX_HEADER,
    _MAX_MANIFEST,
    _MAX_POINTER,
    _NAME,
    FILES,
    FORMAT,
    MANIFEST,
    POINTERS,
    STATE_JSON,
    STATE_TENSORS,
    VERSION,
    WEIGHTS,
    Checkpoint,
    CheckpointError,
    _checkpoint_names,
    _lstat,
    _manifest_body_bytes,
    _sha256,
    _step_of,
)
from .state_codec import _decode, _Malformed


def load_checkpoint(
    path_or_run_dir: str | os.PathLike[str], *, which: str | os.PathLike[str] = "latest"
) -> Checkpoint:
    """Load and verify a checkpoint.

    Arguments:
        path_or_run_dir: a run directory, or one checkpoint's directory (then ``which`` is left alone).
        which: ``"latest"`` or ``"best"`` (the pointers), a checkpoint's name (``"step-000120"``), or the
            path of a checkpoint directory.

    Raises:
        CheckpointError: the checkpoint is missing, incomplete, corrupt or foreign; the message names the
            file and the problem. A pointer to a bad checkpoint is an error too (no fall back to an older
            one), and the message names the newest checkpoint that does load.
    """
    path = Path(path_or_run_dir)
    if _NAME.fullmatch(path.name) or (path / MANIFEST).exists():
        if which != "latest":
            raise InputError(f"{path} is a checkpoint directory; which={which!r} applies to a run directory")
        return _read_checkpoint(path)
    if not isinstance(which, str) or (which not in POINTERS and not _NAME.fullmatch(which)):
        return _read_checkpoint(Path(which))

    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    root = path / "checkpoints"
    if which in POINTERS:
        try:
            name = _read_pointer(root / which)
        except CheckpointError as e:
            raise CheckpointError(f"{e}; {_alternative(root, None)}") from None
        via = f"{root / which} points to {name}"
    else:
        name, via = which, f"asked for with which={which!r}"
    ckpt = root / name
    try:
        if not stat.S_ISDIR(_lstat(ckpt).st_mode):
            raise CheckpointError(f"{ckpt}: not a directory (a symbolic link?)")
        return _read_checkpoint(ckpt)
    except CheckpointError as e:
        # never a silent fall back: the user decides whether an older checkpoint will do
        raise CheckpointError(f"{e}; {via}; {_alternative(root, name)}") from None


def load_weights(model: torch.nn.Module, run_dir: str | os.PathLike[str], which: str = "best") -> Checkpoint:
    """Load a run's checkpoint into ``model`` and put it in eval mode; returns the checkpoint.

    ``which="best"`` falls back to ``latest`` for a run that never evaluated (and so has no best);
    any other ``which`` must load as asked.
    """
    try:
        ckpt = load_checkpoint(run_dir, which=which)
    except InputError:
        if which != "best":
            raise
        ckpt = load_checkpoint(run_dir, which="latest")  # a run that never evaluated has no best
    model.load_state_dict(ckpt.model_state)
    model.eval()
    return ckpt


def _alternative(root: Path, bad: str | None) -> str:
    """Name the newest checkpoint that verifies (other than ``bad``), for the user to load explicitly."""
    for name in sorted(_checkpoint_names(root), key=_step_of, reverse=True):
        if name == bad:
            continue
        try:
            _read_checkpoint(root / name)
        except CheckpointError:
            continue
        return (
            f"the newest good checkpoint is {root / name}: load it explicitly with "
            f"load_checkpoint({str(root.parent)!r}, which={name!r})"
        )
    return f"no other checkpoint in {root} loads"


def _read_checkpoint(ckpt: Path) -> Checkpoint:
    manifest = _read_manifest(ckpt)
    data = {name: _read_verified(ckpt / name, manifest["files"][name]) for name in FILES}
    weights = _parse_safetensors(ckpt / WEIGHTS, data[WEIGHTS], "weights")
    tensors = _parse_safetensors(ckpt / STATE_TENSORS, data[STATE_TENSORS], "state")
    where = ckpt / STATE_JSON
    try:
        skeleton = _parse_json(data[STATE_JSON])
        used: set[str] = set()
        train_state = _decode(skeleton, tensors, used, 0)
        if not isinstance(train_state, dict):
            raise _Malformed(f"the training state must be a dict, got {type(train_state).__name__}")
        if used != set(tensors):
            raise _Malformed(f"{STATE_TENSORS} holds tensors it does not name: {sorted(set(tensors) - used)}")
    except _Malformed as e:
        raise CheckpointError(f"{where}: {e}") from None
    return Checkpoint(weights, train_state, manifest["step"], ckpt)


def _read_manifest(ckpt: Path) -> dict[str, Any]:
    where = ckpt / MANIFEST
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: no such checkpoint directory")
    data = _read_file(where, limit=_MAX_MANIFEST, missing="missing (not a complete rnnkit checkpoint)")
    try:
        manifest = _parse_json(data)
    except _Malformed as e:
        raise CheckpointError(f"{where}: {e}") from None

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"{where}: {problem}")

    if not isinstance(manifest, dict) or "format" not in manifest:
        raise bad("not an rnnkit checkpoint manifest (no format tag)")
    if manifest["format"] != FORMAT:
        raise bad(f"not an rnnkit checkpoint (format tag {manifest['format']!r:.60}, expected {FORMAT!r})")
    version = manifest.get("version")
    if not _is_int(version) or version < 1:
        raise bad(f"invalid format version {version!r:.60}")
    if version > VERSION:
        raise bad(f"format version {version} is newer than this rnnkit reads ({VERSION}); upgrade rnnkit")
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    if manifest.get("checksum") != _sha256(_manifest_body_bytes(body)):
        raise bad("checksum mismatch (manifest changed or corrupt)")
    step, files = manifest.get("step"), manifest.get("files")
    if not _is_int(step) or step < 0:
        raise bad(f"invalid step {step!r:.60}")
    match = _NAME.fullmatch(ckpt.name)
    if match and int(match[1]) != step:
        raise bad(f"step {step} does not match the directory name {ckpt.name}")
    if not isinstance(files, dict):
        raise bad("no file list")
    for name in files:
        if name not in FILES:  # names are never used as paths: "../x" ends here
            raise bad(f"unexpected file entry {name!r:.100}")
    for name in FILES:
        entry = files.get(name)
        if not (
            isinstance(entry, dict)
            and _is_int(entry.get("size"))
            and entry["size"] >= 0
            and isinstance(entry.get("sha256"), str)
            and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
        ):
            raise bad(f"missing or malformed entry for {name}")
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_json(data: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=refuse)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _Malformed(f"not valid JSON ({type(e).__name__}: {str(e)[:100]})") from None


def _read_file(
    path: Path, *, limit: int | None = None, size: int | None = None, missing: str = "missing"
) -> bytes:
    """A regular file's bytes, refusing symbolic links, devices and FIFOs; ``size`` or at most ``limit``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {missing}") from None
    if stat.S_ISLNK(st.st_mode):
        raise CheckpointError(f"{path}: is a symbolic link (refused: a checkpoint's files lie in it)")
    flags = (
        os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO must not hang
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        if limit is not None and st.st_size > limit:
            raise CheckpointError(
                f"{path}: {st.st_size} bytes, too large for what it should be (at most {limit})"
            )
        if size is not None and st.st_size != size:
            hint = _foreign_hint(f.read(8))
            raise CheckpointError(
                f"{path}: size mismatch (truncated or changed): expected {size} bytes, got {st.st_size}{hint}"
            )
        return f.read(st.st_size)


def _read_verified(path: Path, entry: dict[str, Any]) -> bytes:
    data = _read_file(path, size=entry["size"])
    got = _sha256(data)
    if got != entry["sha256"]:
        raise CheckpointError(
            f"{path}: SHA-256 mismatch (file changed or corrupt): expected {entry['sha256'][:16]}..., "
            f"got {got[:16]}...{_foreign_hint(data[:8])}"
        )
    return data


def _foreign_hint(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "; it is a zip archive, as torch.save writes (rnnkit never unpickles checkpoint files)"
    if head[:1] == b"\x80":
        return "; it looks like a pickle (rnnkit never unpickles checkpoint files)"
    return ""


def _parse_safetensors(path: Path, data: bytes, kind: str) -> dict[str, Tensor]:
    # the header is read here (bounded) for the metadata; safetensors checks the tensors' offsets itself
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < n <= min(len(data) - 8, _MAX_HEADER):
        raise CheckpointError(
            f"{path}: not a safetensors file (header of {n} bytes in a file of {len(data)})"
            + _foreign_hint(data[:8])
        )
    try:
        header = _parse_json(data[8 : 8 + n])
    except _Malformed as e:
        raise CheckpointError(f"{path}: not a safetensors file (header {e})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") != kind:
        raise CheckpointError(
            f"{path}: unexpected content: not the {kind} file of an rnnkit checkpoint "
            f"(metadata {meta!r:.120})"
        )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # safetensors' own error type
        raise CheckpointError(f"{path}: not a valid safetensors file ({str(e)[:200]})") from None
    try:
        keys = _parse_json(meta.get("keys", "").encode())
    except _Malformed:
        keys = None
    if not isinstance(keys, list) or len(keys) != len(tensors) or set(keys) != set(tensors):
        raise CheckpointError(f"{path}: unexpected content: its key list does not match its tensors")
    return {k: tensors[k] for k in keys}


def _read_pointer(pointer: Path) -> str:
    done = "saved with is_best=True" if pointer.name == "best" else "completed in this run"
    try:
        text = _read_file(pointer, limit=_MAX_POINTER, missing=f"missing (no checkpoint was {done})")
        text = text.decode("ascii").strip()
    except UnicodeDecodeError:
        text = None
    if text is None or not _NAME.fullmatch(text):
        raise CheckpointError(f"{pointer}: not a checkpoint pointer (expected a name like step-000123)")
    return text


def _pointer_or_none(pointer: Path) -> str | None:
    try:
        return _read_pointer(pointer)
    except CheckpointError:
        return None
