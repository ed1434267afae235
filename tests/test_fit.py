"""The generic training loop (``rnnkit.training.trainer.fit``) on a scripted toy task: optimizers, LR
schedules, early stopping, skipped non-finite steps, plots, and the teacher-forcing schedules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnkit.errors import InputError
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.plots import plot_run
from rnnkit.training.schedules import make_optimizer, teacher_forcing_ratio
from rnnkit.training.trainer import TrainConfig, TrainingError, fit


class ScriptedTask:
    """Least squares, ``mean((w x + b - 1)^2)`` on fixed inputs; validation losses follow a script, and
    the training loss is made NaN (or inf) at the given steps."""

    def __init__(self, valid=(), bad_steps=(), bad_value=math.nan):
        self.valid = list(valid)
        self.bad_steps, self.bad_value = set(bad_steps), bad_value
        self.calls = self.evals = self.resets = 0
        self.x = torch.linspace(-1, 1, 8).view(4, 2)

    def shard(self, rank, world):
        pass

    def train_step(self, model, teacher_forcing):
        self.calls += 1
        loss = ((model(self.x) - 1.0) ** 2).mean()
        if self.calls in self.bad_steps:
            loss = loss * self.bad_value
        return loss, {"items": 4.0}

    def after_backward(self):
        pass

    def reset(self):
        self.resets += 1

    def evaluate(self, model):
        self.evals += 1
        return {"loss": self.valid[self.evals - 1] if self.evals <= len(self.valid) else 1.0}

    def state_dict(self):
        return {"calls": self.calls, "evals": self.evals}

    def load_state_dict(self, state):
        self.calls, self.evals = state["calls"], state["evals"]


def run(tmp_path: Path, task=None, name="run", **kw):
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    base = dict(steps=20, lr=0.1, eval_every=1000, checkpoint_every=1000, plots=False)
    config = TrainConfig(**{**base, **kw})
    task = task or ScriptedTask()
    report = fit(model, task, config, tmp_path / name, progress=False)
    return model, task, report, records(tmp_path / name)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def lrs(lines: list[dict]) -> list[float]:
    return [r["lr"] for r in lines if "lr" in r]


# -- optimizers and learning-rate schedules -----------------------------------------------------------


@pytest.mark.parametrize(
    "name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
                  ("rmsprop", torch.optim.RMSprop)],
)  # fmt: skip
def test_each_optimizer_is_torchs_and_learns(tmp_path, name, cls):
    params = list(nn.Linear(2, 1).parameters())
    optimizer = make_optimizer(TrainConfig(optimizer=name, lr=0.05, momentum=0.5, weight_decay=0.01), params)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.01
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.5
    _, _, _, lines = run(tmp_path, optimizer=name, lr=0.05, steps=30)
    losses = [r["loss"] for r in lines if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]


def test_warmup_then_cosine(tmp_path):
    _, _, _, lines = run(tmp_path, schedule="cosine", warmup_steps=3, min_lr_ratio=0.1, steps=13)
    # logged lr is the one the step used: warmup (i + 1) / 4, then the cosine over the 10 later steps
    expected = [0.1 * (i + 1) / 4 for i in range(3)]
    expected += [0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * j / 10))) for j in range(10)]
    assert lrs(lines) == pytest.approx(expected, rel=1e-12)


def test_step_decay(tmp_path):
    _, _, _, lines = run(tmp_path, schedule="step", step_size=4, gamma=0.5, steps=10)
    assert lrs(lines) == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 2, rel=1e-12)


def test_reduce_on_plateau_after_warmup(tmp_path):
    # validation every step; the best is at eval 2, then no improvement: with plateau_patience 1 the
    # lr halves once two validations in a row fail to improve (torch's ReduceLROnPlateau)
    task = ScriptedTask(valid=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.45])
    _, _, _, lines = run(tmp_path, task, schedule="plateau", plateau_patience=1, gamma=0.5,
                         eval_every=1, steps=8, warmup_steps=1)  # fmt: skip
    assert lrs(lines) == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-12)


def test_config_refuses_unknown_names_and_bad_numbers():
    with pytest.raises(
        ValueError, match="optimizer must be one of 'adamw', 'adam', 'sgd', 'rmsprop'; got 'adagrad'"
    ):
        TrainConfig(optimizer="adagrad")
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="teacher_forcing must be one of"):
        TrainConfig(teacher_forcing="sometimes")
    with pytest.raises(ValueError, match=r"bptt_window \(k2\) must be <= seq_len \(k1\) = 8, got 9"):
        TrainConfig(seq_len=8, bptt_window=9)
    with pytest.raises(ValueError, match="gamma must be <= 1"):
        TrainConfig(gamma=2.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)


# -- early stopping -------------------------------------------------------------------------------------


def test_early_stopping_after_patience_validations_without_a_new_best(tmp_path):
    task = ScriptedTask(valid=[1.0, 0.9, 0.95, 0.96, 0.5])
    _, _, report, lines = run(tmp_path, task, patience=2, eval_every=1, steps=100)
    assert report["stopped"] == "early_stopping" and report["steps"] == 4
    assert report["best_valid_loss"] == 0.9
    assert {"step": 4, "early_stopping": True, "best_valid_loss": 0.9} in lines
    assert load_checkpoint(tmp_path / "run", which="best").step == 2
    assert load_checkpoint(tmp_path / "run").step == 4  # and the stopping point is saved


def test_without_patience_training_runs_all_steps(tmp_path):
    task = ScriptedTask(valid=[1.0, 0.9, 0.95, 0.96, 0.97, 0.98])
    _, _, report, _ = run(tmp_path, task, eval_every=1, steps=6)
    assert report["stopped"] == "steps" and report["steps"] == 6


# -- non-finite losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [math.nan, math.inf])
def test_a_non_finite_step_is_skipped_and_counted(tmp_path, bad_value):
    task = ScriptedTask(bad_steps={3}, bad_value=bad_value)
    _, _, report, lines = run(tmp_path, task, steps=6, checkpoint_every=1, keep_last=10)
    assert report["skipped_steps"] == 1 and task.resets == 1
    ckpt = lambda step: load_checkpoint(tmp_path / "run", which=f"step-{step:06d}")  # noqa: E731
    w2, w3, w4 = (ckpt(s).model_state["weight"] for s in (2, 3, 4))
    assert torch.equal(w2, w3)  # step 3 changed nothing
    assert not torch.equal(w3, w4)  # step 4 learned again
    step3 = next(r for r in lines if r.get("step") == 3 and "skipped" in r)
    assert step3["skipped"] is True and step3["loss"] is None and step3["loss_value"] in ("nan", "inf")
    json.dumps(lines)  # metrics.jsonl stays strict JSON (no NaN)


def test_too_many_non_finite_steps_in_a_row_stop_the_run_with_the_step_named(tmp_path):
    task = ScriptedTask(bad_steps={2, 4, 5, 6})
    with pytest.raises(TrainingError, match=r"step 6: the loss \(nan\).*3 steps in a row.*4 in all"):
        run(tmp_path, task, steps=20, max_bad_steps=3, checkpoint_every=1)
    assert load_checkpoint(tmp_path / "run").step == 5  # saved before the stop; nothing non-finite in it


# -- plots ----------------------------------------------------------------------------------------------


def test_plots_are_written_as_png_at_the_end(tmp_path):
    _, _, _, _ = run(tmp_path, ScriptedTask(bad_steps={5}), plots=True, eval_every=5, steps=20)
    for name in ("loss.png", "grad_norm.png", "lr.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_plot_run_needs_a_run_directory(tmp_path):
    with pytest.raises(InputError, match="metrics.jsonl: no such file"):
        plot_run(tmp_path)


# -- teacher forcing schedules (Bengio et al. 2015, section 2.4) ------------------------------------------


def test_teacher_forcing_schedules_by_hand():
    assert teacher_forcing_ratio("always", 10**6) == 1.0
    assert teacher_forcing_ratio("linear", 3, k=1.0, c=0.1) == pytest.approx(0.7)
    assert teacher_forcing_ratio("linear", 30, k=1.0, c=0.1, floor=0.2) == 0.2
    assert teacher_forcing_ratio("exponential", 2, k=0.9) == pytest.approx(0.81)
    assert teacher_forcing_ratio("inverse_sigmoid", 10, k=10.0) == pytest.approx(10 / (10 + math.e))
    assert teacher_forcing_ratio("inverse_sigmoid", 10**6, k=10.0) == 0.0  # no overflow
    # defaults span the run: linear reaches 0 at the end, exponential 0.01, inverse sigmoid 1/2 halfway
    assert teacher_forcing_ratio("linear", 1000, total_steps=1000) == 0.0
    assert teacher_forcing_ratio("exponential", 1000, total_steps=1000) == pytest.approx(0.01)
    assert teacher_forcing_ratio("inverse_sigmoid", 500, total_steps=1000) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="teacher forcing schedule must be one of"):
        teacher_forcing_ratio("cosine", 1)
