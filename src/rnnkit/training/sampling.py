"""Scheduled sampling, teacher forcing that fades (Bengio et al. 2015, "Scheduled Sampling for Sequence
Prediction with Recurrent Neural Networks", section 2.4): at training step i an autoregressive model
is fed the ground truth with probability eps_i and its own prediction otherwise, eps_i decaying by one of

    linear            eps_i = max(floor, k - c i)
    exponential       eps_i = max(floor, k ** i)          (k < 1)
    inverse_sigmoid   eps_i = max(floor, k / (k + exp(i / k)))   (k >= 1)

and ``always`` (eps = 1, plain teacher forcing) by default.

Plain math, no torch: :class:`~rnnkit.training.config.TrainConfig` asks it directly.
"""

from __future__ import annotations

import math

TEACHER_FORCING = ("always", "linear", "exponential", "inverse_sigmoid")


def teacher_forcing_ratio(kind: str, step: int, k: float | None = None, c: float | None = None,
                          floor: float = 0.0, total_steps: int = 1) -> float:  # fmt: skip
    """eps_i, the probability of feeding the ground truth at training step ``step`` (see the module doc).

    Defaults when ``k`` or ``c`` is None: linear k = 1, c = 1 / total_steps (reaches the floor at the
    end); exponential k = 0.01 ** (1 / total_steps) (eps = 0.01 at the end); inverse sigmoid
    the k >= 1 with k ln k = total_steps / 2 (eps = 1/2 halfway through).
    """
    n = max(1, total_steps)
    if kind == "always":
        return 1.0
    if kind == "linear":
        k = 1.0 if k is None else k
        c = 1.0 / n if c is None else c
        eps = k - c * step
    elif kind == "exponential":
        k = 0.01 ** (1.0 / n) if k is None else k
        eps = k**step
    elif kind == "inverse_sigmoid":
        k = _half_way_k(n) if k is None else k
        z = step / k
        eps = k / (k + math.exp(z)) if z < 700 else 0.0
    else:
        raise ValueError(f"teacher forcing schedule must be one of {TEACHER_FORCING}, got {kind!r}")
    return float(min(1.0, max(floor, eps)))


def _half_way_k(n: int) -> float:
    """The k >= 1 with k ln k = n / 2, so that k / (k + exp(i / k)) = 1/2 at i = n / 2 (bisection)."""
    lo, hi = 1.0, max(2.0, float(n))
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * math.log(mid) < n / 2 else (lo, mid)
    return lo
