"""Deprecated: each model moved into its application's folder (``rnnkit.apps.<name>.model``)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "LMConfig": "lm", "LanguageModel": "lm", "ClassifierConfig": "classify", "MLPClassifier": "classify",
    "SequenceClassifier": "classify", "build_classifier": "classify", "Seq2Seq": "seq2seq",
    "Seq2SeqConfig": "seq2seq",
}  # fmt: skip

__all__ = sorted(_MOVED)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        new = f"rnnkit.apps.{_MOVED[name]}.model"
        warnings.warn(f"rnnkit.models.{name} moved to {new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
