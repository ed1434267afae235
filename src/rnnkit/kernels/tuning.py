"""Measured dispatch: ``impl="auto"`` times the implementations that apply and keeps the fastest.

The static rules of ``dispatch.py`` were measured on one CPU; on another the fastest path differs
(docs/benchmarks.md). So the first time ``auto`` meets a *case* (the cells and their options, device,
dtype and autocast, batch bucket, training or not) it times each candidate that computes the stack
exactly (torch's op, the fused kernels with and without their compiled loops, the parallel scan, the
reference loop where no torch op applies) on inputs of the case's shapes, keeps the fastest, and
remembers it: in memory, and in a tuning file in rnnkit's cache folder
(``$XDG_CACHE_HOME/rnnkit/tuning/<machine>.json``; ``RNNKIT_TUNE_FILE`` names another), one file per
machine (CPU model and flags, threads, torch and rnnkit versions), which later processes read.
``rnnkit tune`` (:func:`tune_grid`) fills it ahead of time.

Every candidate is tested equal to the reference loop, so the choice changes results only by float
rounding. Measuring draws from a private generator (the global RNG is untouched) and takes gradients
with ``torch.autograd.grad`` (no ``.grad`` is written).

The static rules apply (nothing is measured or read) when ``RNNKIT_TUNE=0``; under ``torch.compile``,
export or JIT tracing; on devices other than the CPU; with state dropout, zoneout, resets or per-step
states (their masks are the forward's own); and under an initialised multi-process group (DDP),
where every rank must run the same path and measurements on different ranks could disagree.

The file is written atomically (a temporary file, then ``os.replace``) under a lock on a side file
(``fcntl.flock`` where available), merging with what other processes wrote meanwhile; a corrupt or
foreign file is ignored with one warning (and replaced on the next write).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..cells import Cell
from . import compiled, precision
from .fused import fused_kernel, run_fused
from .native import run_native, stack_is_native
from .scan import run_scan, scan_kernel

ENV = "RNNKIT_TUNE"  # "0": no measuring, the static rules of dispatch.py
ENV_FILE = "RNNKIT_TUNE_FILE"  # the tuning file to read and write instead of the cache's
ENV_BUDGET = "RNNKIT_TUNE_BUDGET"  # seconds of timing per case (default BUDGET_S)
FORMAT, VERSION = "rnnkit-tuning", 1
BUDGET_S = 1.5
MAX_STEPS = 32  # steps timed (at most): per-step costs decide; a longer run costs time, not information
ROUNDS = (3, 15)  # rounds over the candidates: at least, at most
TIE = 1.05  # the static choice stands unless another candidate is faster by more than this

_lock = threading.Lock()
_memory: dict[str, Candidate] = {}  # case key -> the chosen candidate, this process
_file_cases: dict[str, dict[str, Any]] | None = None  # the file's cases, read once per process
_warned: set[str] = set()


# -- what the static rules do not know: whether to measure, the machine, the case -------------------


def enabled() -> bool:
    """Measuring is on unless ``RNNKIT_TUNE`` is 0/off/false/no."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def _tracing() -> bool:
    return bool(
        torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or getattr(torch.compiler, "is_exporting", lambda: False)()
    )


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def applies(x: Tensor, recs: Sequence[Any] | None) -> bool:
    """Whether ``auto`` may measure for input ``x`` (see the module docstring for when it may not)."""
    ok = enabled() and recs is None and x.device.type == "cpu" and x.shape[0] > 1
    return ok and not _tracing() and not _distributed()  # one step (generation): per-call costs rule


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, str]:
    """The CPU's model name and a hash of its feature flags (from /proc/cpuinfo where there is one)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            found.setdefault(key.strip(), value.strip())
    flags = " ".join(sorted(found.get("flags", "").split()))
    return found.get("model name", platform.processor()), hashlib.sha1(flags.encode()).hexdigest()[:12]


def machine() -> dict[str, Any]:
    """What the tuning file is keyed by: a choice measured here holds for another process here."""
    from .. import __version__

    cpu, flags = _cpu()
    return {
        "cpu": cpu,
        "cpu_flags": flags,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rnnkit": __version__,
    }


def machine_id(info: dict[str, Any] | None = None) -> str:
    info = info or machine()
    return hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]


def path() -> Path:
    """The tuning file for this machine: ``RNNKIT_TUNE_FILE``, else in rnnkit's cache folder."""
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE])
    from ..data.datasets import cache_dir

    return cache_dir() / "tuning" / f"{machine_id()}.json"


def _cell_signature(cell: Cell) -> str:
    args = getattr(cell, "_init_args", {})
    opts = ",".join(
        f"{k}={getattr(v, '__qualname__', v)!r}"
        for k, v in sorted(args.items())
        if k not in ("device", "dtype")
    )
    return f"{type(cell).__name__}({opts})"


def bucket(batch: int) -> int:
    """Batch sizes share a choice within powers of two: 1, 2, 4, ..., 64, 128, ..."""
    return 1 << max(batch - 1, 0).bit_length()


def training(cells: Sequence[Cell], x: Tensor) -> bool:
    """Whether this forward builds a graph for backward (then forward + backward is timed)."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in cells[0].parameters())
    )


def case_key(cells: Sequence[Cell], merge: str, x: Tensor) -> str:
    """One line naming the case: cells with options and sizes, stack, device, dtype, batch bucket, mode."""
    dtype = str(x.dtype).removeprefix("torch.")
    if torch.is_autocast_enabled("cpu"):
        dtype += "+autocast:" + str(torch.get_autocast_dtype("cpu")).removeprefix("torch.")
    sigs = [_cell_signature(c) for c in cells]
    stack = sigs[0] if len(set(sigs)) == 1 else " / ".join(sigs)
    mode = "train" if training(cells, x) else "infer"
    where = f"{x.device.type} {dtype} B<={bucket(x.shape[1])} {mode} threads={torch.get_num_threads()}"
    return f"{stack} x{len(cells)} merge={merge} | {where}"


# -- the candidates -----------------------------------------------------------------------------------


def run_fused_python(cell: Cell, x: Tensor, state: Any, lengths: Tensor | None, reverse: bool = False,
                     **kw: Any) -> tuple[Tensor, Any]:  # fmt: skip
    """``run_fused`` with the compiled loops switched off: the fused kernels' Python loops (their
    backward is Python too, whatever is switched on when it runs)."""
    with compiled.switched_off():
        return run_fused(cell, x, state, lengths, reverse, **kw)


@dataclass(frozen=True)
class Candidate:
    name: str  # "native", "fused", "fused-python", "scan" or "reference"
    native_op: str | None  # for "native": the torch op running the whole stack
    runner: Callable | None  # else: the runner of each layer and direction (run_cell's signature)


def candidates(cells: Sequence[Cell], merge: str, reference: Callable, x: Tensor) -> list[Candidate]:
    """Every implementation that computes this plain stack exactly, for input ``x`` (T, B, F)."""
    out = []
    op = stack_is_native(cells, merge)
    if op is not None:
        out.append(Candidate("native", op, None))
    if all(scan_kernel(c) is not None for c in cells):
        out.append(Candidate("scan", None, run_scan))
    elif all(fused_kernel(c) is not None for c in cells):
        out.append(Candidate("fused", None, run_fused))
        if compiled.runs_for(x) and precision.autocast_dtype(x) is None:  # compiled loops: their
            # Python twins compete too (under autocast both run bf16, which the Python loops run)
            out.append(Candidate("fused-python", None, run_fused_python))
    if op is None:  # torch's op, where it applies, is never slower than the Python reference loop
        out.append(Candidate("reference", None, reference))
    return out


# -- timing --------------------------------------------------------------------------------------------


def _cell_timer(
    cell: Cell, cand: Candidate, x: Tensor, train: bool, gen: torch.Generator
) -> Callable[[], float]:
    """A function that runs one layer-and-direction of ``cand`` on inputs like ``x`` and returns its
    seconds (forward, or forward + backward when ``train``)."""
    T, B = min(x.shape[0], MAX_STEPS), x.shape[1]
    xs = torch.randn(T, B, cell.input_size, generator=gen, dtype=torch.float32).to(x.dtype)
    xs.requires_grad_(train)
    state = cell.init_state(B, dtype=x.dtype, device=x.device)
    params = [p for p in cell.parameters() if p.requires_grad] if train else []

    def once() -> float:
        start = time.perf_counter()
        with torch.set_grad_enabled(train):
            if cand.native_op is not None:
                st = (
                    state.unsqueeze(0)
                    if isinstance(state, Tensor)
                    else type(state)(*(s.unsqueeze(0) for s in state))
                )
                y, _ = run_native(cand.native_op, [cell], xs, st, None, 1, False, 0.0, False)
            else:  # under autocast the fused kernels run bf16, as plan runs them
                lower = cand.name in ("fused", "fused-python")
                runner = precision.lowered(cand.runner) if lower else cand.runner
                y, _ = runner(cell, xs, state, None)
            if train:
                torch.autograd.grad(y, [xs, *params], torch.ones_like(y), allow_unused=True)
        return time.perf_counter() - start

    return once


def measure(cells: Sequence[Cell], cands: Sequence[Candidate], x: Tensor, budget_s: float | None = None,
            ) -> dict[str, float]:  # fmt: skip
    """Seconds per forward (+ backward when training) of the whole stack for each candidate: each
    distinct cell timed once per round, the candidates alternated round by round after a warm-up,
    the fastest round kept (the least disturbed by other work on the machine)."""
    budget = float(os.environ.get(ENV_BUDGET, BUDGET_S)) if budget_s is None else budget_s
    train = training(cells, x)
    gen = torch.Generator().manual_seed(0)
    distinct: dict[str, tuple[Cell, int]] = {}
    for c in cells:  # a stack repeats its cells: time each kind once, count it
        key = f"{_cell_signature(c)} in={c.input_size}"
        distinct[key] = (distinct[key][0], distinct[key][1] + 1) if key in distinct else (c, 1)
    timers = {
        cand.name: [(_cell_timer(c, cand, x, train, gen), n) for c, n in distinct.values()] for cand in cands
    }
    best = {name: math.inf for name in timers}
    start = time.perf_counter()
    for rnd in range(-1, ROUNDS[1]):  # round -1: warm-up (packs weights, builds or loads the extension)
        for name, parts in timers.items():
            seconds = sum(n * once() for once, n in parts)
            if rnd >= 0:
                best[name] = min(best[name], seconds)
        if rnd + 1 >= ROUNDS[0] and time.perf_counter() - start > budget:
            break
    return best


# -- the tuning file -----------------------------------------------------------------------------------


def _warn_once(what: str, message: str) -> None:
    if what not in _warned:
        _warned.add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def read_cases(file: Path | None = None) -> dict[str, dict[str, Any]]:
    """The cases recorded in the tuning file for this machine; {} for a missing file, and for a
    corrupt or foreign one (with one warning)."""
    file = file or path()
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        _warn_once(
            f"corrupt:{file}", f"rnnkit: ignoring the unreadable tuning file {file} ({type(e).__name__})"
        )
        return {}
    ok = isinstance(data, dict) and data.get("format") == FORMAT and data.get("version") == VERSION
    if not ok or not isinstance(data.get("cases"), dict):
        _warn_once(
            f"corrupt:{file}", f"rnnkit: ignoring {file}: not an rnnkit tuning file (format {VERSION})"
        )
        return {}
    if data.get("machine_id") != machine_id():
        _warn_once(f"foreign:{file}", f"rnnkit: ignoring {file}: it was measured on another machine or setup")
        return {}
    return {
        k: v for k, v in data["cases"].items() if isinstance(v, dict) and isinstance(v.get("choice"), str)
    }


@contextlib.contextmanager
def _file_lock(file: Path) -> Iterator[None]:
    """Exclusive lock on ``file``.lock between processes (fcntl where available, else none)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: merge-on-write without a lock
        yield
        return
    with open(file.with_name(file.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_cases(cases: dict[str, dict[str, Any]], file: Path | None = None) -> None:
    """Add ``cases`` to the tuning file: under the lock, read what is there (other processes may have
    added cases), merge, and replace the file atomically."""
    file = file or path()
    file.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(file):
        merged = {**read_cases(file), **cases}
        info = machine()
        data = {"format": FORMAT, "version": VERSION, "machine_id": machine_id(info), "machine": info,
                "cases": dict(sorted(merged.items()))}  # fmt: skip
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def forget() -> None:
    """Drop what this process remembers (the file is read again at the next choice)."""
    global _file_cases
    with _lock:
        _memory.clear()
        _file_cases = None


# -- the choice ----------------------------------------------------------------------------------------


def tune_case(
    cells: Sequence[Cell],
    merge: str,
    reference: Callable,
    x: Tensor,
    static: Callable[[], str],
    fresh: bool = False,
) -> tuple[Candidate, dict[str, Any]] | None:
    """The fastest candidate for this case and its record (``{"choice", "ms"}``): remembered, read
    from the tuning file, or measured now (and written there); ``fresh`` measures again. None when
    only one candidate applies (then the static choice stands). ``static()`` names what the static
    rules would run (``dispatch.static_name``; passed in so this module never imports dispatch)."""
    global _file_cases
    cands = candidates(cells, merge, reference, x)
    if len(cands) < 2:
        return None
    by_name = {c.name: c for c in cands}
    key = case_key(cells, merge, x)
    with _lock:  # one measurement at a time in a process; other processes merge on write
        if _file_cases is None:
            _file_cases = read_cases()
        remembered = _memory.get(key)
        entry = _file_cases.get(key, {"choice": remembered.name if remembered else None})
        if fresh or entry.get("choice") not in by_name:  # unknown, or for other candidates: measure
            seconds = measure(cells, cands, x)
            name = min(seconds, key=seconds.__getitem__)
            static = static()
            if seconds.get(static, math.inf) <= TIE * seconds[name]:  # a near tie: keep the rule's path
                name = static
            ms = {k: round(v * 1e3, 3) for k, v in seconds.items()}
            entry = {"choice": name, "static": static, "ms": ms}
            _file_cases[key] = entry
            try:
                write_cases({key: entry})
            except OSError as e:  # a read-only cache: keep the choice for this process
                _warn_once("write", f"rnnkit: could not write the tuning file {path()} ({e})")
        _memory[key] = by_name[entry["choice"]]
    return by_name[entry["choice"]], entry


def choose(
    cells: Sequence[Cell], merge: str, reference: Callable, x: Tensor, static: Callable[[], str]
) -> Candidate | None:
    """What ``dispatch.plan`` asks: the fastest candidate (see :func:`tune_case`), or None."""
    cand = _memory.get(case_key(cells, merge, x))  # the common case: no lock, no file, no search
    if cand is not None and (cand.runner is None or cand.name != "reference" or cand.runner is reference):
        return cand
    found = tune_case(cells, merge, reference, x, static)
    return found[0] if found is not None else None
