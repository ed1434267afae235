"""Tagging every step: restoring the letter case of a text (many-to-many, aligned).

``rnnkit train tag`` and ``rnnkit tag`` (its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``.
Names load lazily (``rnnkit --help`` imports no torch).
"""

from ..._lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "config": (
            "TaggerConfig",
            "MODEL",
            "TRAIN",
        ),
        "model": ("SequenceTagger",),
        "task": (
            "EVAL_WINDOW",
            "TagTask",
            "predict_tags",
        ),
        "run": (
            "PRESET",
            "train_case_tagger",
            "CaseTask",
            "load_tagger",
            "restore_case",
            "options",
        ),
    },
)
