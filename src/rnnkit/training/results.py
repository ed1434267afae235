"""``results.json`` in a run directory: the final numbers of the run (the trainer's losses, and what the
application scores at the end: a classifier's test accuracy, loss, confusion matrix and per-class
scores), beside ``config.json``, so that a run keeps its results and not only prints them.

Each writer adds its keys to what is there (the trainer first, then the application); a resumed run
replaces them. Written atomically; non-finite numbers are stored as null.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write

RESULTS = "results.json"


def write_results(run_dir: str | os.PathLike[str], results: dict[str, Any]) -> Path:
    """Add ``results`` to ``run_dir/results.json`` (created if missing; a damaged one is replaced)."""
    path = Path(run_dir) / RESULTS
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    merged = {**(old if isinstance(old, dict) else {}), **_safe(results)}
    atomic_write(path, (json.dumps(merged, indent=2) + "\n").encode())
    return path


def per_class_scores(confusion: list[list[int]], classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class from a confusion matrix (row: true class, column:
    predicted); a score with a zero denominator is 0."""
    scores = {}
    for k, name in enumerate(classes):
        tp = confusion[k][k]
        predicted = sum(row[k] for row in confusion)
        support = sum(confusion[k])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return scores


def _safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value
