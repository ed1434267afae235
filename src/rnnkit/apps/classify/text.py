"""Text classification end to end: labelled texts -> tokens -> classifier -> training -> a run directory.

``rnnkit train classify --train FILE`` comes here when FILE is ``.csv``, ``.tsv`` or ``.jsonl`` (``.ts``
series go to :mod:`.run`); ``rnnkit predict`` and ``rnnkit diagnose attention`` read the run
back. A run directory holds ``config.json`` (``{"train": ..., "model": ...}``), ``tokenizer.json`` (the
vocabulary of the training file), ``classes.json`` (the class names in the order of the model's
outputs, and how texts are read: columns, tokenizer, ``max_tokens``), ``metrics.jsonl``,
``checkpoints/``, the training plots, ``results.json`` (the final scores: accuracy, macro F1, per-class
precision / recall / F1 and the confusion matrix, on the training and test files) and
``confusion.png``.

Protocol, as for series: the vocabulary and the weights come from the training file only. Validation
(the ``best`` checkpoint, ``patience``) uses a stratified held-out fraction of the training texts (10%
by default) or a ``valid`` set given explicitly; the test file is scored once, at the end, with the
``best`` weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...configs import as_config
from ...data.labelled_text import (
    LabelledTexts,
    encode_texts,
    fit_tokenizer,
    read_labelled_text,
    token_strings,
)
from ...data.text import Tokenizer, load_tokenizer, save_tokenizer
from ...errors import InputError
from ...training import distributed
from ...training.checkpoint import atomic_write, load_weights
from ...training.config import TrainConfig
from ...training.metrics import classification_report, confusion_matrix
from ...training.rundir import check_fresh, read_json
from ...training.trainer import fit
from .config import TextClassifierConfig, TextOptions
from .run import plot_confusion, stratified_indices
from .task import ClassifyTask, predict_classes
from .text_model import TextClassifier


@dataclass
class TrainedTextClassifier:
    model: TextClassifier
    tokenizer: Tokenizer
    classes: list[str]
    options: TextOptions
    run_dir: Path
    checkpoint: str  # which checkpoint's weights, e.g. "step-000300"

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (N, T) and lengths (N,) of ``texts``, read as in training."""
        ids, lengths, _ = encode_texts(self.tokenizer, texts, self.options.max_tokens)
        return ids, lengths

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """(N, K) class probabilities of ``texts`` (eval mode, no randomness)."""
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"a text to classify must be a non-empty string, got {text!r}")
        return torch.softmax(predict_classes(self.model, *self.encode(texts)), dim=-1)


def as_texts(
    data: str | os.PathLike[str] | LabelledTexts, options: TextOptions, labels: bool = True
) -> LabelledTexts:
    """A dataset as given, or read from a .csv/.tsv/.jsonl file with ``options``' columns."""
    if isinstance(data, LabelledTexts):
        return data
    return read_labelled_text(data, options.text_column, options.label_column, require_labels=labels)


def train_text_classifier(
    train: str | os.PathLike[str] | LabelledTexts,
    test: str | os.PathLike[str] | LabelledTexts | None,
    out: str | os.PathLike[str],
    model_options: TextClassifierConfig | dict[str, Any],
    train_options: TrainConfig | dict[str, Any],
    text_options: TextOptions | None = None,
    *,
    valid: str | os.PathLike[str] | LabelledTexts | None = None,
    valid_fraction: float | None = None,
    epochs: float | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit a tokenizer and a :class:`TextClassifier` on the training texts; score it on the test texts.

    Arguments:
        train, test: files or :class:`LabelledTexts` (``test`` may be None).
        out: the run directory.
        model_options: :class:`TextClassifierConfig` or its fields (not vocab_size, num_classes: those
            come from the data); ``config.TEXT_PRESET[0]`` is the measured default.
        train_options: :class:`TrainConfig` fields.
        text_options: columns and tokenisation (:class:`TextOptions`).
        valid: texts for validation; without it, ``valid_fraction`` (default 0.1) of each training class.
        epochs: train for this many passes over the training texts instead of ``steps``.
        resume: continue the run in ``out`` from its latest checkpoint.

    Returns:
        :func:`~rnnkit.training.trainer.fit`'s report with ``"classes"``, ``"vocab_size"``,
        ``"parameters"``, ``"checkpoint"``, ``"train"`` (scores on every training text) and, with a test
        set, ``"test"`` (accuracy, macro_f1, loss, per_class, confusion); the same is in results.json.
    """
    run_dir = Path(out)
    opts = text_options or TextOptions()
    train_set = as_texts(train, opts)
    test_set = as_texts(test, opts) if test is not None else None
    classes = train_set.classes
    if len(classes) < 2:
        raise InputError(f"{train_set.source}: classification needs at least 2 classes, got {classes}")
    if test_set is not None:
        test_set.targets(classes)  # a label the model cannot output is an error now, not at the end
    config = as_config(TrainConfig, train_options)
    if valid is not None:
        if valid_fraction:
            raise InputError("give a validation set or a valid_fraction, not both")
        fit_set, valid_set = train_set, as_texts(valid, opts)
        valid_set.targets(classes)
    else:
        fraction = 0.1 if valid_fraction is None else valid_fraction
        if fraction:
            kept, held = stratified_indices(train_set.labels or [], classes, fraction, config.seed)
            fit_set, valid_set = (
                train_set.subset(kept, "training part"),
                train_set.subset(held, "validation part"),
            )
        else:
            fit_set, valid_set = train_set, train_set
    if epochs is not None:
        if not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
            raise InputError(f"epochs must be a number > 0, got {epochs!r}")
        config = dataclasses.replace(config, steps=math.ceil(epochs * len(fit_set) / config.batch_size))

    saved = {"kind": "text", "classes": classes, "text": dataclasses.asdict(opts), "train": train_set.source,
             "valid": valid_set.source}  # fmt: skip
    tokenizer = _start_run(run_dir, saved, fit_set, opts, resume)
    model_config = as_config(
        TextClassifierConfig, model_options, vocab_size=tokenizer.vocab_size, num_classes=len(classes)
    )
    torch.manual_seed(config.seed)  # the initial weights depend on --seed
    model = TextClassifier(model_config)
    ids, lengths, cut = encode_texts(tokenizer, fit_set.texts, opts.max_tokens)  # (N, T), (N,)
    valid_ids, valid_lengths, _ = encode_texts(tokenizer, valid_set.texts, opts.max_tokens)
    validation = (valid_ids, valid_lengths, valid_set.targets(classes))
    task = ClassifyTask(
        ids, lengths, fit_set.targets(classes), validation, config.batch_size, seed=config.seed
    )
    report = fit(model, task, config, run_dir, resume=resume, progress=progress)
    report.update(parameters=sum(p.numel() for p in model.parameters()), vocab_size=tokenizer.vocab_size,
                  classes=classes, truncated=cut)  # fmt: skip
    if not distributed.is_main():
        return report  # rank 0 scores and writes for all

    trained = load_text_classifier(run_dir)  # the best weights, by validation loss
    results: dict[str, Any] = {"checkpoint": trained.checkpoint, "classes": classes}
    results["train"] = score_texts(trained, train_set)
    if test_set is not None:
        results["test"] = score_texts(trained, test_set)
        title = f"{Path(test_set.source).name}: accuracy {results['test']['accuracy']:.3f}, macro F1 " \
                f"{results['test']['macro_f1']:.3f}"  # fmt: skip
        plot_confusion(np.array(results["test"]["confusion"]), classes, run_dir / "confusion.png", title)
    atomic_write(run_dir / "results.json", (json.dumps(results, indent=2) + "\n").encode())
    report.update(results)
    return report


def _start_run(run_dir: Path, saved: dict[str, Any], fit_set: LabelledTexts, opts: TextOptions,
               resume: bool) -> Tokenizer:  # fmt: skip
    """Write classes.json and tokenizer.json for a fresh run; check and read them back for a resumed one."""
    classes_path, tokenizer_path = run_dir / "classes.json", run_dir / "tokenizer.json"
    if resume:
        if not classes_path.is_file() or not tokenizer_path.is_file():
            raise InputError(f"{run_dir}: no classes.json or tokenizer.json; not a run of a text classifier")
        old = read_json(classes_path)
        for key in ("classes", "text", "valid"):
            if old.get(key) != saved[key]:
                raise InputError(f"{classes_path}: the run was started with {key}={old.get(key)!r}; "
                                 f"resuming with {saved[key]!r}")  # fmt: skip
        return load_tokenizer(tokenizer_path)
    check_fresh(run_dir)
    tokenizer = fit_tokenizer(fit_set.texts, opts.tokenizer, opts.min_count, opts.vocab_size)
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(classes_path, (json.dumps(saved, indent=2) + "\n").encode())
        save_tokenizer(tokenizer, tokenizer_path)
    return tokenizer


def is_text_run(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` was made by a text classifier (its classes.json says so)."""
    path = Path(run_dir) / "classes.json"
    return path.is_file() and read_json(path).get("kind") == "text"


def load_text_classifier(run_dir: str | os.PathLike[str], which: str = "best") -> TrainedTextClassifier:
    """The text classifier of a run directory with its best (or latest) weights, tokenizer and classes."""
    run_dir = Path(run_dir)
    if not is_text_run(run_dir) or not (run_dir / "config.json").is_file():
        raise InputError(
            f"{run_dir}: not a text classifier's run directory (no classes.json of kind 'text' or no "
            "config.json); train one with `rnnkit train classify --train FILE.csv`"
        )
    info = read_json(run_dir / "classes.json")
    model = TextClassifier(TextClassifierConfig(**read_json(run_dir / "config.json")["model"]))
    ckpt = load_weights(model, run_dir, which)
    return TrainedTextClassifier(model, load_tokenizer(run_dir / "tokenizer.json"), info["classes"],
                                 TextOptions(**info["text"]), run_dir, ckpt.path.name)  # fmt: skip


def score_texts(trained: TrainedTextClassifier, data: LabelledTexts) -> dict[str, Any]:
    """Scores of labelled texts: accuracy, macro_f1, loss (nats), per_class, confusion, count."""
    y = data.targets(trained.classes, against=f"the training file of {trained.run_dir}")  # (N,)
    ids, lengths = trained.encode(data.texts)
    logits = predict_classes(trained.model, ids, lengths)  # (N, K)
    report = classification_report(
        confusion_matrix(y, logits.argmax(-1), len(trained.classes)), trained.classes
    )
    report.update(loss=float(torch.nn.functional.cross_entropy(logits, y)), count=len(data))
    return report


def predict_texts(
    run_dir: str | os.PathLike[str],
    texts: list[str] | None = None,
    file: str | os.PathLike[str] | None = None,
    which: str = "best",
) -> dict[str, Any]:
    """Label ``texts``, or the texts of ``file`` (.csv/.tsv/.jsonl, scored when it has labels; any other
    file: one text per non-empty line).

    Returns ``{"run_dir", "classes", "predictions": [{"text", "label", "probabilities": {class: p}}]}``,
    and with a labelled file its scores under ``"scores"``.
    """
    trained = load_text_classifier(run_dir, which)
    scores = None
    if file is not None:
        from ...data.labelled_text import is_text_file
        from ...data.text import read_text

        if is_text_file(file):
            data = as_texts(file, trained.options, labels=False)
            texts = data.texts
            if data.labels is not None:
                scores = score_texts(trained, data)
        else:
            texts = [line for line in read_text(file).split("\n") if line.strip()]
    if not texts:
        raise InputError("nothing to classify: give a text or a file of texts")
    probs = trained.probabilities(texts)  # (N, K)
    predictions = [
        {"text": t, "label": trained.classes[int(p.argmax())],
         "probabilities": {c: float(p[k]) for k, c in enumerate(trained.classes)}}
        for t, p in zip(texts, probs, strict=True)
    ]  # fmt: skip
    out: dict[str, Any] = {
        "run_dir": str(trained.run_dir),
        "classes": trained.classes,
        "predictions": predictions,
    }
    if scores is not None:
        out["scores"] = scores
    return out


def attention_map(
    run_dir: str | os.PathLike[str], text: str, out: str | os.PathLike[str] | None = None, which: str = "best"
) -> dict[str, Any]:
    """Which tokens a trained attention-pooling classifier weighed, for one text; drawn as a PNG if ``out``.

    Returns ``{"run_dir", "text", "label", "probabilities", "tokens", "weights", "plot"}``; the weights
    (one per token, summing to 1) are the attention pooling's ``a_t``.
    """
    trained = load_text_classifier(run_dir, which)
    probs = trained.probabilities([text])[0]  # (K,)
    ids, lengths = trained.encode([text])
    with torch.no_grad():
        weights = trained.model.attention(ids, lengths)[0]  # (T,)
    tokens = token_strings(trained.tokenizer, text, trained.options.max_tokens)
    label = trained.classes[int(probs.argmax())]
    report = {"run_dir": str(trained.run_dir), "text": text, "label": label,
              "probabilities": {c: float(probs[k]) for k, c in enumerate(trained.classes)},
              "tokens": tokens, "weights": weights.tolist(), "plot": None}  # fmt: skip
    if out is not None:
        title = f"predicted {label} (p = {float(probs.max()):.2f}); darker = more attention"
        report["plot"] = str(plot_attention(tokens, weights.tolist(), Path(out), title))
    return report


def plot_attention(
    tokens: list[str], weights: list[float], path: Path, title: str, per_row: int = 12
) -> Path:
    """Draw tokens in reading order, each on a cell shaded by its weight (rows of ``per_row`` tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...training.plots import _save

    rows = max(1, math.ceil(len(tokens) / per_row))
    grid = np.full((rows, per_row), np.nan)
    grid.flat[: len(weights)] = weights
    fig, ax = plt.subplots(figsize=(1.0 * per_row, 0.5 * rows + 1.0))
    image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=max(max(weights, default=0), 1e-9), aspect="auto")
    for i, (token, w) in enumerate(zip(tokens, weights, strict=True)):
        shown = token.replace("\n", "\\n").strip() or repr(token)
        ax.text(i % per_row, i // per_row, shown[:12], ha="center", va="center", fontsize=8,
                color="white" if w > 0.6 * max(weights) else "black")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="attention weight")
    return _save(fig, path)
