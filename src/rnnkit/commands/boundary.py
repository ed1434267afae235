"""The CLI's one error boundary: every command runs inside :func:`run_command`, which checks what can be
checked before any work (the run directory's kind, ``--resume`` on a folder that exists, ``--out`` that is
not a file), and turns every failure into one line on stderr and an exit status:

    0    done
    1    the run failed (training diverged, out of memory, a full disk, an unexpected error)
    2    bad input (an option, a file, a run directory of the wrong kind)
    130  interrupted (Ctrl-C or SIGTERM; a training run saves a checkpoint first)

``--debug`` (anywhere on the command line) or ``RNNKIT_DEBUG=1`` also prints the traceback.

What it knows of a command comes from the command's own parser defaults, set where the command is
registered (``apps/<name>/cli.py``): ``command_name`` (the table's name, set by :mod:`rnnkit.cli`),
``needs_run`` (the kind of run directory it reads), ``makes_run`` (a training command), ``fresh_needs``
(options of which a fresh run needs one; ``--resume`` takes the saved value), ``configs`` (the
model and training configs the flags make, sized for the memory check) and ``data_sizes`` (where no
data decides them: the model's input width and outputs).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

OK, FAILED, BAD_INPUT, INTERRUPTED = 0, 1, 2, 130

_OS_WORDS = {
    errno.ENOENT: "no such file or directory",
    errno.EISDIR: "is a directory, expected a file",
    errno.ENOTDIR: "not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "already exists",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
}
_RUN_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EIO}  # the machine failed the run, not the input
_TEMP_FILE = re.compile(r"\.tmp-(.+)-\d+-[0-9a-f]{8}$")  # atomic_write's temporary name -> the file's


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is on the command line (anywhere) or ``RNNKIT_DEBUG`` is set; argv without it."""
    rest = [a for a in argv if a != "--debug"]
    env = os.environ.get("RNNKIT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    return env or len(rest) != len(argv), rest


def run_command(
    func: Callable[[argparse.Namespace], int], args: argparse.Namespace, debug: bool = False
) -> int:
    """Run one command; returns its exit status (see the module docstring). Never raises, but SystemExit."""
    try:
        preflight(args)
        with _run_lock(args):
            return func(args)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 -- the one place every failure ends
        if debug:
            traceback.print_exc()
        status, message = describe(e, args)
        print(f"rnnkit: {'error: ' if status != INTERRUPTED else ''}{message}", file=sys.stderr)
        return status


def describe(e: BaseException, args: argparse.Namespace | None = None) -> tuple[int, str]:
    """The exit status and the one line for exception ``e``."""
    from ..errors import TrainingError
    from ..training.interrupt import RunInterrupted

    if isinstance(e, RunInterrupted):
        return INTERRUPTED, f"{e} with `{_resume_command(args, e.run_dir)}`"
    if isinstance(e, KeyboardInterrupt):
        return INTERRUPTED, "interrupted (nothing was being trained, so nothing was saved)"
    if isinstance(e, TrainingError):
        return FAILED, str(e)
    if _out_of_memory(e):
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return FAILED, f"out of memory ({first[:200]}); try smaller --hidden, --batch or --seq-len"
    if isinstance(e, OSError) and not _is_data_error(e):
        return _os_error(e)
    if isinstance(e, ValueError) or _is_data_error(e):
        return BAD_INPUT, str(e) or type(e).__name__
    hint = "" if os.environ.get("RNNKIT_DEBUG") else " (run again with --debug for the traceback)"
    return FAILED, f"unexpected {type(e).__name__}: {str(e)[:300]}{hint}"


def _is_data_error(e: BaseException) -> bool:
    from ..data.datasets import DownloadError

    return isinstance(e, DownloadError)


def _os_error(e: OSError) -> tuple[int, str]:
    words = _OS_WORDS.get(e.errno or -1, e.strerror or str(e))
    where = _TEMP_FILE.sub(r"\1", str(e.filename)) if e.filename is not None else None  # the file meant
    if where is None:
        message = str(e) or words
    else:
        other = f" -> {e.filename2}" if e.filename2 is not None else ""
        message = f"{where}{other}: {words}"
    return (FAILED if e.errno in _RUN_FAILURES else BAD_INPUT), message


def _out_of_memory(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("DefaultCPUAllocator" in text or "out of memory" in text)


def train_command(args: argparse.Namespace | None) -> str | None:
    """The training command this is ("train lm", ...; one that makes a run directory), or None."""
    return getattr(args, "command_name", None) if getattr(args, "makes_run", None) else None


def _resume_command(args: argparse.Namespace | None, run_dir: str) -> str:
    command = train_command(args)
    return f"rnnkit {command} --out {run_dir} --resume" if command else f"--resume on {run_dir}"


# -- checks before any work --------------------------------------------------------------------------------


def preflight(args: argparse.Namespace) -> None:
    """What can be refused before a command does anything (each an InputError naming what is wrong)."""
    from ..errors import InputError
    from ..training import rundir
    from . import runs

    command = getattr(args, "command_name", None)
    kind = getattr(args, "needs_run", None)
    if kind is not None and getattr(args, "run_dir", None) is not None:
        runs.require_kind(args.run_dir, kind, command)
    if command == "diagnose" and getattr(args, "run", None) is not None:
        _diagnose_run(args.run)
    out = getattr(args, "out", None)
    if train_command(args) is None or out is None:
        return
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory; --out names a run directory")
    if getattr(args, "resume", False):
        if not out.is_dir():
            raise InputError(
                f"--resume: {out} does not exist; --resume continues the run in --out (leave it out to "
                "start one)"
            )
        rundir.check_json_files(out)
        if not (out / "config.json").is_file():
            raise InputError(f"--resume: {out} holds no run (no config.json); leave --resume out to start")
        from .resume import fill_from_saved

        fill_from_saved(args, out)
    needed = getattr(args, "fresh_needs", ())
    if needed and all(getattr(args, name, None) is None for name in needed):
        given = " or ".join(f"--{name}" for name in needed)
        raise InputError(f"`rnnkit {command}` needs {given} (only --resume may leave it out)")
    if command == "train classify" and getattr(args, "data", None) and (args.train or args.test):
        raise InputError("--data NAME names both splits: give it, or --train/--test, not both")
    _check_memory(args)


def _check_memory(args: argparse.Namespace) -> None:
    """Estimate the run's memory from the command's configs and refuse it past the available memory (warn
    past half). Sizes the data decides (input width, vocabulary) are guessed where not yet known."""
    from ..training import resources

    if getattr(args, "configs", None) is None:
        return
    model, train = args.configs(args)[:2]
    steps = getattr(model, "length", None) or train.seq_len  # a synthetic task's length is its sequence's
    width = getattr(model, "input_size", None) or getattr(model, "features", None)
    outputs = (getattr(model, "vocab_size", None) or getattr(model, "num_classes", None)
               or getattr(model, "tgt_vocab", None) or 256)  # fmt: skip
    if getattr(args, "data_sizes", None) is not None:  # a command that knows them without data
        width, outputs = args.data_sizes(model)
    layers = getattr(model, "layers", 1)
    need = resources.estimate(
        cell=getattr(model, "cell", "lstm"), hidden=model.hidden, layers=layers,
        bidirectional=getattr(model, "bidirectional", False), batch=train.batch_size, steps=steps,
        input_size=width or model.hidden, outputs=outputs, embedding=outputs if width is None else 0,
    )  # fmt: skip
    length = "--length" if getattr(model, "length", None) else "--seq-len"
    what = f"--hidden {model.hidden} --layers {layers} --batch {train.batch_size} {length} {steps}"
    warning = resources.check(need, what)
    if warning:
        print(f"rnnkit: warning: {warning}", file=sys.stderr)


def _run_lock(args: argparse.Namespace) -> contextlib.AbstractContextManager[object]:
    """A training command holds its --out from the start, before it writes a tokenizer or config (the
    launcher of --nproc N does not: its rank 0 does)."""
    from ..training.lock import RunLock

    if train_command(args) is None or getattr(args, "out", None) is None:
        return contextlib.nullcontext()
    if (getattr(args, "nproc", 1) or 1) > 1 and "WORLD_SIZE" not in os.environ:
        return contextlib.nullcontext()
    if os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    return RunLock(args.out)


def _diagnose_run(run: str) -> None:
    from ..errors import InputError
    from . import runs

    try:
        runs.require_kind(run, "language-model", "diagnose --run")
    except InputError:
        if runs.run_kind(run) != "classifier":
            raise
