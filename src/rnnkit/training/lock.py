"""One process per run directory: :class:`RunLock` holds an exclusive lock on ``run_dir/.lock``, and a
second process on the same directory is refused with the first one's PID and command.

The lock is the kernel's (``fcntl.flock``), so it goes away with its process however that ends: a lock
file left by a process that died (even by SIGKILL) is simply taken over. Taking it again inside the
same process (the CLI, then the trainer) is allowed and counted. On systems without ``fcntl`` there is
no lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

from ..errors import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
_held: dict[Path, tuple[int, int, bool]] = {}  # resolved run_dir -> (fd, depth, created the folder)


class RunLocked(InputError):
    """Another live process holds the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` -- create ``run_dir`` if needed and hold it for this process.

    A folder created here that holds nothing but the lock when the block ends (a run refused for bad
    input) is removed again, so a failed start leaves nothing behind.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)

    def __enter__(self) -> RunLock:
        key = self.run_dir.resolve()
        if key in _held:
            fd, depth, created = _held[key]
            _held[key] = (fd, depth + 1, created)
            return self
        created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            _held[key] = (-1, 1, created)
            return self
        path = self.run_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(
                f"{self.run_dir} is in use by another rnnkit process ({holder}); wait for it to end, stop "
                "it, or choose another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()}, since {since}: {' '.join(sys.argv)[:300]}\n".encode())
        _held[key] = (fd, 1, created)
        return self

    def __exit__(self, *exc: object) -> None:
        key = self.run_dir.resolve()
        fd, depth, created = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1, created)
            return
        del _held[key]
        if created and _only_lock(self.run_dir):
            shutil.rmtree(self.run_dir, ignore_errors=True)  # while still locked: nobody else started
        if fd >= 0:
            os.close(fd)  # releases the lock; the file stays (removing it would race a waiting process)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
        if text:
            return text
    return "its PID unknown"


def _only_lock(run_dir: Path) -> bool:
    try:
        return [p.name for p in run_dir.iterdir()] == [LOCK_NAME]
    except OSError:
        return False
