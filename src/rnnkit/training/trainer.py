"""The training loop every rnnkit model uses: :func:`fit` trains a model on a task
(:mod:`rnnkit.training.tasks`), and :func:`train_lm` is it for a language model with truncated BPTT.

Run directory (see :mod:`rnnkit.training.checkpoint` for ``checkpoints/``)::

    run_dir/
      config.json       {"train": TrainConfig, "model": the model's config}, written atomically
      metrics.jsonl     one JSON object per line: a training step, or a validation result
      checkpoints/      weights, optimizer, LR schedule, step, RNG states, data position, carried state
      loss.png, grad_norm.png, lr.png   drawn at the end of a run (see :mod:`rnnkit.training.plots`)

Each step: the task's loss on the next batch, backward, the global gradient norm measured (and clipped),
then the optimizer step, unless the loss or the norm is not finite: such a step is skipped and counted,
and ``max_bad_steps`` of them in a row stop the run with an error naming the step.

Exact resume: the checkpoint holds everything the next step depends on (weights, optimizer moments, the
LR schedule, the generators that drive dropout and sampling, the position in the data and the hidden
state carried into the next chunk), so a run stopped and resumed computes the same numbers as one that
never stopped. Bit-exact on the CPU in one process with a fixed thread count
(``torch.set_num_threads``): a different number of threads may sum in a different order; CUDA needs
deterministic algorithms as well. Under torchrun (:mod:`rnnkit.training.distributed`) each rank trains
on its share of the batch and rank 0 writes everything; resume with the same number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import InputError, TrainingError, check_int
from . import distributed
from .checkpoint import atomic_write, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .interrupt import RunInterrupted, StopSignals
from .lock import RunLock
from .results import write_results
from .schedules import (
    LR_SCHEDULES,
    OPTIMIZERS,
    TEACHER_FORCING,
    LRSchedule,
    make_optimizer,
    teacher_forcing_ratio,
)
from .tasks import LN2, LMTask, Task, evaluate
from .tensorboard import TensorBoardLog

__all__ = ["TrainConfig", "TrainingError", "evaluate", "fit", "train_lm"]


@dataclass
class TrainConfig:
    """How to train. Validated on construction, saved in ``run_dir/config.json``.

    Attributes:
        steps: optimizer steps in all (a resumed run continues up to this).
        batch_size: B, parallel streams over the corpus (the global batch over all processes).
        seq_len: k1 = tau, tokens per stream and step; the truncated BPTT window.
        bptt_window: k2 <= k1: gradients flow back through only the last k2 steps of each chunk
            (Williams & Peng 1990); None = k1.
        reset_on: language models: the id of a token that starts each document; where a stream reads
            it, its state starts again from the initial state (training and validation), so documents
            read as one stream do not leak into each other. None: the state runs on.
        accumulate: gradient accumulation: each optimizer step runs the batch as this many micro-batches,
            one after another (each of B / accumulate streams, carrying its own share of the state), and
            sums their gradients; the same step as the whole batch at once, in a fraction of the memory.
        optimizer: "adamw" (default), "adam", "sgd" or "rmsprop".
        lr, weight_decay: the optimizer's (AdamW: decoupled; the others: an L2 term).
        momentum: SGD's and RMSprop's.
        schedule: learning rate after warmup: "constant", "cosine" (down to ``lr * min_lr_ratio`` at
            ``steps``), "step" (times ``gamma`` every ``step_size`` steps) or "plateau" (times
            ``gamma`` after ``plateau_patience`` validations without a new best).
        warmup_steps: linear warmup from lr / (warmup_steps + 1) to lr.
        patience: early stopping: stop after this many validations without a new best; None = off.
        clip_norm: theta for clipping by global norm, ``g <- min(1, theta / ||g||) g``; None = off.
        clip_value: clamp each gradient entry to [-clip_value, clip_value] after the norm clip; None = off.
        max_bad_steps: stop with an error after this many non-finite steps in a row (each is skipped).
        teacher_forcing: "always" (default), or scheduled sampling (Bengio et al. 2015) with the
            probability of feeding the ground truth decaying "linear", "exponential" or
            "inverse_sigmoid"; ``tf_k``, ``tf_c``, ``tf_floor`` are the schedule's constants (see
            :func:`rnnkit.training.schedules.teacher_forcing_ratio`).
        seed: seeds torch, python and numpy at the start of a fresh run (a resumed run restores them).
        checkpoint_every: save a checkpoint every this many steps (and at the end, and at a new best).
        keep_last: checkpoints kept on disk (the best one is kept besides).
        eval_every: validation every this many steps (and at the end).
        log_every: refresh the progress bar's loss every this many steps (metrics.jsonl gets every step).
        minutes: a wall-time budget for this process: training stops after the first step past it (with a
            final validation and checkpoint), even before ``steps``; a resumed run gets a fresh budget.
        plots: draw loss.png, grad_norm.png and lr.png in the run directory at the end.
        tensorboard: also write TensorBoard event files (scalars, gradient histograms) into
            ``run_dir/tensorboard/`` (:mod:`rnnkit.training.tensorboard`; needs the tensorboard package).
    """

    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 64
    bptt_window: int | None = None
    reset_on: int | None = None
    accumulate: int = 1
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: int = 1000
    gamma: float = 0.5
    plateau_patience: int = 2
    patience: int | None = None
    clip_norm: float | None = 1.0
    clip_value: float | None = None
    max_bad_steps: int = 10
    teacher_forcing: str = "always"
    tf_k: float | None = None
    tf_c: float | None = None
    tf_floor: float = 0.0
    seed: int = 0
    checkpoint_every: int = 100
    keep_last: int = 3
    eval_every: int = 100
    log_every: int = 10
    minutes: float | None = None
    plots: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len", "checkpoint_every", "keep_last", "eval_every",
                     "log_every", "step_size", "plateau_patience", "max_bad_steps",
                     "accumulate"):  # fmt: skip
            check_int(name, getattr(self, name))
        if self.reset_on is not None:
            check_int("reset_on", self.reset_on, minimum=0)
        for name in ("bptt_window", "patience"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name))
        check_int("seed", self.seed, minimum=0)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.batch_size % self.accumulate:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by accumulate ({self.accumulate}): "
                "the micro-batches are equal shares of the batch"
            )
        if self.bptt_window is not None and self.bptt_window > self.seq_len:
            raise ValueError(
                f"bptt_window (k2) must be <= seq_len (k1) = {self.seq_len}, got {self.bptt_window}"
            )
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, LR_SCHEDULES)
        _check_choice("teacher_forcing", self.teacher_forcing, TEACHER_FORCING)
        _check_real("lr", self.lr, positive=True)
        for name in ("weight_decay", "momentum", "min_lr_ratio", "tf_floor"):
            _check_real(name, getattr(self, name), positive=False)
        _check_real("gamma", self.gamma, positive=True)
        for name in ("min_lr_ratio", "gamma", "tf_floor"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be <= 1, got {getattr(self, name)!r}")
        for name in ("clip_norm", "clip_value", "minutes", "tf_k", "tf_c"):
            if getattr(self, name) is not None:
                _check_real(name, getattr(self, name), positive=True)
        for name in ("plots", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} should be of type bool, got: {type(getattr(self, name)).__name__}")

    def teacher_forcing_at(self, step: int) -> float:
        """The probability of feeding the ground truth at ``step`` (1.0 for "always")."""
        return teacher_forcing_ratio(
            self.teacher_forcing, step, self.tf_k, self.tf_c, self.tf_floor, total_steps=self.steps
        )


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


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
        :func:`fit`'s report, with ``"valid_bpc"``, the final validation loss in bits per token.
    """
    device = next(model.parameters()).device
    task = LMTask(train_ids, valid_ids, config.batch_size, config.seq_len, config.bptt_window, device,
                  reset_on=config.reset_on)  # fmt: skip
    report = fit(model, task, config, run_dir, resume=resume, progress=progress)
    if distributed.is_main():
        write_results(run_dir, {"valid_bpc": report["valid_loss"] / LN2})
    return {**report, "valid_bpc": report["valid_loss"] / LN2}


def fit(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` on ``task`` for ``config.steps`` optimizer steps, with checkpoints in ``run_dir``.

    Under torchrun every process calls this; they join one process group, and the model is wrapped in
    DistributedDataParallel for the duration.

    Returns:
        ``{"steps", "train_loss", "valid_loss", "best_valid_loss", "skipped_steps", "stopped", "run_dir"}``:
        the last step's training loss, the final validation loss, the best one, the number of skipped
        non-finite steps, and why training stopped ("steps", "minutes" or "early_stopping").
    """
    device = next(model.parameters()).device
    joined = distributed.setup(device)
    try:
        # one process per run directory (rank 0 writes for all); Ctrl-C / SIGTERM save, then stop
        with RunLock(run_dir) if distributed.is_main() else contextlib.nullcontext():
            return _fit(model, task, config, Path(run_dir), resume, progress, device)
    finally:
        if joined:
            distributed.teardown()


def _fit(
    model: nn.Module, task: Task, config: TrainConfig, run_dir: Path, resume: bool, progress: bool,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    if world > 1:
        task.shard(rank, world)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config, params)
    schedule = LRSchedule(config, optimizer)
    metrics_path = run_dir / "metrics.jsonl"
    saved = {"train": dataclasses.asdict(config), "model": _model_config(model)}

    # -- start fresh, or pick up exactly where the latest checkpoint left off
    step, train_loss, valid_loss, best_valid, bad_evals, skipped = 0, math.nan, math.nan, math.inf, 0, 0
    elapsed = 0.0  # wall seconds in this loop, over every process that worked on the run (resumes add up)
    if resume:
        ckpt = load_checkpoint(run_dir)  # raises on a missing or corrupt checkpoint: never a fresh start
        _check_same_run(run_dir, saved)
        ts = ckpt.train_state
        ranks = ts.get("world_size", 1)
        if ranks != world:
            raise InputError(
                f"{ckpt.path}: written by a run of {ranks} process(es); resume it with the same number "
                f"(this is {world})"
            )
        model.load_state_dict(ckpt.model_state)
        optimizer.load_state_dict(ts["optimizer"])
        if "schedule" in ts:  # absent in checkpoints from before schedules (constant lr)
            schedule.load_state_dict(ts["schedule"])
        task.load_state_dict(ts)
        step, train_loss, valid_loss = ckpt.step, ts["train_loss"], ts["valid_loss"]
        best_valid = ts["best_valid"]
        bad_evals, skipped, elapsed = ts.get("bad_evals", 0), ts.get("skipped", 0), ts.get("elapsed", 0.0)
        restore_rng(ts["rng_ranks"][rank] if "rng_ranks" in ts else ts["rng"])
        if main:
            _truncate_metrics(metrics_path, step)  # lines past the checkpoint are redone below
    else:
        if (run_dir / "checkpoints").exists():
            raise InputError(f"{run_dir} already holds checkpoints: pass resume=True, or use a new run_dir")
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text("")
        _seed_everything(config.seed + rank)  # each rank its own dropout masks and samples
    if main:
        atomic_write(run_dir / "config.json", (json.dumps(saved, indent=2) + "\n").encode())
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)  # averages gradients over ranks during backward

    bar = tqdm(total=config.steps, initial=step, disable=not (progress and main), file=sys.stderr,
               dynamic_ncols=True)  # fmt: skip
    deadline = time.perf_counter() + config.minutes * 60 if config.minutes is not None else math.inf
    stopped, bad_streak = "steps", 0
    started = time.perf_counter() - elapsed
    board = TensorBoardLog(run_dir, step) if config.tensorboard and main else None
    # only rank 0 writes the metrics
    log = open(metrics_path, "a", encoding="utf-8") if main else None  # noqa: SIM115 (closed below)
    signals = StopSignals().__enter__()  # a signal now asks to stop after the step under way
    try:
        while step < config.steps:
            t0 = time.perf_counter()
            model.train()
            ratio = config.teacher_forcing_at(step)
            optimizer.zero_grad(set_to_none=True)
            loss, extra = _accumulate(net, task, ratio, config.accumulate, world)
            # clip by global norm: g <- min(1, theta / ||g||) g. It returns the norm BEFORE clipping,
            # the number worth watching (spikes mean exploding gradients). With clipping off, theta = inf
            # gives the norm and multiplies by 1.0 (exact). Gradients are already averaged over ranks.
            theta = config.clip_norm if config.clip_norm is not None else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, theta))
            items = extra.pop("items", 0.0)
            sums = distributed.all_reduce_sum([loss, *extra.values(), items], device)
            train_loss = sums[0] / world
            extra = {k: v / world for k, v in zip(extra, sums[1:-1], strict=True)}
            items = sums[-1]
            lr = optimizer.param_groups[0]["lr"]
            if math.isfinite(train_loss) and math.isfinite(grad_norm):
                if config.clip_value is not None:
                    torch.nn.utils.clip_grad_value_(params, config.clip_value)
                optimizer.step()
                bad_streak = 0
            else:  # skip the update; the carried state may hold the non-finite values too
                optimizer.zero_grad(set_to_none=True)
                task.reset()
                skipped, bad_streak = skipped + 1, bad_streak + 1
            schedule.after_step()
            step += 1

            dt = time.perf_counter() - t0
            elapsed = time.perf_counter() - started
            record: dict[str, Any] = {"step": step, "loss": train_loss, **extra}
            record.update(grad_norm=grad_norm, lr=lr, elapsed_s=round(elapsed, 3))
            if config.teacher_forcing != "always":
                record["teacher_forcing"] = ratio
            if items:
                record["tokens_per_s"] = items / dt
            if bad_streak:
                record["skipped"] = True
            _log(log, record)
            if board is not None:
                board.write(record, model if step % config.log_every == 0 or step == 1 else None)
            bar.update(1)
            if bad_streak >= config.max_bad_steps:
                raise TrainingError(
                    f"step {step}: the loss ({train_loss}) or the gradient norm ({grad_norm}) was not "
                    f"finite for {bad_streak} steps in a row (each skipped; {skipped} in all), so training "
                    f"stops. The last checkpoint in {run_dir / 'checkpoints'} is intact: resume from it with "
                    "a lower lr or a tighter clip_norm, or look for NaN in the data"
                )
            if step % config.log_every == 0:
                bar.set_postfix(loss=f"{train_loss:.3f}", gnorm=f"{grad_norm:.2f}", lr=f"{lr:.2e}")

            last = step == config.steps
            if signals.requested(device):  # save this step at once, without a validation
                last, stopped = True, "interrupted"
            elif not last and _past(deadline, device):
                last, stopped = True, "minutes"
            is_best = False
            if step % config.eval_every == 0 or (last and stopped != "interrupted"):
                scores = task.evaluate(model)
                valid_loss = scores["loss"]
                elapsed = time.perf_counter() - started
                valid = {"step": step, **{f"valid_{k}": v for k, v in scores.items()}, "elapsed_s": elapsed}
                _log(log, valid)
                if board is not None:
                    board.write(valid)
                schedule.after_eval(valid_loss)
                is_best = valid_loss < best_valid
                best_valid = min(best_valid, valid_loss)
                bad_evals = 0 if is_best else bad_evals + 1
                if config.patience is not None and bad_evals >= config.patience and not last:
                    last, stopped = True, "early_stopping"
                    _log(log, {"step": step, "early_stopping": True, "best_valid_loss": best_valid})
            if step % config.checkpoint_every == 0 or last or is_best:
                # metrics first, then the checkpoint: lines past a checkpoint are dropped on resume
                if log is not None:
                    log.flush()
                train_state = {
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    **task.state_dict(),  # every rank joins in: gathers the carried state
                    "rng": capture_rng(),
                    "train_loss": train_loss,
                    "valid_loss": valid_loss,
                    "best_valid": best_valid,
                    "bad_evals": bad_evals,
                    "skipped": skipped,
                    "elapsed": elapsed,
                    "world_size": world,
                }
                if world > 1:
                    train_state["rng_ranks"] = distributed.gather_objects(capture_rng())
                if main:
                    save_checkpoint(
                        run_dir, model_state=model.state_dict(), train_state=train_state, step=step,
                        keep_last=config.keep_last, is_best=is_best,
                    )  # fmt: skip
            if last:
                break
    finally:
        signals.__exit__()
        if board is not None:
            board.close()
        bar.close()
        if log is not None:
            log.close()
    if stopped == "interrupted":
        raise RunInterrupted(step, str(run_dir), signals.name or "SIGINT")
    if main and config.plots:
        _plot(run_dir)
    distributed.barrier()
    report = {
        "steps": step,
        "train_loss": train_loss,
        "valid_loss": valid_loss,
        "best_valid_loss": best_valid,
        "skipped_steps": skipped,
        "stopped": stopped,
        "elapsed_s": elapsed,
        "run_dir": str(run_dir),
    }
    if main:
        write_results(run_dir, {k: v for k, v in report.items() if k != "run_dir"})
    return report


def _accumulate(net: nn.Module, task: Task, ratio: float, parts: int, world: int) -> tuple[float, dict]:
    """Forward and backward of one step's batch in ``parts`` micro-batches; the gradients add up to the
    whole batch's (each part's mean loss is weighted 1 / parts: the parts are equal shares). Returns the
    batch's mean loss and the parts' mean logged numbers (``items`` summed)."""
    if parts == 1:
        loss, extra = task.train_step(net, ratio)
        loss.backward()
        task.after_backward()
        return loss.item(), extra
    if not getattr(task, "micro_batches", False):
        raise InputError(
            f"accumulate={parts}: {type(task).__name__} does not split its batch into micro-batches "
            "(the language-model task does); use accumulate=1"
        )
    total, sums = 0.0, {}
    for part in range(parts):
        # under DDP only the last part's backward all-reduces: the gradients are summed locally first
        quiet = net.no_sync() if world > 1 and part < parts - 1 else contextlib.nullcontext()
        with quiet:
            loss, extra = task.train_step(net, ratio, part=(part, parts))
            (loss / parts).backward()
        task.after_backward()
        total += loss.item() / parts
        for k, v in extra.items():
            sums[k] = sums.get(k, 0.0) + (v if k == "items" else v / parts)
    return total, sums


def _past(deadline: float, device: torch.device) -> bool:
    """Whether the wall-time budget is spent; every rank must agree, so rank 0's clock decides."""
    if deadline == math.inf:
        return False
    over = time.perf_counter() >= deadline
    if distributed.active():
        flag = torch.tensor([float(over)], device=device)
        torch.distributed.broadcast(flag, 0)
        over = bool(flag.item())
    return over


def _plot(run_dir: Path) -> None:
    from .plots import plot_run

    try:
        plot_run(run_dir)
    except Exception as e:  # a plot is never worth the run: the weights are already saved
        warnings.warn(f"could not draw the plots of {run_dir}: {type(e).__name__}: {e}", stacklevel=2)


def _json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats as null (JSON has no NaN), with the value kept as text."""
    out = {}
    for k, v in record.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k], out[f"{k}_value"] = None, repr(v)
        else:
            out[k] = v
    return out


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None


def _check_same_run(run_dir: Path, saved: dict[str, Any]) -> None:
    """Refuse to resume with another model or other training settings (``steps`` may grow)."""
    from ..resume import check_same
    from ..rundir import read_json

    path = run_dir / "config.json"
    if not path.exists():
        return
    old = read_json(path)
    defaults = dataclasses.asdict(TrainConfig())  # fields added since the run started keep defaults
    check_same(path, {**old, "train": {**defaults, **old.get("train", {})}}, saved)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log(log: Any, fields: dict[str, Any]) -> None:
    if log is not None:  # only rank 0 writes
        log.write(json.dumps(_json_safe(fields)) + "\n")


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
