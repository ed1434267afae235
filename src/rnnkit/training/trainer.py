"""The training loop every rnnkit application uses: :func:`fit` trains a model on a task
(:class:`rnnkit.training.task.Task`; each application writes its own in ``rnnkit/apps/<name>/task.py``).

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
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..errors import InputError, TrainingError
from ..kernels import precision
from . import distributed
from .checkpoint import atomic_write, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig
from .interrupt import RunInterrupted, StopSignals
from .lock import RunLock
from .results import write_results
from .rundir import check_fresh, check_same, read_json
from .schedules import LRSchedule, make_optimizer
from .task import Task
from .tensorboard import TensorBoardLog

__all__ = ["TrainConfig", "TrainingError", "fit"]


def __getattr__(name: str) -> Any:
    """``train_lm`` and ``evaluate`` moved to :mod:`rnnkit.apps.lm` (the language model's own folder)."""
    if name in ("train_lm", "evaluate"):
        import warnings

        warnings.warn(f"rnnkit.training.trainer.{name} moved to rnnkit.apps.lm.run", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
        from ..apps.lm import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        step, train_loss, valid_loss, best_valid, bad_evals, skipped, elapsed = _resume(
            run_dir, saved, model, optimizer, schedule, task
        )
    else:
        check_fresh(run_dir, "pass resume=True, or use a new run_dir")
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
            train_loss, extra, items, grad_norm, lr, ratio, finite = _optimizer_step(
                net, model, task, config, optimizer, params, schedule, step, world, device
            )
            if finite:
                bad_streak = 0
            else:  # the update was skipped (and the task's carried state forgotten)
                skipped, bad_streak = skipped + 1, bad_streak + 1
            step += 1

            dt = time.perf_counter() - t0
            elapsed = time.perf_counter() - started
            record = _step_record(step, train_loss, extra, grad_norm, lr, elapsed, dt, items, bad_streak,
                                  ratio if config.teacher_forcing != "always" else None)  # fmt: skip
            _log(log, record, board, model if step % config.log_every == 0 or step == 1 else None)
            bar.update(1)
            if bad_streak >= config.max_bad_steps:
                raise _too_many_bad_steps(step, train_loss, grad_norm, bad_streak, skipped, run_dir)
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
                _log(log, valid, board)
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
                train_state = _train_state(optimizer, schedule, task, world, train_loss, valid_loss,
                                           best_valid, bad_evals, skipped, elapsed)  # fmt: skip
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
        _close(bar, log, board, signals)
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


def _optimizer_step(net: nn.Module, model: nn.Module, task: Task, config: TrainConfig,
                    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], schedule: LRSchedule,
                    step: int, world: int, device: torch.device,
                    ) -> tuple[float, dict[str, float], float, float, float, float, bool]:  # fmt: skip
    """One optimizer step: forward and backward of the task's next batch, the global norm measured and
    clipped, then the update, unless the loss or the norm is not finite (then no update, and the task
    forgets its carried state). Returns ``(train_loss, logged numbers, items, grad_norm, lr,
    teacher-forcing ratio, finite)``, the numbers averaged over ranks."""
    model.train()
    ratio = config.teacher_forcing_at(step)
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast(config.precision, device):  # bf16: mixed precision (or nothing)
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
    finite = math.isfinite(train_loss) and math.isfinite(grad_norm)
    if finite:
        if config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, config.clip_value)
        optimizer.step()
    else:  # skip the update; the carried state may hold the non-finite values too
        optimizer.zero_grad(set_to_none=True)
        task.reset()
    schedule.after_step()
    return train_loss, extra, items, grad_norm, lr, ratio, finite


def _train_state(optimizer: torch.optim.Optimizer, schedule: LRSchedule, task: Task, world: int,
                 train_loss: float, valid_loss: float, best_valid: float, bad_evals: int, skipped: int,
                 elapsed: float) -> dict[str, Any]:  # fmt: skip
    """What a checkpoint saves besides the weights (every rank joins in: the task gathers its state)."""
    return {
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


def _resume(run_dir: Path, saved: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            schedule: LRSchedule, task: Task,
            ) -> tuple[int, float, float, float, int, int, float]:  # fmt: skip
    """Load the latest checkpoint into the model, optimizer, schedule, task and RNGs; return the run's
    place: ``(step, train_loss, valid_loss, best_valid, bad_evals, skipped, elapsed)``."""
    rank, world = distributed.rank(), distributed.world_size()
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
    restore_rng(ts["rng_ranks"][rank] if "rng_ranks" in ts else ts["rng"])
    if distributed.is_main():
        _truncate_metrics(run_dir / "metrics.jsonl", ckpt.step)  # lines past the checkpoint are redone
    return (ckpt.step, ts["train_loss"], ts["valid_loss"], ts["best_valid"], ts.get("bad_evals", 0),
            ts.get("skipped", 0), ts.get("elapsed", 0.0))  # fmt: skip


def _step_record(step: int, train_loss: float, extra: dict[str, float], grad_norm: float, lr: float,
                 elapsed: float, dt: float, items: float, bad_streak: int,
                 teacher_forcing: float | None) -> dict[str, Any]:  # fmt: skip
    """One training step's line of metrics.jsonl."""
    record: dict[str, Any] = {"step": step, "loss": train_loss, **extra}
    record.update(grad_norm=grad_norm, lr=lr, elapsed_s=round(elapsed, 3))
    if teacher_forcing is not None:
        record["teacher_forcing"] = teacher_forcing
    if items:
        record["tokens_per_s"] = items / dt
    if bad_streak:
        record["skipped"] = True
    return record


def _too_many_bad_steps(step: int, train_loss: float, grad_norm: float, bad_streak: int, skipped: int,
                        run_dir: Path) -> TrainingError:  # fmt: skip
    return TrainingError(
        f"step {step}: the loss ({train_loss}) or the gradient norm ({grad_norm}) was not "
        f"finite for {bad_streak} steps in a row (each skipped; {skipped} in all), so training "
        f"stops. The last checkpoint in {run_dir / 'checkpoints'} is intact: resume from it with "
        "a lower lr or a tighter clip_norm, or look for NaN in the data"
    )


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


def _log(log: Any, fields: dict[str, Any], board: TensorBoardLog | None = None,
         model: nn.Module | None = None) -> None:  # fmt: skip
    """One line of metrics.jsonl (and the same numbers to TensorBoard, with ``model``'s histograms)."""
    if log is not None:  # only rank 0 writes
        log.write(json.dumps(_json_safe(fields)) + "\n")
    if board is not None:
        board.write(fields, model)


def _close(bar: Any, log: Any, board: TensorBoardLog | None, signals: StopSignals) -> None:
    """The loop's resources, however it ended; signals act as before it again."""
    signals.__exit__()
    if board is not None:
        board.close()
    bar.close()
    if log is not None:
        log.close()


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
