"""Training a language model with truncated BPTT: one function, ``train_lm``, that reads top to bottom.

Run directory (see :mod:`rnnkit.training.checkpoint` for ``checkpoints/``)::

    run_dir/
      config.json       {"train": TrainConfig, "model": LMConfig}, written atomically
      metrics.jsonl     one JSON object per line: a training step, or a validation result
      checkpoints/      weights, optimizer, step, RNG states, stream position, carried hidden state

Exact resume: the checkpoint holds everything the next step depends on (weights, AdamW moments, the
generators that drive dropout, the position in the data and the hidden state carried into the next
chunk), so a run stopped and resumed computes the same numbers as one that never stopped. Bit-exact on
the CPU in one process with a fixed thread count (``torch.set_num_threads``): a different number of
threads may sum in a different order; CUDA needs deterministic algorithms as well.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..cells.base import State, map_state
from ..data.text import TBPTTStream
from ..errors import InputError, check_int
from .checkpoint import atomic_write, capture_rng, load_checkpoint, restore_rng, save_checkpoint

LN2 = math.log(2.0)


@dataclass
class TrainConfig:
    """How to train. Validated on construction, saved in ``run_dir/config.json``.

    Attributes:
        steps: optimizer steps in all (a resumed run continues up to this).
        batch_size: B, parallel streams over the corpus.
        seq_len: tau, the truncated BPTT window: gradients flow through at most this many steps.
        lr, weight_decay: AdamW's.
        clip_norm: theta for clipping by global norm, ``g <- min(1, theta / ||g||) g``; None = off.
        clip_value: clamp each gradient entry to [-clip_value, clip_value] after the norm clip; None = off.
        seed: seeds torch, python and numpy at the start of a fresh run (a resumed run restores them).
        checkpoint_every: save a checkpoint every this many steps (and at the end, and at a new best).
        keep_last: checkpoints kept on disk (the best one is kept besides).
        eval_every: validation loss every this many steps (and at the end).
        log_every: refresh the progress bar's loss every this many steps (metrics.jsonl gets every step).
        minutes: a wall-time budget for this process: training stops after the first step past it (with a
            final validation and checkpoint), even before ``steps``; a resumed run gets a fresh budget.
    """

    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    clip_value: float | None = None
    seed: int = 0
    checkpoint_every: int = 100
    keep_last: int = 3
    eval_every: int = 100
    log_every: int = 10
    minutes: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "batch_size",
            "seq_len",
            "checkpoint_every",
            "keep_last",
            "eval_every",
            "log_every",
        ):
            check_int(name, getattr(self, name))
        check_int("seed", self.seed, minimum=0)
        _check_real("lr", self.lr, positive=True)
        _check_real("weight_decay", self.weight_decay, positive=False)
        for name in ("clip_norm", "clip_value", "minutes"):
            if getattr(self, name) is not None:
                _check_real(name, getattr(self, name), positive=True)


def _check_real(name: str, value: object, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


def train_lm(
    model: nn.Module,
    train_ids: Tensor,
    valid_ids: Tensor,
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`~rnnkit.models.LanguageModel`) on token ids with truncated BPTT.

    Arguments:
        model: maps tokens (T, B) and a state to (logits (T, B, V), state).
        train_ids, valid_ids: (N,) int64 token ids of the training and validation text.
        config: the :class:`TrainConfig`.
        run_dir: where config.json, metrics.jsonl and checkpoints/ go.
        resume: continue from ``run_dir``'s latest checkpoint. A missing or corrupt one raises
            :class:`~rnnkit.training.checkpoint.CheckpointError`; there is no silent fresh start.
        progress: show a tqdm bar with ETA on stderr.

    Returns:
        ``{"steps", "train_loss", "valid_loss", "valid_bpc", "run_dir"}``: the last step's training
        loss and the final validation loss (nats per token) and bits per token.
    """
    run_dir = Path(run_dir)
    device = next(model.parameters()).device
    train = TBPTTStream(train_ids, config.batch_size, config.seq_len)
    valid = TBPTTStream(valid_ids, config.batch_size, config.seq_len)
    # AdamW decays weights decoupled from the gradient step (Loshchilov & Hutter 2019)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    metrics_path = run_dir / "metrics.jsonl"
    saved = {"train": dataclasses.asdict(config), "model": _model_config(model)}

    # -- start fresh, or pick up exactly where the latest checkpoint left off
    state: State | None = None  # the hidden state carried from chunk to chunk
    step, train_loss, valid_loss, best_valid = 0, math.nan, math.nan, math.inf
    if resume:
        ckpt = load_checkpoint(run_dir)  # raises on a missing or corrupt checkpoint: never a fresh start
        _check_same_run(run_dir, saved)
        model.load_state_dict(ckpt.model_state)
        ts = ckpt.train_state
        optimizer.load_state_dict(ts["optimizer"])
        train.load_state_dict(ts["stream"])
        state = None if ts["hidden"] is None else map_state(lambda s: s.to(device), ts["hidden"])
        step, train_loss, valid_loss, best_valid = (
            ckpt.step,
            ts["train_loss"],
            ts["valid_loss"],
            ts["best_valid"],
        )
        restore_rng(ts["rng"])
        _truncate_metrics(metrics_path, step)  # lines past the checkpoint are redone below
    else:
        if (run_dir / "checkpoints").exists():
            raise InputError(f"{run_dir} already holds checkpoints: pass resume=True, or use a new run_dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text("")
        _seed_everything(config.seed)
    atomic_write(run_dir / "config.json", (json.dumps(saved, indent=2) + "\n").encode())

    bar = tqdm(total=config.steps, initial=step, disable=not progress, file=sys.stderr, dynamic_ncols=True)
    deadline = time.perf_counter() + config.minutes * 60 if config.minutes is not None else math.inf
    with open(metrics_path, "a", encoding="utf-8") as log:
        while step < config.steps:
            t0 = time.perf_counter()
            if train.position == len(train):
                # a new epoch starts at the corpus' beginning: the end's hidden state means nothing there
                train.load_state_dict({"position": 0, "epoch": train.epoch + 1})
                state = None
            x, y = (t.to(device) for t in train[train.position])  # (T, B) each
            train.position += 1

            # forward and backward through this chunk only
            model.train()
            logits, state = model(x, state)  # (T, B, V)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # Truncated BPTT: the next chunk starts from this state's values, but its graph is cut here.
            # Without detach the next backward would run back through every chunk since the start
            # (memory and time growing without bound), and through a graph already freed by backward.
            state = map_state(lambda s: s.detach(), state)

            # clip by global norm: g <- min(1, theta / ||g||) g. It returns the norm BEFORE clipping,
            # the number worth watching (spikes mean exploding gradients). With clipping off, theta = inf
            # gives the norm and multiplies by 1.0 (exact).
            theta = config.clip_norm if config.clip_norm is not None else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, theta))
            if config.clip_value is not None:
                torch.nn.utils.clip_grad_value_(params, config.clip_value)
            optimizer.step()
            step += 1

            train_loss = loss.item()
            dt = time.perf_counter() - t0
            _log(log, step=step, loss=train_loss, bpc=train_loss / LN2, grad_norm=grad_norm,
                 lr=optimizer.param_groups[0]["lr"], tokens_per_s=x.numel() / dt)  # fmt: skip
            bar.update(1)
            if step % config.log_every == 0:
                bar.set_postfix(loss=f"{train_loss:.3f}", bpc=f"{train_loss / LN2:.3f}")

            last = step == config.steps or time.perf_counter() >= deadline
            is_best = False
            if step % config.eval_every == 0 or last:
                valid_loss = evaluate(model, valid)
                _log(log, step=step, valid_loss=valid_loss, valid_bpc=valid_loss / LN2)
                is_best = valid_loss < best_valid
                best_valid = min(best_valid, valid_loss)
            if step % config.checkpoint_every == 0 or last or is_best:
                # metrics first, then the checkpoint: lines past a checkpoint are dropped on resume
                log.flush()
                train_state = {
                    "optimizer": optimizer.state_dict(),
                    "stream": train.state_dict(),
                    "hidden": state,  # detached above: values only
                    "rng": capture_rng(),
                    "train_loss": train_loss,
                    "valid_loss": valid_loss,
                    "best_valid": best_valid,
                }
                save_checkpoint(
                    run_dir, model_state=model.state_dict(), train_state=train_state, step=step,
                    keep_last=config.keep_last, is_best=is_best,
                )  # fmt: skip
            if last:
                break
    bar.close()
    return {
        "steps": step,
        "train_loss": train_loss,
        "valid_loss": valid_loss,
        "valid_bpc": valid_loss / LN2,
        "run_dir": str(run_dir),
    }


@torch.no_grad()
def evaluate(model: nn.Module, stream: TBPTTStream) -> float:
    """Mean cross-entropy (nats per token) over every chunk of ``stream``, state carried across chunks.

    Uses no randomness (eval mode), so running it does not change what training draws next.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count, state = 0.0, 0, None
    for k in range(len(stream)):
        x, y = (t.to(device) for t in stream[k])  # (T, B)
        logits, state = model(x, state)  # (T, B, V)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None


def _check_same_run(run_dir: Path, saved: dict[str, Any]) -> None:
    """Refuse to resume with another model or other training settings (``steps`` may grow)."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    new = {**saved, "train": {**saved["train"], "steps": None}}
    old = {**old, "train": {**old.get("train", {}), "steps": None}}
    if old != new:
        raise InputError(f"{path}: the run was started with other settings {old}; resuming with {new}")


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log(log: Any, **fields: Any) -> None:
    log.write(json.dumps(fields) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines up to ``step``; a half-written last line (a kill mid-write) goes too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line + "\n")
    atomic_write(path, "".join(kept).encode())
