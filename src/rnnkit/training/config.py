"""How to train: :class:`TrainConfig`, one typed config shared by every application.

Each field declares its command-line flag and help once (:func:`rnnkit.configs.option`); the CLI's
training options are built from these fields. Torch-free, so ``rnnkit --help`` stays instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..configs import off_if_zero, option
from ..errors import check_int
from .sampling import TEACHER_FORCING, teacher_forcing_ratio

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "step", "plateau")
PRECISIONS = ("fp32", "bf16")  # kernels/precision.PRECISIONS (repeated: no torch import for --help)

# The flags every training command shares, in the order --help lists them; BPTT only where there is a
# stream to truncate, teacher forcing only for models that feed back their own predictions.
OPTIMIZER_FLAGS = ("optimizer", "weight_decay", "momentum", "schedule", "warmup_steps",
                   "min_lr_ratio", "step_size", "gamma", "plateau_patience", "patience", "clip_norm",
                   "clip_value", "precision")  # fmt: skip
BPTT_FLAGS = ("bptt_window", "accumulate")
SAMPLING_FLAGS = ("teacher_forcing", "tf_k", "tf_c", "tf_floor")
CHECKPOINT_FLAGS = ("eval_every", "checkpoint_every", "keep_last", "max_bad_steps", "plots", "tensorboard")


@dataclass
class TrainConfig:
    """How to train. Validated on construction, saved in ``run_dir/config.json``.

    Every field's meaning is its help text below (also ``rnnkit train lm --help``). Notes: truncated
    BPTT with ``bptt_window`` k2 < ``seq_len`` k1 is Williams & Peng 1990; clipping by global norm is
    ``g <- min(1, clip_norm / ||g||) g``, then ``clip_value`` clamps each entry; scheduled sampling is
    Bengio et al. 2015 (see :func:`rnnkit.training.schedules.teacher_forcing_ratio`); exact resume
    restores the seeds, so ``seed`` matters only for a fresh run.
    """

    steps: int = option(1000, "optimizer steps in all (a resumed run continues up to this)", minimum=1)
    batch_size: int = option(32, "B: sequences per step, over all processes", flag="--batch", minimum=1)
    seq_len: int = option(64, "k1 = tau: time steps per sequence and step (the truncated BPTT window)",
                          minimum=1)  # fmt: skip
    bptt_window: int | None = option(None, "k2 <= seq-len: backpropagate through the last k2 steps")
    reset_on: int | None = option(
        None, "language models: the id of a token that starts each document; the state restarts there",
        cli=False,
    )  # fmt: skip
    accumulate: int = option(
        1, "run each step's batch as N micro-batches of batch/N streams (same step, less memory)"
    )
    optimizer: str = option("adamw", "the optimizer", choices=OPTIMIZERS)
    lr: float = option(2e-3, "peak learning rate")
    weight_decay: float = option(0.0, "AdamW's decoupled decay; an L2 term for the others")
    momentum: float = option(0.9, "SGD's and RMSprop's")
    schedule: str = option("constant", "learning rate after warmup", choices=LR_SCHEDULES)
    warmup_steps: int = option(0, "linear warmup steps, from lr / (N + 1) to lr", flag="--warmup")
    min_lr_ratio: float = option(0.0, "cosine's final lr, and plateau's floor, over lr")
    step_size: int = option(1000, "step schedule: decay every this many steps")
    gamma: float = option(0.5, "step and plateau schedules: the decay factor")
    plateau_patience: int = option(2, "plateau: validations without a best before decay")
    patience: int | None = option(None, "early stopping: validations without a new best")
    clip_norm: float | None = option(1.0, "clip the global gradient norm to this (0 = off)", type=off_if_zero)
    clip_value: float | None = option(None, "clamp every gradient entry to +-this")
    max_bad_steps: int = option(10, "stop after this many non-finite steps in a row (each is skipped)")
    teacher_forcing: str = option("always", "scheduled sampling: the probability of feeding the truth decays "
                                  "this way", choices=TEACHER_FORCING)  # fmt: skip
    tf_k: float | None = option(None, "the teacher-forcing schedule's k")
    tf_c: float | None = option(None, "the linear schedule's slope c")
    tf_floor: float = option(0.0, "the teacher-forcing probability never goes below this")
    seed: int = option(0, "random seed: initial weights, shuffling, dropout")
    checkpoint_every: int = option(100, "save a checkpoint every this many steps")
    keep_last: int = option(3, "checkpoints to keep (besides the best)")
    eval_every: int = option(100, "validate every this many steps")
    log_every: int = option(10, "refresh the progress bar's loss every this many steps", cli=False)
    minutes: float | None = option(None, "wall-time budget: stop (and save) after this long")
    plots: bool = option(True, "do not draw loss.png, grad_norm.png, lr.png", flag="--no-plots",
                         action="store_false")  # fmt: skip
    precision: str = option("fp32", "bf16: each training step under torch.autocast to bfloat16 over "
                            "float32 master weights (kernels/precision.py); validation in float32",
                            choices=PRECISIONS)  # fmt: skip
    tensorboard: bool = option(False, "also write TensorBoard event files (scalars, gradient histograms) "
                               "to OUT/tensorboard (needs the tensorboard package)",
                               action="store_true")  # fmt: skip

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
        _check_choice("precision", self.precision, PRECISIONS)
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
