"""Ctrl-C (SIGINT) and SIGTERM during training: the step under way finishes, a checkpoint is saved at it,
and :class:`RunInterrupted` says where, so nothing since the last checkpoint is lost and
``--resume`` continues exactly. A second signal while saving stops at once (the saved checkpoints are
written atomically, so the newest complete one still loads).

    with StopSignals() as signals:
        while ...:
            ...one step...
            if signals.requested():   # every rank agrees under torchrun
                ...save, then raise RunInterrupted(step, run_dir, signals.name)
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch

from . import distributed

SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)


class RunInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint at ``step`` in ``run_dir``."""

    def __init__(self, step: int, run_dir: str, signal_name: str) -> None:
        self.step, self.run_dir, self.signal_name = step, str(run_dir), signal_name
        super().__init__(f"interrupted ({signal_name}) at step {step}, saved in {run_dir}; resume")


class StopSignals:
    """Turns SIGINT and SIGTERM into a request to stop after the current step (main thread only; in other
    threads, and where signals cannot be caught, it does nothing and the signal acts as usual)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.name is not None:  # a second signal: the user means it, stop now
            self.__exit__()
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    def requested(self, device: torch.device | None = None) -> bool:
        """Whether a signal came (under torchrun: to any rank, so that all stop at the same step)."""
        asked = self.name is not None
        if distributed.active():
            flag = torch.tensor([float(asked)], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            asked = bool(flag.item())
            if asked and self.name is None:
                self.name = "SIGINT"  # another rank's signal
        return asked
