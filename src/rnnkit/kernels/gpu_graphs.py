"""CUDA graphs around the fused GPU kernels' time loops.

A step of ``gpu_fused.py`` is two or four launches (a cuBLAS product, a Triton kernel) of a few
microseconds of GPU work each, and launching them from Python costs about as much again. Captured once
as a CUDA graph, the whole loop of T steps replays with one launch.

A loop is a function ``loop(io, *consts)`` that reads and writes only the tensors of the dict ``io``
(name -> tensor or None), so it can run on a static copy of them: the first call with a new shape runs
eagerly (it compiles the Triton kernels); the second captures the loop on static buffers; every later
call copies its inputs into them, replays, and copies the outputs out (one device copy each way,
a few percent of the loop's time). ``RNNKIT_CUDA_GRAPHS=0`` turns graphs off (every call eager).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

ENV_OFF = "RNNKIT_CUDA_GRAPHS"
MAX_GRAPHS = 8  # captured loops kept (each holds static copies of its buffers), least recently used out

_SEEN = object()
_cache: OrderedDict[tuple, Any] = OrderedDict()
_streams: dict[int | None, Any] = {}
STATS = {"eager": 0, "captured": 0, "replayed": 0}
EMULATE = False  # tests: run the graph bookkeeping on CPU tensors too, replaying by calling the loop


def enabled() -> bool:
    return os.environ.get(ENV_OFF, "1").strip() not in ("0", "")


def clear() -> None:
    """Forget every captured loop (and free its buffers)."""
    _cache.clear()


def run(
    loop: Callable[..., None],
    io: dict[str, Tensor | None],
    outs: Sequence[str],
    carries: Sequence[str] = (),
    consts: tuple = (),
) -> None:
    """Run ``loop(io, *consts)``; on CUDA through a captured graph from the second call with the same
    shapes on. ``outs``: the names the loop only writes; ``carries``: those it reads and writes (copied
    in and out); every other name is an input (copied in)."""
    on_cuda = io_device(io).type == "cuda"
    if not ((on_cuda or EMULATE) and enabled()) or (on_cuda and torch.cuda.is_current_stream_capturing()):
        STATS["eager"] += 1
        loop(io, *consts)
        return
    key = (loop.__module__, loop.__qualname__, consts, tuple(outs), tuple(carries), _shapes(io))
    entry = _cache.get(key)
    if entry is None:  # first sight: run eagerly (compiles the kernels, warms up cuBLAS)
        _cache[key] = _SEEN
        STATS["eager"] += 1
        loop(io, *consts)
        return
    if entry is _SEEN:
        entry = _capture(loop, io, consts)
        STATS["captured"] += 1
        _cache[key] = entry
        while len(_cache) > MAX_GRAPHS:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    graph, static = entry
    for k, v in io.items():
        if v is not None and k not in outs:
            static[k].copy_(v)
    graph.replay()
    STATS["replayed"] += 1
    for k in (*outs, *carries):
        if io[k] is not None:
            io[k].copy_(static[k])


def io_device(io: dict[str, Tensor | None]) -> torch.device:
    return next(v for v in io.values() if v is not None).device


def _shapes(io: dict[str, Tensor | None]) -> tuple:
    return tuple(
        (k, None if v is None else (tuple(v.shape), v.dtype, v.device.index)) for k, v in sorted(io.items())
    )


class _Emulated:
    """Stands in for a CUDA graph on CPU tensors (tests: the static-buffer bookkeeping without a GPU)."""

    def __init__(self, loop: Callable[..., None], static: dict, consts: tuple) -> None:
        self.replay = lambda: loop(static, *consts)


def _capture(loop: Callable[..., None], io: dict[str, Tensor | None], consts: tuple) -> tuple:
    device = io_device(io)
    if device.type != "cuda":
        static = {k: None if v is None else v.clone() for k, v in io.items()}
        return _Emulated(loop, static, consts), static
    with torch.cuda.device(device):
        s = _streams.get(device.index)
        if s is None:  # one capture stream per GPU
            s = _streams[device.index] = torch.cuda.Stream()
        here = torch.cuda.current_stream()
        static = {k: None if v is None else v.clone() for k, v in io.items()}
        s.wait_stream(here)
        with torch.cuda.stream(s):  # one warm-up on the capture stream (cuBLAS workspace for it)
            loop(static, *consts)
        here.wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=s):
            loop(static, *consts)
    return graph, static
