"""Synthetic long-range tasks, each with the score of its trivial baseline stated.

Every generator takes the number of examples, the length and a ``torch.Generator`` and returns
time-first tensors: inputs ``x`` (T, N, F) and targets. Shapes per task are in each docstring.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import InputError, check_int


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else seed)


def adding_problem(n: int, length: int, seed: int | torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Hochreiter & Schmidhuber 1997 (as in Le et al. 2015): x (T, N, 2) holds a random value in [0, 1)
    and a marker (1 at one step of the first half, one of the second, 0 elsewhere); y (N, 1) is the sum
    of the two marked values. Baseline: always predicting 1 gives MSE 1/6 = 0.167."""
    check_int("n", n)
    check_int("length", length, minimum=2)
    g = _generator(seed)
    values = torch.rand(length, n, generator=g)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, length, (n,), generator=g)
    markers = torch.zeros(length, n)
    cols = torch.arange(n)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    y = (values * markers).sum(0, keepdim=True).t()  # (N, 1)
    return torch.stack([values, markers], -1), y


ADDING_BASELINE_MSE = 1 / 6


def copy_memory(n: int, delay: int, seed: int | torch.Generator | None = None, symbols: int = 8,
                length: int = 10) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Arjovsky et al. 2016: ``length`` symbols from 1..``symbols``, then ``delay - 1`` blanks (0), a
    delimiter (``symbols + 1``) and ``length`` more blanks; the target is blanks until the delimiter and
    then the symbols, in order. x (T, N) and y (T, N) int64 with T = delay + 2 * length. Baseline: blanks,
    then a uniform guess: cross-entropy ``length * ln(symbols) / (delay + 2 * length)``."""
    check_int("n", n)
    check_int("delay", delay)
    g = _generator(seed)
    T = delay + 2 * length
    data = torch.randint(1, symbols + 1, (length, n), generator=g)
    x = torch.zeros(T, n, dtype=torch.long)
    y = torch.zeros(T, n, dtype=torch.long)
    x[:length] = data
    x[length + delay - 1] = symbols + 1
    y[-length:] = data
    return x, y


def copy_memory_baseline(delay: int, symbols: int = 8, length: int = 10) -> float:
    return length * math.log(symbols) / (delay + 2 * length)


def binary_addition(n: int, bits: int, seed: int | torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The lectures' sequential adder: two ``bits - 1``-bit numbers, least significant bit first; at step
    t the target is bit t of their sum (``bits`` bits, so the carry fits). x (T, N, 2) float, y (T, N)
    int64. Baseline: a bit is 1 about half the time, so a constant guess is right 50% of steps."""
    check_int("bits", bits, minimum=2)
    g = _generator(seed)
    a = torch.randint(0, 2 ** (bits - 1), (n,), generator=g)
    b = torch.randint(0, 2 ** (bits - 1), (n,), generator=g)
    shifts = torch.arange(bits)[:, None]
    x = torch.stack([(a[None] >> shifts) & 1, (b[None] >> shifts) & 1], -1).float()  # (T, N, 2)
    return x, ((a + b)[None] >> shifts) & 1


def parity(n: int, length: int, seed: int | torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Running parity of a bit stream: x (T, N, 1) bits, y (T, N) int64, y_t = x_0 xor ... xor x_t.
    Baseline: 50% (the parity of a random prefix is a fair coin)."""
    check_int("length", length)
    g = _generator(seed)
    bits = torch.randint(0, 2, (length, n), generator=g)
    return bits[..., None].float(), bits.cumsum(0) % 2


def sine_waves(n: int, length: int, seed: int | torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Next-value prediction on sine waves of random frequency (0.02..0.2 cycles per step), phase and
    amplitude (0.5..1): x (T, N, 1) the wave, y (T, N, 1) the wave one step later. Baseline: repeating
    the current value, MSE = mean of (x_{t+1} - x_t)^2 (:func:`sine_baseline_mse` computes it)."""
    check_int("length", length)
    g = _generator(seed)
    freq = 0.02 + 0.18 * torch.rand(n, generator=g)
    phase = 2 * math.pi * torch.rand(n, generator=g)
    amp = 0.5 + 0.5 * torch.rand(n, generator=g)
    t = torch.arange(length + 1, dtype=torch.float32)[:, None]
    wave = amp * torch.sin(2 * math.pi * freq * t + phase)  # (T + 1, N)
    return wave[:-1, :, None], wave[1:, :, None]


def sine_baseline_mse(x: Tensor, y: Tensor) -> float:
    return float(((y - x) ** 2).mean())


def delayed_recall(n: int, delay: int, seed: int | torch.Generator | None = None, symbols: int = 8,
                   fillers: int = 4) -> Tensor:  # fmt: skip
    """A token stream for truncated BPTT whose only predictable tokens depend on one ``delay + 1`` steps
    back: ``n`` segments, each ``[s, f_1 .. f_{delay-1}, ?, s]``: a symbol ``s`` (ids ``fillers`` ..
    ``fillers + symbols - 1``), ``delay - 1`` random fillers (ids 0 .. ``fillers - 1``), the cue ``?`` (id
    ``fillers + symbols``, see :func:`recall_cue`) and ``s`` again. Returns ids (n * (delay + 2),) int64.
    A language model predicts the token after each cue right only if it kept ``s`` in its state for
    ``delay`` steps; without it, it guesses: accuracy ``1 / symbols``, cross-entropy ``ln(symbols)``."""
    check_int("n", n)
    check_int("delay", delay)
    g = _generator(seed)
    s = torch.randint(fillers, fillers + symbols, (n, 1), generator=g)
    filler = torch.randint(0, fillers, (n, delay - 1), generator=g)
    cue = torch.full((n, 1), recall_cue(symbols, fillers))
    return torch.cat([s, filler, cue, s], 1).flatten()


def recall_cue(symbols: int = 8, fillers: int = 4) -> int:
    """The id of :func:`delayed_recall`'s cue; its vocabulary is ``recall_cue() + 1`` ids."""
    return fillers + symbols


GENERATORS = {"adding": adding_problem, "copy": copy_memory, "binary_addition": binary_addition,
              "parity": parity, "sine": sine_waves}  # fmt: skip
TASKS = tuple(GENERATORS)


def make_batch(task: str, n: int, length: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` examples of ``task`` (one of :data:`TASKS`) with sequences of ``length`` (copy: the delay),
    drawn from a generator seeded with ``seed``."""
    if task not in GENERATORS:
        raise InputError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return GENERATORS[task](n, length, torch.Generator().manual_seed(seed))
