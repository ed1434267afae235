"""Sequence classification: labelled series (.ts) or texts (.csv, .tsv, .jsonl) -> a recurrent
classifier -> labels.

``rnnkit train classify`` and ``rnnkit predict`` (its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``; texts add
``text_model.py`` (embedding -> Recurrent -> pool) and ``text.py`` (tokenise, train, predict, attention).
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
            "TextOptions",
            "TextClassifierConfig",
            "TEXT_PRESET",
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
            "stratified_indices",
            "split_stratified",
            "train_classifier",
            "load_classifier",
            "score",
            "predict",
            "plot_confusion",
        ),
        "text_model": ("TextClassifier",),
        "text": (
            "TrainedTextClassifier",
            "as_texts",
            "train_text_classifier",
            "is_text_run",
            "load_text_classifier",
            "score_texts",
            "predict_texts",
            "attention_map",
            "plot_attention",
        ),
    },
)
