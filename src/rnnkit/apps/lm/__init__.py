"""Language models: a text corpus -> a tokenizer -> a recurrent LM -> generation, scoring, export.

``rnnkit train lm``, ``rnnkit generate``, ``rnnkit evaluate`` and ``rnnkit export`` (its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``.
Names load lazily (``rnnkit --help`` imports no torch).
"""

from ..._lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "config": (
            "LMConfig",
            "PRESETS",
            "TOKENIZERS",
        ),
        "model": ("LanguageModel",),
        "task": (
            "LN2",
            "LMTask",
            "resets",
            "evaluate_stream",
            "free_run",
            "evaluate",
        ),
        "run": (
            "TrainedLM",
            "train_language_model",
            "train_lm",
            "load_language_model",
            "evaluate_text",
            "token_unit",
            "options_from",
        ),
    },
)
