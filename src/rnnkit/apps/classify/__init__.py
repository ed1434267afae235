"""Sequence classification: labelled series (.ts) -> a recurrent classifier -> labels.

``rnnkit train classify`` and ``rnnkit predict`` (its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``.
Names load lazily (``rnnkit --help`` imports no torch).
"""

from ..._lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "config": (
            "POOLS",
            "MODELS",
            "cell_names",
            "ClassifierConfig",
            "PRESETS",
        ),
        "model": (
            "CELLS",
            "build_classifier",
            "Normalizer",
            "AttentionPool",
            "pool",
            "SequenceClassifier",
            "MLPClassifier",
        ),
        "task": (
            "ClassifyTask",
            "predict_classes",
            "evaluate_classifier",
        ),
        "run": (
            "TrainedClassifier",
            "options_from",
            "as_dataset",
            "split_stratified",
            "train_classifier",
            "load_classifier",
            "score",
            "predict",
            "plot_confusion",
        ),
    },
)
