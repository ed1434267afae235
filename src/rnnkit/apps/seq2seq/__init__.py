"""Sequence to sequence (translation): an encoder-decoder with attention on generated pairs.

``rnnkit train seq2seq`` and ``rnnkit translate`` (its ``cli.py``).

Same shape as every application: ``config.py`` (typed configs, presets), ``model.py``, ``task.py``
(what :func:`rnnkit.training.fit` trains), ``run.py`` (train / load / evaluate), ``cli.py``.
Names load lazily (``rnnkit --help`` imports no torch).
"""

from ..._lazy import exports

__getattr__, __all__ = exports(
    __name__,
    {
        "config": (
            "EOS",
            "decoders",
            "Seq2SeqConfig",
            "PairsConfig",
            "PRESETS",
        ),
        "model": (
            "DECODERS",
            "DecoderState",
            "Seq2Seq",
        ),
        "task": ("Seq2SeqTask",),
        "run": (
            "TrainedSeq2Seq",
            "Translation",
            "options_from",
            "make_splits",
            "train_seq2seq",
            "load_splits",
            "load_seq2seq",
            "decode",
            "decode_pairs",
            "exact_match",
            "translate",
            "plot_attention",
        ),
    },
)
