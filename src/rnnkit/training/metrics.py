"""Classification scores from a confusion matrix: accuracy, per-class precision / recall / F1, macro F1.

For K classes the confusion matrix ``M`` (K, K) counts, in row i and column j, the examples of true class
i predicted as j. Then, for class k::

    precision_k = M[k, k] / sum_i M[i, k]      (of those predicted k, the share that are k)
    recall_k    = M[k, k] / sum_j M[k, j]      (of those that are k, the share predicted k)
    f1_k        = 2 precision_k recall_k / (precision_k + recall_k)

A ratio with a zero denominator is 0 (scikit-learn's ``zero_division=0``), so a class the model never
predicts has precision 0 rather than NaN. Macro F1 is the unweighted mean of ``f1_k`` over the classes;
on unbalanced data it shows what accuracy hides (always answering the majority class scores well on
accuracy and poorly on macro F1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """(K, K) int64 counts: row = true class, column = predicted class, from (N,) class ids."""
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confusion.index_put_((y_true.long().cpu(), y_pred.long().cpu()), torch.ones_like(y_true.long().cpu()),
                         accumulate=True)  # fmt: skip
    return confusion


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))


def classification_report(confusion: Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Scores of a confusion matrix (K, K) with class names ``classes`` (K).

    Returns:
        ``{"accuracy", "macro_f1", "per_class": {name: {"precision", "recall", "f1", "support"}},
        "confusion": K x K list}``.
    """
    m = confusion.double()
    tp = m.diagonal()  # (K,)
    precision = _ratio(tp, m.sum(0))  # (K,)
    recall = _ratio(tp, m.sum(1))  # (K,)
    f1 = _ratio(2 * precision * recall, precision + recall)  # (K,)
    total = m.sum()
    per_class = {
        name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
               "support": int(confusion[k].sum())}
        for k, name in enumerate(classes)
    }  # fmt: skip
    return {
        "accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "macro_f1": float(f1.mean()) if len(classes) else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
