"""Checkpoints: a run's weights and training state on disk, written so that a crash never costs the last
good one, and read so that a damaged or foreign one is refused with one clear message.

Layout of a run directory::

    run_dir/
      config.json                 the run's config (written by the trainer, not here)
      checkpoints/
        step-000120/              one complete checkpoint
          weights.safetensors     the model's tensors
          state.safetensors       the training state's tensors
          state.json              the rest of the training state, naming its tensors in state.safetensors
          manifest.json           format tag and version, step, size and SHA-256 of the three files above
        step-000123/
        latest                    pointer file: "step-000123"
        best                      pointer file: the best checkpoint's name (once one is saved as best)

Nothing is pickled: tensors go to safetensors and everything else to JSON, so loading a checkpoint never
runs code from it (``torch.load`` would). The training state is nested dicts, lists and tuples of
tensors, str, int, float, bool and None; a torch optimizer's or scheduler's ``state_dict()`` comes back
exactly (integer dict keys, tuples such as Adam's ``betas``, int and float counters, tensor ``step``s).

Crash safety. Every file is written to a temporary file in its own directory, flushed, fsynced and
renamed over its name, and the directory is then fsynced. A checkpoint is written in full under a
temporary directory name and renamed into place only when complete; the ``latest`` pointer moves after
that, and older checkpoints are pruned only after it has. Killed at any moment, a run keeps a ``latest``
that loads. (Re-saving a step that already exists, after going back to an earlier checkpoint, replaces it
with two renames; a kill between them leaves that step missing and ``load_checkpoint`` says which one to
load instead.) One process writes to a run directory at a time.

Loading checks the manifest before it trusts any file: the format tag, the manifest's own checksum, and
the size and SHA-256 of each file, before a byte of it is parsed. Names inside the JSON are never used as
paths, symbolic links are refused, and a failure is one :class:`CheckpointError` that names the file and
the problem. A corrupt ``latest`` is an error, never a silent fall back to an older checkpoint (or to a
fresh start): the message names the newest checkpoint that does verify, to be loaded explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from .. import __version__
from ..cells.base import LSTMState
from ..errors import InputError, check_bool, check_int

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
_TEMP = ".tmp-"  # prefix of everything in flight (files, directories, directories being deleted)
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


# -- saving --------------------------------------------------------------------------------------------


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


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a mix.

    For the run's other files (``config.json``); checkpoints write every file this way.
    """
    _atomic_write(Path(path), data)


def _atomic_write(path: Path, data: bytes) -> None:
    # same directory: a rename is atomic only within one file system
    tmp = path.with_name(_temp_name(path.name))
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)  # ... and the rename itself survives a power loss


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory; NTFS journals renames itself
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(name: str) -> str:
    return f"{_TEMP}{name}-{os.getpid()}-{secrets.token_hex(4)}"


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the complete checkpoint ``tmp`` to ``final``; an existing ``final`` goes aside first."""
    if not os.path.lexists(final):
        os.replace(tmp, final)
        return
    # a directory cannot be renamed over a non-empty one: move the old one aside, to be pruned
    aside = final.with_name(_temp_name(final.name))
    os.replace(final, aside)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.replace(aside, final)
        raise


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


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


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


# -- the training state as JSON + tensors -----------------------------------------------------------------
#
# JSON keeps None, bool, str, int (any size) and finite floats (shortest repr: exact). Everything else is
# an object with one "$" key: {"$tensor": name in state.safetensors}, {"$tuple": [...]},
# {"$float": "nan" | "inf" | "-inf"}, {"$lstm_state": [h, c]}, and {"$dict": [[key, value], ...]} for a
# dict with non-str keys or a key starting with "$". Other dicts are JSON objects, lists JSON arrays.

_SCALARS = (type(None), bool, int, float, str)


def _where(parts: tuple[Any, ...]) -> str:
    return "train_state" + "".join(f"[{p!r}]" for p in parts)


def _encode(value: Any, parts: tuple[Any, ...], tensors: dict[str, Tensor], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise InputError(f"{_where(parts)}: nested more than {_MAX_DEPTH} levels deep (a cycle?)")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"$float": repr(float(value))}
    if isinstance(value, Tensor):
        name = "/".join(map(str, parts))
        while name in tensors or name == "__metadata__":  # keys 0 and "0" in one dict; safetensors' key
            name += "~"
        tensors[name] = value
        return {"$tensor": name}
    if isinstance(value, LSTMState):
        return {
            "$lstm_state": [_encode(v, (*parts, f), tensors, depth + 1) for f, v in value._asdict().items()]
        }
    if type(value) is tuple:
        return {"$tuple": [_encode(v, (*parts, i), tensors, depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, (*parts, i), tensors, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, _SCALARS) or (isinstance(key, float) and not math.isfinite(key)):
                raise InputError(f"{_where(parts)}: cannot store the dict key {key!r} (use str or int keys)")
        items = {k: _encode(v, (*parts, k), tensors, depth + 1) for k, v in value.items()}
        if all(isinstance(k, str) and not k.startswith("$") for k in items):
            return items
        return {"$dict": [[k, v] for k, v in items.items()]}
    hint = (
        " (convert numpy values with .item() or torch.from_numpy)"
        if type(value).__module__ == "numpy"
        else ""
    )
    raise InputError(
        f"{_where(parts)}: cannot store a {type(value).__module__}.{type(value).__qualname__}{hint}; a "
        "training state holds dicts, lists and tuples of tensors, str, int, float, bool and None"
    )


class _Malformed(Exception):
    """A problem inside a file, turned into a CheckpointError naming the file by the caller."""


def _decode(node: Any, tensors: dict[str, Tensor], used: set[str], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Malformed(f"nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, _SCALARS):
        return node
    if isinstance(node, list):
        return [_decode(v, tensors, used, depth + 1) for v in node]
    if not isinstance(node, dict):
        raise _Malformed(f"unexpected JSON value {node!r}")
    if len(node) == 1 and next(iter(node)).startswith("$"):
        ((tag, arg),) = node.items()
        if tag == "$tensor" and isinstance(arg, str):
            if arg not in tensors:
                raise _Malformed(f"names the tensor {arg!r}, which {STATE_TENSORS} does not hold")
            used.add(arg)
            return tensors[arg]
        if tag == "$float" and arg in ("nan", "inf", "-inf"):
            return float(arg)
        if tag == "$tuple" and isinstance(arg, list):
            return tuple(_decode(v, tensors, used, depth + 1) for v in arg)
        if tag == "$lstm_state" and isinstance(arg, list) and len(arg) == 2:
            return LSTMState(*(_decode(v, tensors, used, depth + 1) for v in arg))
        if tag == "$dict" and isinstance(arg, list):
            out = {}
            for pair in arg:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], _SCALARS)):
                    raise _Malformed(f"a $dict entry must be [scalar key, value], got {pair!r:.80}")
                out[pair[0]] = _decode(pair[1], tensors, used, depth + 1)
            return out
        raise _Malformed(f"unknown or malformed entry {{{tag!r}: ...}}")
    if any(k.startswith("$") for k in node):
        raise _Malformed(f"unexpected keys {sorted(k for k in node if k.startswith('$'))}")
    return {k: _decode(v, tensors, used, depth + 1) for k, v in node.items()}


# -- loading -------------------------------------------------------------------------------------------


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


def _lstat(path: Path) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None


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


def _step_of(name: str) -> int:
    return int(name.split("-", 1)[1])


def _checkpoint_names(root: Path) -> list[str]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    return [e.name for e in entries if _NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]


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


# -- random number generators ----------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The states of python's ``random``, numpy's global generator and torch's (CPU, and CUDA if available).

    Everything is a tensor or a plain value, so the dict goes into ``train_state`` as it is.
    :func:`restore_rng` puts it back; the numbers drawn next are then the same, bit for bit.
    """
    version, internal, gauss_next = random.getstate()
    algorithm, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),  # 624 words < 2**32, and the position
            "gauss_next": gauss_next,
        },
        "numpy": {
            "algorithm": str(algorithm),
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()  # one uint8 tensor per device
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the generators to a state from :func:`capture_rng` (also after a save and load)."""
    try:
        py, npy = state["python"], state["numpy"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
        key = npy["key"].numpy().astype(np.uint32)
        np.random.set_state(
            (npy["algorithm"], key, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
        )
        torch.set_rng_state(state["torch"].to("cpu", torch.uint8))
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise InputError(
            f"not a random number generator state from capture_rng: {type(e).__name__}: {e}"
        ) from e
    cuda = state.get("cuda")
    if cuda is None:
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available != len(cuda):
        warnings.warn(
            f"the checkpoint has CUDA generator states for {len(cuda)} devices and this machine has "
            f"{available}: restoring {min(available, len(cuda))}, so CUDA random numbers will differ",
            RuntimeWarning,
            stacklevel=2,
        )
    for device, device_state in enumerate(cuda[:available]):
        torch.cuda.set_rng_state(device_state.to("cpu", torch.uint8), device)
