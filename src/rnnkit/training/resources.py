"""Memory checked before it is spent: a training run's parameters and activation memory estimated from
its configuration, compared with the memory available, so that ``--hidden 10000000`` is refused with the
numbers at once instead of failing in the allocator minutes (and gigabytes) later.

The estimate is deliberately simple and on the high side: float32 weights with their gradients and two
optimizer moments (AdamW), and for backpropagation through time every step's gate activations, hidden
and cell state, and the readout's logits and their gradient::

    params  = sum over layers of  directions * G * H * (input + H + 2)  + readout (+ embedding)
    bytes   = 16 * params + 4 * T * B * (layers * directions * H * (G + 2) + 2 * outputs)

with G the cell's gate count (LSTM 4, GRU 3, Elman 1, minGRU 2, minLSTM 3).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError

GATES = {"lstm": 4, "gru": 3, "rnn": 1, "irnn": 1, "mingru": 2, "minlstm": 3}
WARN_FRACTION = 0.5  # warn past this fraction of the available memory; refuse past all of it


@dataclass(frozen=True)
class Estimate:
    """What a training run needs: ``parameters`` and ``bytes`` (weights, gradients, optimizer moments and
    the activations kept for the backward pass of one batch)."""

    parameters: int
    bytes: int
    batch: int
    steps: int

    def describe(self) -> str:
        return (
            f"about {human(self.bytes)} ({self.parameters:,} parameters; activations of {self.batch} "
            f"sequences x {self.steps} steps)"
        )


def estimate(
    *, cell: str, hidden: int, layers: int = 1, bidirectional: bool = False, input_size: int, outputs: int,
    batch: int, steps: int, embedding: int = 0,
) -> Estimate:  # fmt: skip
    """The memory a recurrent model of these sizes needs to train on batches of ``batch`` x ``steps``.

    ``embedding``: rows of an input embedding of width ``input_size`` (a language model's vocabulary), or 0.
    """
    gates, directions = GATES.get(cell, 4), 2 if bidirectional else 1
    params, width = embedding * input_size, input_size
    for _ in range(layers):
        params += directions * gates * hidden * (width + hidden + 2)
        width = directions * hidden
    params += width * outputs + outputs
    activations = steps * batch * (layers * directions * hidden * (gates + 2) + 2 * outputs)
    return Estimate(params, 16 * params + 4 * activations, batch, steps)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux: ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check(need: Estimate, what: str, available: int | None = None) -> str | None:
    """Refuse (:class:`InputError`) a run that needs more than the available memory; return a warning past
    :data:`WARN_FRACTION` of it (else None). ``what`` names the options that set the sizes."""
    available = available_memory() if available is None else available
    if available is None:
        return None
    if need.bytes > available:
        raise InputError(
            f"{what}: training would need {need.describe()}, more than the {human(available)} of memory "
            "available; choose smaller sizes"
        )
    if need.bytes > WARN_FRACTION * available:
        return f"{what}: training will need {need.describe()} of the {human(available)} available"
    return None


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
