"""Crash-safe writes: a file (or a checkpoint directory) is written under a temporary name, flushed,
fsynced and renamed into place, and the directory fsynced; killed at any moment, the old one or the new
one is there, never a mix."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_TEMP = ".tmp-"  # prefix of everything in flight (files, directories, directories being deleted)


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
