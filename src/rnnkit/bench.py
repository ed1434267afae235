"""Side-by-side speed comparisons: rnnkit against its peers, in one process, contenders alternated.

Each row times one model on one configuration (T, B, H, layers, direction, forward or forward +
backward): rnnkit with ``impl="auto"`` against a peer (``torch.nn``'s layer for the standard cells,
the plain Python loop, autograd through ``cell.step``, for every cell, and on request rnnkit itself
with its compiled loops switched off, peer "python-loops": the fused kernels' Python loops, which
shows what ``kernels/compiled.py`` gains). Runs alternate between
the contenders after a warm-up, and the median of ``repeats`` runs is reported; speedup = peer time /
rnnkit time. Nothing here asserts a time: results go to docs/benchmarks.md.

Option rows (:func:`option_rows`, ``"option"`` in the config) time each regularisation and state
option of ``rnnkit.nn.LSTM`` / ``GRU`` (training mode, forward + backward) against the same layer
without it; their peer is "without", and speedup < 1 is the option's cost (the bar is >= 1/1.3).

Streaming rows (:func:`stream_rows`, ``"stream": True`` in the config, "step" in the table) time one
generation step at B=1: ``rnnkit.nn.LSTM(...).step`` against ``torch.nn.LSTM`` called on a single
time step, the state passed back in; their times are per step.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .cells import ElmanCell, GRUCell, JordanCell, LSTMCell
from .kernels.compiled import switched_off
from .layers import GRU, LSTM, RNN, Recurrent

# name -> (rnnkit factory (input_size, hidden, layers, bidirectional, impl), torch.nn class or None,
#          gates per unit for the FLOP count)
MODELS: dict[str, tuple[Callable[..., torch.nn.Module], type | None, int]] = {
    "LSTM": (lambda d, h, n, bi, impl: LSTM(d, h, n, bidirectional=bi, impl=impl), torch.nn.LSTM, 4),
    "GRU": (lambda d, h, n, bi, impl: GRU(d, h, n, bidirectional=bi, impl=impl), torch.nn.GRU, 3),
    "RNN": (lambda d, h, n, bi, impl: RNN(d, h, n, bidirectional=bi, impl=impl), torch.nn.RNN, 1),
    "GRU textbook": (
        lambda d, h, n, bi, impl: Recurrent(GRUCell(d, h, reset_after=False), n, bi, impl=impl),
        None,
        3,
    ),
    "LSTM peephole": (
        lambda d, h, n, bi, impl: Recurrent(LSTMCell(d, h, peephole=True), n, bi, impl=impl),
        None,
        4,
    ),
    "LSTM layernorm": (
        lambda d, h, n, bi, impl: Recurrent(LSTMCell(d, h, layer_norm=True), n, bi, impl=impl),
        None,
        4,
    ),
    "Jordan": (lambda d, h, n, bi, impl: Recurrent(JordanCell(d, h, h), n, bi, impl=impl), None, 2),
    "Elman relu": (lambda d, h, n, bi, impl: Recurrent(ElmanCell(d, h, "relu"), n, bi, impl=impl), None, 1),
    "Elman sigmoid": (
        lambda d, h, n, bi, impl: Recurrent(ElmanCell(d, h, "sigmoid"), n, bi, impl=impl),
        None,
        1,
    ),
}


@dataclass
class Row:
    name: str
    config: dict[str, Any]
    rnnkit_ms: float
    peer: str
    peer_ms: float
    speedup: float
    rnnkit_gflops: float


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }


def flops(gates: int, T: int, B: int, D: int, H: int, layers: int, bi: bool, backward: bool) -> float:
    """Multiply-adds of the GEMMs, times 2; forward + backward counts 3x the forward."""
    dirs = 2 if bi else 1
    total = 0.0
    for layer in range(layers):
        d_in = D if layer == 0 else H * dirs
        total += dirs * 2 * T * B * (d_in + H) * gates * H
    return total * (3 if backward else 1)


def grid(quick: bool) -> Iterator[dict[str, Any]]:
    if quick:
        points = [(64, 256, 1, False)]
    else:
        points = list(itertools.product([1, 16, 64], [128, 256, 512], [1, 2], [False, True]))
    for B, H, layers, bi in points:
        for backward in (False, True):
            yield {
                "T": 100,
                "B": B,
                "H": H,
                "D": H,
                "layers": layers,
                "bidirectional": bi,
                "backward": backward,
            }


# "wall": elapsed time. "cpu": this process's CPU time, for a machine other work keeps busy: time
# slices lost to other processes do not count (meaningful with one torch thread, where no thread
# spins waiting for another).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _timer(
    model: torch.nn.Module, x: torch.Tensor, backward: bool, compiled: bool = True, clock: str = "wall"
) -> Callable[[], float]:
    now = CLOCKS[clock]

    def run() -> float:
        with contextlib.nullcontext() if compiled else switched_off():
            return timed()

    def timed() -> float:
        start = now()
        if backward:
            y, _ = model(x)
            y.sum().backward()
        else:
            with torch.no_grad():
                model(x)
        return now() - start

    return run


def compare(
    name: str,
    cfg: dict[str, Any],
    repeats: int = 7,
    peers: tuple[str, ...] = ("torch", "loop"),
    clock: str = "wall",
) -> list[Row]:
    """Time rnnkit against each available peer on one configuration: "torch" (torch.nn's layer, where
    torch has the model), "loop" (the reference loop over ``cell.step``), "python-loops" (rnnkit with
    its compiled loops switched off)."""
    make, torch_cls, gates = MODELS[name]
    T, B, D, H, layers, bi = cfg["T"], cfg["B"], cfg["D"], cfg["H"], cfg["layers"], cfg["bidirectional"]
    torch.manual_seed(0)
    x = torch.randn(T, B, D, requires_grad=cfg["backward"])
    contenders = {"rnnkit": make(D, H, layers, bi, "auto")}
    if "torch" in peers and torch_cls is not None:
        contenders[f"torch.nn.{torch_cls.__name__}"] = torch_cls(D, H, layers, bidirectional=bi)
    if "loop" in peers:
        contenders["python-loop"] = make(D, H, layers, bi, "reference")
    timers = {k: _timer(m, x, cfg["backward"], clock=clock) for k, m in contenders.items()}
    if "python-loops" in peers:  # the same model, its fused kernels on their Python loops
        timers["rnnkit (Python loops)"] = _timer(contenders["rnnkit"], x, cfg["backward"], False, clock)
    times: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(2):  # warm-up: packing caches, allocator, lazy init
        for t in timers.values():
            t()
    for _ in range(repeats):  # alternate, so drift in the machine's speed hits every contender alike
        for k, t in timers.items():
            times[k].append(t())
    ours = statistics.median(times.pop("rnnkit"))
    rate = flops(gates, T, B, D, H, layers, bi, cfg["backward"]) / ours / 1e9
    return [
        Row(name, cfg, ours * 1e3, peer, statistics.median(ts) * 1e3, statistics.median(ts) / ours, rate)
        for peer, ts in times.items()
    ]


def gemm_rate(B: int = 64, H: int = 512) -> float:
    """The machine's packed-GEMM rate (GFLOP/s) on one recurrent step's product, for reference."""
    from .kernels.packed import linear

    w, x = torch.randn(4 * H, H), torch.randn(B, H)
    f = linear(w, B)
    for _ in range(10):
        f(x, None)
    start, n = time.perf_counter(), 200
    for _ in range(n):
        f(x, None)
    return 2 * B * H * 4 * H * n / (time.perf_counter() - start) / 1e9


# Streaming generation: name -> (rnnkit drop-in, torch.nn class, gates per unit)
STREAM_MODELS: dict[str, tuple[type, type, int]] = {
    "LSTM": (LSTM, torch.nn.LSTM, 4),
    "GRU": (GRU, torch.nn.GRU, 3),
    "RNN": (RNN, torch.nn.RNN, 1),
}


def _stream_timer(step: Callable, x: torch.Tensor, steps: int) -> Callable[[], float]:
    """Seconds per step of ``steps`` calls ``y, state = step(x, state)`` from a zero state."""

    def run() -> float:
        state = None
        start = time.perf_counter()
        for _ in range(steps):
            _, state = step(x, state)
        return (time.perf_counter() - start) / steps

    return run


def stream_rows(
    repeats: int = 7,
    steps: int = 200,
    H: int = 512,
    layers: int = 2,
    models: list[str] | None = None,
) -> list[Row]:
    """Per-step latency of streaming generation at B=1: ``rnnkit.nn.<Model>(H, H, layers).step`` on
    (1, H) against ``torch.nn.<Model>`` called on (1, 1, H), one time step a call, the state passed back
    in each time, both under ``torch.no_grad()``. Each run is ``steps`` steps from a zero state; runs
    alternate between the two after a warm-up run each, and the median of ``repeats`` runs is
    reported in ms per step (config ``T=1, B=1, "stream": True``)."""
    rows = []
    for name in models or list(STREAM_MODELS):
        ours_cls, torch_cls, gates = STREAM_MODELS[name]
        torch.manual_seed(0)
        ours, theirs = ours_cls(H, H, layers), torch_cls(H, H, layers)
        x = torch.randn(1, H)

        timers = {
            "rnnkit": _stream_timer(ours.step, x, steps),
            "torch": _stream_timer(theirs, x[None], steps),
        }
        times: dict[str, list[float]] = {k: [] for k in timers}
        with torch.no_grad():
            for t in timers.values():  # warm-up: packing, oneDNN primitives, allocator
                t()
            for _ in range(repeats):  # alternate, so drift in the machine's speed hits both alike
                for k, t in timers.items():
                    times[k].append(t())
        ours_s, theirs_s = statistics.median(times["rnnkit"]), statistics.median(times["torch"])
        cfg = {"T": 1, "B": 1, "H": H, "D": H, "layers": layers, "bidirectional": False}
        cfg.update({"backward": False, "stream": True, "steps": steps})
        rate = flops(gates, 1, 1, H, H, layers, False, False) / ours_s / 1e9
        peer = f"torch.nn.{torch_cls.__name__}"
        rows.append(Row(name, cfg, ours_s * 1e3, peer, theirs_s * 1e3, theirs_s / ours_s, rate))
    return rows


# option -> (the layer's keyword arguments, forward keyword arguments, layers); the baseline is the same
# layer (same layers) with none of them. "states" times forward_with_states against forward.
OPTIONS: dict[str, tuple[dict[str, Any], str | None, int]] = {
    "input_dropout (variational)": ({"input_dropout": 0.25, "variational": True}, None, 1),
    "dropout between layers (variational)": ({"dropout": 0.25, "variational": True}, None, 2),
    "state_dropout": ({"state_dropout": 0.25}, None, 1),
    "zoneout": ({"zoneout": 0.1}, None, 1),
    "weight_drop": ({"weight_drop": 0.5}, None, 1),
    "learn_initial_state": ({"learn_initial_state": True}, None, 1),
    "reset mask": ({}, "reset", 1),
    "every step's states": ({}, "states", 1),
}


def _option_timer(model: torch.nn.Module, x: torch.Tensor, extra: str | None) -> Callable[[], float]:
    reset = torch.rand(x.shape[:2]) < 0.01 if extra == "reset" else None  # ~1 boundary per 100 tokens

    def run() -> float:
        start = time.perf_counter()
        if extra == "states":
            out = model.forward_with_states(x)
            y = out.output + out.states[0][:, -1].sum()  # the states take part in the loss
        else:
            y, _ = model(x, reset=reset)
        y.sum().backward()
        return time.perf_counter() - start

    return run


def option_rows(
    repeats: int = 7, models: list[str] | None = None, T: int = 100, B: int = 64, H: int = 256
) -> list[Row]:
    """Each option in :data:`OPTIONS` against the same drop-in without it, training mode, forward +
    backward on (T, B, H) inputs, the two alternated after a warm-up; median of ``repeats``."""
    rows = []
    for name in models or ["LSTM", "GRU"]:
        make, _, gates = MODELS[name]
        for option, (kwargs, extra, layers) in OPTIONS.items():
            torch.manual_seed(0)
            plain = make(H, H, layers, False, "auto").train()
            model = type(plain)(H, H, layers, **kwargs).train()
            model.load_state_dict(plain.state_dict(), strict=False)
            x = torch.randn(T, B, H, requires_grad=True)
            timers = {"with": _option_timer(model, x, extra), "without": _option_timer(plain, x, None)}
            times: dict[str, list[float]] = {k: [] for k in timers}
            for _ in range(2):
                for t in timers.values():
                    t()
            for _ in range(repeats):
                for k, t in timers.items():
                    times[k].append(t())
            ours, theirs = statistics.median(times["with"]), statistics.median(times["without"])
            cfg = {"T": T, "B": B, "H": H, "D": H, "layers": layers, "bidirectional": False}
            cfg.update({"backward": True, "option": option})
            rate = flops(gates, T, B, H, H, layers, False, True) / ours / 1e9
            speedup = theirs / ours
            rows.append(Row(f"{name} {option}", cfg, ours * 1e3, "without", theirs * 1e3, speedup, rate))
    return rows


def run(
    quick: bool = False,
    models: list[str] | None = None,
    repeats: int = 7,
    progress: bool = True,
    peers: tuple[str, ...] = ("torch", "loop"),
    stream: bool = True,
    options: bool = False,
    grid_rows: bool = True,
) -> dict[str, Any]:
    """The grid (``quick``: one point; none without ``grid_rows``), with ``stream`` the streaming rows
    of :func:`stream_rows` for the chosen models among LSTM, GRU and RNN (``quick``: 50 steps a run
    instead of 200), and with ``options`` the option rows of :func:`option_rows` (LSTM, GRU)."""
    from tqdm import tqdm

    names = models or list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(MODELS)}")
    jobs = [(n, cfg) for cfg in grid(quick) for n in names] if grid_rows else []
    rows: list[Row] = []
    for name, cfg in tqdm(jobs, desc="bench", disable=not progress, file=None):
        rows += compare(name, cfg, repeats, peers)
    streamed = [n for n in names if n in STREAM_MODELS]
    if stream and streamed:
        rows += stream_rows(repeats, steps=50 if quick else 200, models=streamed)
    optioned = [n for n in names if n in ("LSTM", "GRU")]
    if options and optioned:
        rows += option_rows(repeats, optioned)
    return {"machine": machine(), "packed_gemm_gflops": gemm_rate(), "rows": [asdict(r) for r in rows]}


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        "| model | B | H | layers | dir | pass | rnnkit ms | peer | peer ms | speedup | GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        c = r["config"]
        digits = 3 if c.get("stream") else 2  # a streaming row is one step: a fraction of a ms
        if c.get("option"):  # an option row: its cost against the same layer without it
            lines.append(
                f"| {r['name']} | {c['B']} | {c['H']} | {c['layers']} | uni | fwd+bwd "
                f"| {r['rnnkit_ms']:.2f} | without | {r['peer_ms']:.2f} | {r['speedup']:.2f} "
                f"| {r['rnnkit_gflops']:.0f} |"
            )
            continue
        lines.append(
            f"| {r['name']} | {c['B']} | {c['H']} | {c['layers']} | {'bi' if c['bidirectional'] else 'uni'} "
            f"| {'step' if c.get('stream') else 'fwd+bwd' if c['backward'] else 'fwd'} "
            f"| {r['rnnkit_ms']:.{digits}f} | {r['peer']} "
            f"| {r['peer_ms']:.{digits}f} | {r['speedup']:.2f} | {r['rnnkit_gflops']:.0f} |"
        )
    return "\n".join(lines)
