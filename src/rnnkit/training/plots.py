"""PNG plots of a run's ``metrics.jsonl``: loss curves, gradient norm, learning rate.

matplotlib draws off screen (the Agg backend), so this works on a machine without a display.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from .checkpoint import atomic_write


def read_metrics(run_dir: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The training-step records and the validation records of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no such file; is {run_dir} a run directory?")
    train, valid = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a half-written last line
        if "loss" in record:
            train.append(record)
        elif "valid_loss" in record:
            valid.append(record)
    return train, valid


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over up to ``window`` finite values (non-finite ones are skipped)."""
    out, kept = [], []
    for v in values:
        if v is not None and math.isfinite(v):
            kept.append(v)
            kept = kept[-window:]
        out.append(sum(kept) / len(kept) if kept else math.nan)
    return out


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw ``loss.png`` (training loss, raw and smoothed, and validation loss against step),
    ``grad_norm.png`` (the pre-clip global gradient norm, log scale, with the clipping threshold) and
    ``lr.png`` into ``run_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    train, valid = read_metrics(run_dir)
    if not train:
        raise InputError(f"{run_dir / 'metrics.jsonl'}: no training steps logged yet")
    clip = _clip_norm(run_dir)
    steps = [r["step"] for r in train]
    window = max(1, len(train) // 50)
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4.5))
    losses = [r["loss"] if r["loss"] is not None else math.nan for r in train]
    if window > 1:
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (each step)")
    ax.plot(steps, smooth(losses, window), color="tab:blue", label=f"train (mean of {window} steps)")
    if valid:
        ax.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", color="tab:orange",
                label="validation")  # fmt: skip
        best = min(valid, key=lambda r: r["valid_loss"] if r["valid_loss"] is not None else math.inf)
        ax.set_title(f"{run_dir.name}: best validation loss {best['valid_loss']:.4f} at step {best['step']}")
    ax.set(xlabel="step", ylabel="loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, run_dir / "loss.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    norms = [r.get("grad_norm") if r.get("grad_norm") is not None else math.nan for r in train]
    ax.plot(steps, norms, color="tab:green", alpha=0.3 if window > 1 else 1.0, linewidth=0.8,
            label="||g|| before clipping")  # fmt: skip
    if window > 1:
        ax.plot(steps, smooth(norms, window), color="tab:green", label=f"mean of {window} steps")
    if clip is not None:
        ax.axhline(clip, color="tab:red", linestyle="--", label=f"clip_norm = {clip:g}")
    skipped = [r["step"] for r in train if r.get("skipped")]
    if skipped:
        ax.plot(skipped, [clip or 1.0] * len(skipped), "x", color="black", label="skipped (non-finite)")
    ax.set(xlabel="step", ylabel="global gradient norm", yscale="log", title="gradient norm")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    paths.append(_save(fig, run_dir / "grad_norm.png"))

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(steps, [r.get("lr", math.nan) for r in train], color="tab:purple")
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax.grid(alpha=0.3)
    paths.append(_save(fig, run_dir / "lr.png"))
    return paths


def _clip_norm(run_dir: Path) -> float | None:
    try:
        return json.loads((run_dir / "config.json").read_text())["train"]["clip_norm"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path
