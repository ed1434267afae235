"""Synthetic long-range tasks (adding, copy, parity, ...): a fresh model, its score and gradient flow.

``rnnkit train synthetic`` (alias ``train task``; its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``.
Names load lazily (``rnnkit --help`` imports no torch).
"""

from ..._lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "config": (
            "TASK_SHAPES",
            "CELL_NAMES",
            "SyntheticConfig",
            "MODEL",
            "TRAIN",
        ),
        "model": ("TaskModel",),
        "task": (
            "TEST_SEED",
            "baseline",
            "SyntheticTask",
            "free_running_mse",
        ),
        "run": (
            "flow",
            "train_synthetic",
        ),
    },
)
