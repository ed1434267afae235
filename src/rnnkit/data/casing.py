"""Restoring letter case: a many-to-many tagging task on real text.

The input is the text lowercased; the target, for every character, is 1 if it was an uppercase letter
and 0 otherwise. Names in speech headings ("LAFEU.") and words after a sentence end are uppercase, so a
model that reads only the past must guess where a reader of both sides would know.
"""

from __future__ import annotations

import torch
from torch import Tensor


def case_targets(text: str) -> tuple[str, Tensor]:
    """``(text.lower(), labels)``: labels (N,) int64, 1 where ``text`` has an uppercase character.

    Characters whose lowercase form is not one character (e.g. 'İ') are kept as they are, so the input
    and the text stay aligned character for character.
    """
    lower = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    labels = torch.tensor([c.isupper() for c in text], dtype=torch.long)
    return lower, labels


def rule_baseline(lower: str) -> Tensor:
    """The rule a person would write first: capitalise the first letter of every line, every letter after
    a sentence end (. ! ? then spaces), and the word "i". Returns (N,) int64 predictions."""
    pred = torch.zeros(len(lower), dtype=torch.long)
    start = True  # the next letter starts a line or a sentence
    for k, ch in enumerate(lower):
        if ch.isalpha():
            if start:
                pred[k] = 1
            start = False
            prev_ok = k == 0 or not lower[k - 1].isalpha()
            next_ok = k + 1 == len(lower) or not lower[k + 1].isalpha()
            if ch == "i" and prev_ok and next_ok:
                pred[k] = 1
        elif ch == "\n" or (ch in ".!?" and k + 1 < len(lower) and lower[k + 1].isspace()):
            start = True
    return pred


def tag_scores(pred: Tensor, target: Tensor, letters: Tensor | None = None) -> dict[str, float]:
    """Accuracy over all characters (and over letters, given the ``letters`` mask), and precision,
    recall and F1 of the uppercase class."""
    pred, target = pred.flatten(), target.flatten()
    tp = int(((pred == 1) & (target == 1)).sum())
    fp = int(((pred == 1) & (target == 0)).sum())
    fn = int(((pred == 0) & (target == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    scores = {"accuracy": float((pred == target).float().mean()), "upper_precision": precision,
              "upper_recall": recall, "upper_f1": f1}  # fmt: skip
    if letters is not None:
        m = letters.flatten()
        scores["letter_accuracy"] = float((pred[m] == target[m]).float().mean())
    return scores


def letter_mask(lower: str) -> Tensor:
    """(N,) bool, True at letters (the characters whose case is in question)."""
    return torch.tensor([c.isalpha() for c in lower], dtype=torch.bool)
