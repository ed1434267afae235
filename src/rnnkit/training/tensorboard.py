"""TensorBoard event files for a run (``--tensorboard``), written through torch's own ``SummaryWriter``
into ``run_dir/tensorboard/``: every number of ``metrics.jsonl`` as a scalar (``train/loss``,
``train/grad_norm``, ``train/lr``, ``valid/loss``, ...) and, at the first step and every ``log_every``
steps, a histogram of each parameter's gradient (``grad/<name>``). ``tensorboard --logdir RUN/tensorboard``
shows them.

A resumed run purges the events past its checkpoint's step, as ``metrics.jsonl`` drops its lines.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InputError


class TensorBoardLog:
    """Scalars and gradient histograms of one run; ``step`` is where a resumed run continues (its later
    events are purged)."""

    def __init__(self, run_dir: str | os.PathLike[str], step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch's writer needs the tensorboard package
            raise InputError(
                f"--tensorboard needs the tensorboard package ({e}); pip install 'rnnkit[tensorboard]'"
            ) from None
        self.path = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.path), purge_step=step or None)

    def write(self, record: dict[str, Any], model: nn.Module | None = None) -> None:
        """One ``metrics.jsonl`` record as scalars at its step; with ``model``, its gradients' histograms."""
        step = record["step"]
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                group, name = ("valid", key[6:]) if key.startswith("valid_") else ("train", key)
                self.writer.add_scalar(f"{group}/{name}", value, step)
        if model is not None:
            for name, p in model.named_parameters():
                if p.grad is not None and bool(p.grad.isfinite().all()):
                    self.writer.add_histogram(f"grad/{name}", p.grad.detach().float().cpu(), step)

    def close(self) -> None:
        self.writer.close()
