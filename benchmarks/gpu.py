"""The GPU benchmark grid (issue 19): rnnkit on CUDA against cuDNN (torch.nn) and against its own loops.

    python benchmarks/gpu.py --out results/gpu_bench.md [--quick]

Rows, at B=64, H=512 (input 512), T=256, one layer, float32 (TF32 off) and bfloat16:
- standard cells through ``impl="auto"`` (cuDNN via torch's op) vs torch.nn: forward (no grad) and
  forward+backward;
- layer-norm LSTM, peephole LSTM, textbook GRU, LSTM with zoneout (training), Elman relu with state
  dropout: forward+backward through the Triton kernels (``auto``), vs cuDNN's plain LSTM at the same
  size, vs their own Python loop (``impl="reference"``), and the kernels without CUDA graphs;
- minGRU / minLSTM at T=4096: the parallel scan vs their step loop, forward+backward;
- a character LM training step (2-layer LSTM, H=512, B=64, T=256): tokens per second.
Every ratio is measured alternately in this process (median of the repeats, CUDA events).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, LSTMCell, Recurrent
from rnnkit.cells.minimal import MinGRUCell, MinLSTMCell
from rnnkit.kernels import gpu_graphs

B, H, T, F = 64, 512, 256, 512
T_SCAN = 4096


def time_ms(fn: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def compare(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 2) -> dict[str, float]:
    """Median ms of each, the repeats interleaved (a, b, a, b, ...) so drifts hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(time_ms(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def fwd(model, x) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return model(x)

    return run


def fwd_bwd(model, x) -> Callable[[], object]:
    def run():
        y = model(x)[0]
        y.backward(torch.ones_like(y))
        model.zero_grad(set_to_none=True)

    return run


def no_graphs(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        os.environ[gpu_graphs.ENV_OFF] = "0"
        try:
            return fn()
        finally:
            del os.environ[gpu_graphs.ENV_OFF]

    return run


def standard_rows(dtype, reps: int) -> list[dict]:
    rows = []
    for kind in ("LSTM", "GRU", "RNN"):
        torch.manual_seed(0)
        theirs = getattr(torch.nn, kind)(F, H).cuda().to(dtype)
        ours = getattr(rnn, kind)(F, H).cuda().to(dtype)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(T, B, F, device="cuda", dtype=dtype)
        for mode, make in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            t = compare({"rnnkit": make(ours, x), "torch": make(theirs, x)}, reps)
            rows.append({"cell": kind, "mode": mode, "rnnkit_ms": t["rnnkit"], "cudnn_ms": t["torch"],
                         "speed_vs_cudnn": t["torch"] / t["rnnkit"]})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


NONSTANDARD = {
    "lstm layer norm": (lambda: LSTMCell(F, H, layer_norm=True), {}),
    "lstm peephole": (lambda: LSTMCell(F, H, peephole=True), {}),
    "gru textbook": (lambda: GRUCell(F, H, reset_after=False), {}),
    "lstm zoneout 0.1": (lambda: LSTMCell(F, H), {"zoneout": 0.1}),
    "elman relu, state dropout 0.2": (lambda: ElmanCell(F, H, nonlinearity="relu"), {"state_dropout": 0.2}),
    "lstm plain, impl=fused": (lambda: LSTMCell(F, H), {"impl": "fused"}),
}


def nonstandard_rows(dtype, reps: int, loop_reps: int) -> list[dict]:
    torch.manual_seed(0)
    cudnn = torch.nn.LSTM(F, H).cuda().to(dtype)
    x = torch.randn(T, B, F, device="cuda", dtype=dtype)
    rows = []
    for name, (make, options) in NONSTANDARD.items():
        options = {"impl": "auto", **options}
        fast = Recurrent(make(), **options).cuda().to(dtype)
        loop = Recurrent(make(), **{**options, "impl": "reference"}).cuda().to(dtype)
        loop.load_state_dict(fast.state_dict())
        t = compare({"kernels": fwd_bwd(fast, x), "cudnn_lstm": fwd_bwd(cudnn, x),
                     "no_graphs": no_graphs(fwd_bwd(fast, x))}, reps)  # fmt: skip
        t_fwd = compare({"kernels": fwd(fast, x), "cudnn_lstm": fwd(cudnn, x)}, reps)
        t_loop = compare({"loop": fwd_bwd(loop, x)}, loop_reps, warmup=1)
        rows.append({"cell": name, "kernels_ms": t["kernels"], "no_graphs_ms": t["no_graphs"],
                     "cudnn_lstm_ms": t["cudnn_lstm"], "loop_ms": t_loop["loop"],
                     "x_cudnn_lstm": t["kernels"] / t["cudnn_lstm"],
                     "speedup_vs_loop": t_loop["loop"] / t["kernels"],
                     "fwd_ms": t_fwd["kernels"], "fwd_cudnn_lstm_ms": t_fwd["cudnn_lstm"]})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


SWEEP = [(16, 256), (64, 256), (256, 256), (16, 1024), (64, 1024), (256, 1024), (256, 512)]


def sweep_rows(dtype, reps: int) -> list[dict]:
    """The cells cuDNN has, through the Triton kernels (impl="fused") vs torch.nn (cuDNN): the data
    behind ``gpu_fused.GPU_WINS`` (which sizes ``auto`` sends to the kernels)."""
    rows = []
    for b, h in SWEEP:
        x = torch.randn(T, b, h, device="cuda", dtype=dtype)
        for kind, cell in (("LSTM", LSTMCell), ("GRU", GRUCell), ("RNN", ElmanCell)):
            torch.manual_seed(0)
            theirs = getattr(torch.nn, kind)(h, h).cuda().to(dtype)
            ours = Recurrent(cell(h, h), impl="fused").cuda().to(dtype)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(ours.cells[0], name).copy_(getattr(theirs, name + "_l0"))
            t = compare({"fused": fwd_bwd(ours, x), "cudnn": fwd_bwd(theirs, x)}, reps)
            f = compare({"fused": fwd(ours, x), "cudnn": fwd(theirs, x)}, reps)
            rows.append({"cell": kind, "B": b, "H": h, "fwd+bwd fused_ms": t["fused"], "cudnn_ms": t["cudnn"],
                         "fwd+bwd speedup": t["cudnn"] / t["fused"], "fwd fused_ms": f["fused"],
                         "fwd cudnn_ms": f["cudnn"], "fwd speedup": f["cudnn"] / f["fused"]})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def scan_rows(dtype, reps: int) -> list[dict]:
    rows = []
    TL = T_SCAN
    x = torch.randn(TL, B, F, device="cuda", dtype=dtype)
    for name, make in (("minGRU", MinGRUCell), ("minLSTM", MinLSTMCell)):
        torch.manual_seed(0)
        fast = Recurrent(make(F, H), impl="auto").cuda().to(dtype)
        loop = Recurrent(make(F, H), impl="reference").cuda().to(dtype)
        loop.load_state_dict(fast.state_dict())
        t = compare({"scan": fwd_bwd(fast, x)}, reps)
        t_loop = compare({"loop": fwd_bwd(loop, x)}, 2, warmup=1)
        rows.append({"cell": name, "T": TL, "scan_ms": t["scan"], "loop_ms": t_loop["loop"],
                     "speedup": t_loop["loop"] / t["scan"]})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def lm_tokens_per_second(dtype, steps: int) -> list[dict]:
    from rnnkit.models import LanguageModel, LMConfig

    torch.manual_seed(0)
    model = LanguageModel(LMConfig(65, cell="lstm", hidden=H, layers=2)).cuda().to(dtype)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 65, (T + 1, B), device="cuda")

    def step():
        logits, _ = model(tokens[:-1])
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 65), tokens[1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = compare({"step": step}, steps)["step"]
    row = {"model": "char LM, 2-layer LSTM H=512", "B": B, "T": T, "step_ms": ms}
    return [{**row, "tokens_per_s": B * T / ms * 1e3}]


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="results file (markdown; a .json beside it)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, float32 only")
    ap.add_argument("--parts", default="standard,nonstandard,scan,lm", help="comma-separated parts to run")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    reps, loop_reps = (5, 1) if args.quick else (15, 3)
    parts = set(args.parts.split(","))
    head = (f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"B={B} H={H} T={T} input {F}, TF32 off; median ms of {reps} interleaved repeats")  # fmt: skip
    out = [f"# GPU benchmark\n\n{head}\n"]
    results: dict = {"head": head}
    for dtype in (torch.float32,) if args.quick else (torch.float32, torch.bfloat16):
        name = str(dtype).replace("torch.", "")
        todo = {  # part -> (title, function, arguments)
            "standard": ("standard cells through auto vs torch.nn (cuDNN)", standard_rows, (dtype, reps)),
            "nonstandard": (
                "cells cuDNN lacks, forward+backward",
                nonstandard_rows,
                (dtype, reps, loop_reps),
            ),
            "scan": ("minimal RNNs, T=4096, forward+backward", scan_rows, (dtype, max(3, reps // 3))),
            "sweep": (
                "standard cells, Triton kernels vs cuDNN, T=256",
                sweep_rows,
                (dtype, max(5, reps // 2)),
            ),
            "lm": ("char-LM training step", lm_tokens_per_second, (dtype, max(5, reps // 2))),
        }
        sections = []
        for part, (title, rows_of, fn_args) in todo.items():
            if part in parts:
                try:
                    sections.append((title, rows_of(*fn_args)))
                except Exception as e:  # one broken part must not cost the others' numbers
                    traceback.print_exc()
                    sections.append((title, [{"error": f"{type(e).__name__}: {e}"[:300]}]))
        for title, rows in sections:
            out.append(f"## {title}, {name}\n\n{table(rows)}\n")
            results[f"{title}, {name}"] = rows
        text = "\n".join(out)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
            args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)
    print("graphs:", gpu_graphs.STATS)


if __name__ == "__main__":
    main()
