"""Deprecated: the Task protocol is :mod:`rnnkit.training.task`; each application's task moved into its
own folder (``rnnkit.apps.<name>.task``)."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    **dict.fromkeys(("Task", "evaluating"), "rnnkit.training.task"),
    **dict.fromkeys(("LN2", "LMTask", "resets", "evaluate_stream", "free_run", "evaluate"),
                    "rnnkit.apps.lm.task"),
    **dict.fromkeys(("ClassifyTask", "predict_classes", "evaluate_classifier"), "rnnkit.apps.classify.task"),
    "Seq2SeqTask": "rnnkit.apps.seq2seq.task",
}  # fmt: skip

__all__ = sorted(_MOVED)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"rnnkit.training.tasks.{name} moved to {_MOVED[name]}", DeprecationWarning,
                      stacklevel=2)  # fmt: skip
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
