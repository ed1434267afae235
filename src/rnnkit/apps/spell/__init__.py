"""One-to-many: spelling the digit in an 8x8 image, letter by letter.

``rnnkit train spell`` (its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``.
Names load lazily (``rnnkit --help`` imports no torch).
"""

from ..._lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "config": (
            "SpellerConfig",
            "MODEL",
            "TRAIN",
        ),
        "model": ("Speller",),
        "task": (
            "WORDS",
            "SpellTask",
            "targets_for",
            "masked_loss",
        ),
        "run": (
            "PRESET",
            "load_digits_split",
            "train_speller",
            "options",
        ),
    },
)
