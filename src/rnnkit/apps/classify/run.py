"""Sequence classification end to end: series -> classifier -> training -> a run directory, and back.

The CLI's ``rnnkit train classify`` and ``rnnkit predict`` are thin shells over these functions. A run
directory holds ``config.json`` (``{"train": ..., "model": ...}``), ``classes.json`` (the class names,
in the order of the model's outputs), ``metrics.jsonl``, ``checkpoints/`` (safetensors weights,
including the normalisation statistics), the training plots and ``confusion.png``.

Protocol: the model is trained on the training series only. Validation (the trainer's
``eval_every``, the ``best`` checkpoint, ``patience``) uses a stratified held-out fraction of them with
``valid_fraction`` > 0, and otherwise the training set itself (so ``best`` is the lowest training
loss). The test series are scored once, at the end, with the ``best`` weights: they never choose a
checkpoint or stop a run.
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
from ...data import uea
from ...data.timeseries import SeriesDataset, read_ts
from ...errors import InputError
from ...options import field_names, options_of, route
from ...training import distributed
from ...training.checkpoint import atomic_write, load_weights
from ...training.config import TrainConfig
from ...training.results import per_class_scores, write_results
from ...training.rundir import check_fresh
from ...training.trainer import fit
from .config import PRESETS, ClassifierConfig
from .model import MLPClassifier, SequenceClassifier, build_classifier
from .task import ClassifyTask, evaluate_classifier, predict_classes


@dataclass
class TrainedClassifier:
    model: SequenceClassifier | MLPClassifier
    classes: list[str]
    run_dir: Path
    checkpoint: str  # which checkpoint's weights, e.g. "step-000300"


def options_from(model: str | None, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and training options: the defaults of ``model`` ("rnn" or "mlp"), with every non-None
    override applied (each goes to whichever of ClassifierConfig and TrainConfig has that field)."""
    kind = model or "rnn"
    if kind not in PRESETS:
        raise InputError(f"model must be one of {sorted(PRESETS)}, got {kind!r}")
    model_opts, train_opts = (options_of(c) for c in PRESETS[kind])
    for derived in ("input_size", "num_classes", "max_len"):
        model_opts.pop(derived, None)
    model_fields = field_names(ClassifierConfig) - {"input_size", "num_classes", "max_len"}
    route(overrides, (model_opts, model_fields), (train_opts, field_names(TrainConfig)))
    return model_opts, train_opts


def as_dataset(data: str | os.PathLike[str] | SeriesDataset, split: str = "train") -> SeriesDataset:
    """A dataset as given, read from a ``.ts`` file, or a UEA/UCR problem's ``split`` ("train" or "test")
    by name (:func:`rnnkit.data.uea.files`)."""
    if isinstance(data, SeriesDataset):
        return data
    if uea.is_name(data):
        return read_ts(uea.files(str(data))[0 if split == "train" else 1])
    return read_ts(data)


def stratified_indices(
    labels: list[str], classes: list[str], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices kept and held out: ``fraction`` of each class held (at least one of a class of two or more).
    Series and texts are split by this one function."""
    if not 0 < fraction < 1:
        raise InputError(f"valid_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    array = np.array(labels)
    held: list[int] = []
    for c in classes:
        members = np.flatnonzero(array == c)
        k = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.extend(rng.permutation(members)[:k].tolist())
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)


def split_stratified(data: SeriesDataset, fraction: float, seed: int) -> tuple[SeriesDataset, SeriesDataset]:
    """Hold out ``fraction`` of each class (at least one series of every class with two or more)."""
    assert data.labels is not None
    kept, held = stratified_indices(list(data.labels), list(data.classes), fraction, seed)

    def part(index: list[int], name: str) -> SeriesDataset:
        return SeriesDataset([data.series[i] for i in index], [data.labels[i] for i in index],  # type: ignore[index]
                             list(data.classes), f"{data.source} ({name})", data.name)  # fmt: skip

    return part(kept, "training part"), part(held, "validation part")


def train_classifier(
    train: str | os.PathLike[str] | SeriesDataset,
    test: str | os.PathLike[str] | SeriesDataset | None,
    out: str | os.PathLike[str],
    model_options: ClassifierConfig | dict[str, Any],
    train_options: TrainConfig | dict[str, Any],
    *,
    epochs: float | None = None,
    valid_fraction: float = 0.0,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a classifier on labelled series and score it on the test series.

    Arguments:
        train, test: ``.ts`` files or :class:`SeriesDataset` (``test`` may be None).
        out: the run directory.
        model_options: :class:`ClassifierConfig` fields (not input_size, num_classes, max_len: those
            come from the data).
        train_options: :class:`TrainConfig` fields.
        epochs: train for this many passes over the training series instead of ``steps``.
        valid_fraction: hold out this fraction of each class for validation (see the module docstring).
        resume: continue the run in ``out`` from its latest checkpoint.

    Returns:
        :func:`~rnnkit.training.trainer.fit`'s report, with ``"train_accuracy"`` (all training series),
        ``"test_accuracy"``, ``"test_loss"`` and ``"confusion"`` (a K x K list: row = true class,
        column = predicted) when there is a test set, ``"classes"``, ``"parameters"`` and ``"checkpoint"``
        (which weights were scored).
    """
    run_dir = Path(out)
    train_set = as_dataset(train)
    test_set = as_dataset(test, "test") if test is not None else None
    if train_set.labels is None:
        raise InputError(f"{train_set.source}: training series need class labels (@classLabel true ...)")
    present = sorted(set(train_set.labels), key=train_set.classes.index)
    if len(present) < 2:
        raise InputError(
            f"{train_set.source}: classification needs series of at least 2 classes; the training series "
            f"are all of class {present[0] if present else None!r} (declared: {train_set.classes})"
        )
    if test_set is not None:
        _check_channels(test_set, train_set.channels, train_set.source)
        if test_set.labels is None:
            raise InputError(f"{test_set.source}: test series need class labels to be scored")
        test_set.targets(train_set.classes)  # a label the model cannot output is an error now, not at the end
    config = as_config(TrainConfig, train_options)
    fit_set, valid_set = (
        split_stratified(train_set, valid_fraction, config.seed) if valid_fraction else (train_set, train_set)
    )
    if epochs is not None:
        if not (isinstance(epochs, (int, float)) and math.isfinite(epochs) and epochs > 0):
            raise InputError(f"epochs must be a number > 0, got {epochs!r}")
        steps = math.ceil(epochs * len(fit_set) / config.batch_size)
        config = dataclasses.replace(config, steps=steps)

    # the MLP sees a fixed number of steps: the longest series it is shown (longer ones are cut)
    longest = max(int(train_set.lengths.max()), int(test_set.lengths.max()) if test_set is not None else 0)
    shape = as_config(ClassifierConfig, model_options)  # the data's fields are set next, in one go
    model_config = dataclasses.replace(
        shape, input_size=train_set.channels, num_classes=len(train_set.classes),
        max_len=longest if shape.model == "mlp" else None,
    )  # fmt: skip
    torch.manual_seed(config.seed)  # the initial weights depend on --seed
    model = build_classifier(model_config)
    x, lengths = fit_set.padded()  # (N, T, C), (N,)
    model.normalizer.fit(x, lengths)  # training series only; a resumed run loads the same from its checkpoint
    task = ClassifyTask(x, lengths, fit_set.targets(), (*valid_set.padded(), valid_set.targets()),
                        config.batch_size, seed=config.seed)  # fmt: skip
    classes_path = run_dir / "classes.json"
    saved = {"classes": train_set.classes, "train": train_set.source, "problem": train_set.name,
             "valid_fraction": valid_fraction,
             "test": test_set.source if test_set is not None else None}  # fmt: skip
    if resume:
        if not classes_path.is_file():
            raise InputError(
                f"{run_dir}: no classes.json; not a run directory made by `rnnkit train classify`"
            )
        old = json.loads(classes_path.read_text())
        if (old["classes"], old.get("valid_fraction", 0.0)) != (saved["classes"], valid_fraction):
            raise InputError(f"{classes_path}: the run was started with {old}; resuming with {saved}")
    else:
        check_fresh(run_dir)
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(classes_path, (json.dumps(saved, indent=2) + "\n").encode())
    report = fit(model, task, config, run_dir, resume=resume, progress=progress)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    if not distributed.is_main():
        return report  # rank 0 scores and writes for all

    # score the best weights (by validation loss) on every training series and on the test set
    trained = load_classifier(run_dir)
    report["checkpoint"] = trained.checkpoint
    total, correct = evaluate_classifier(trained.model, *train_set.padded(), train_set.targets())
    report.update(train_set_loss=total / len(train_set), train_accuracy=correct / len(train_set))
    report["classes"] = train_set.classes
    if test_set is not None:
        scored = score(trained, test_set)
        report.update(
            test_accuracy=scored["accuracy"], test_loss=scored["loss"], confusion=scored["confusion"]
        )
        title = f"{test_set.name or Path(test_set.source).name}: test accuracy {scored['accuracy']:.4f}"
        report["per_class"] = per_class_scores(scored["confusion"], train_set.classes)
        plot_confusion(np.array(scored["confusion"]), train_set.classes, run_dir / "confusion.png", title)
    keys = ("checkpoint", "train_accuracy", "train_set_loss", "classes", "test_accuracy", "test_loss",
            "confusion", "per_class", "parameters")  # fmt: skip
    write_results(run_dir, {k: report[k] for k in keys if k in report})
    return report


def _check_channels(data: SeriesDataset, channels: int, against: str) -> None:
    if data.channels != channels:
        raise InputError(
            f"{data.source}: series with {data.channels} channels (dimensions); {against} has {channels}"
        )


def load_classifier(run_dir: str | os.PathLike[str], which: str = "best") -> TrainedClassifier:
    """The classifier of a run directory with its best (or latest) weights, and its class names."""
    run_dir = Path(run_dir)
    config_path, classes_path = run_dir / "config.json", run_dir / "classes.json"
    if not config_path.is_file() or not classes_path.is_file():
        raise InputError(
            f"{run_dir}: not a classifier's run directory (no config.json or classes.json); train one with "
            "`rnnkit train classify`"
        )
    model = build_classifier(ClassifierConfig(**json.loads(config_path.read_text())["model"]))
    ckpt = load_weights(model, run_dir, which)
    return TrainedClassifier(model, json.loads(classes_path.read_text())["classes"], run_dir, ckpt.path.name)


def score(trained: TrainedClassifier, data: SeriesDataset) -> dict[str, Any]:
    """Predictions for ``data``; with labels also its mean loss, accuracy and confusion matrix."""
    _check_channels(data, trained.model.config.input_size, str(trained.run_dir))
    x, lengths = data.padded()  # (N, T, C), (N,)
    logits = predict_classes(trained.model, x, lengths)  # (N, K)
    predicted = logits.argmax(-1)  # (N,)
    out: dict[str, Any] = {"predictions": [trained.classes[int(k)] for k in predicted]}
    if data.labels is not None:
        y = data.targets(trained.classes)  # (N,)
        K = len(trained.classes)
        confusion = torch.zeros(K, K, dtype=torch.int64)
        confusion.index_put_(
            (y, predicted), torch.ones_like(y), accumulate=True
        )  # row: true, column: predicted
        out.update(
            accuracy=int((predicted == y).sum()) / len(y),
            correct=int((predicted == y).sum()),
            loss=float(torch.nn.functional.cross_entropy(logits, y)),
            confusion=confusion.tolist(),
        )
    return out


def predict(
    run_dir: str | os.PathLike[str], data: str | os.PathLike[str] | SeriesDataset, which: str = "best"
) -> dict[str, Any]:
    """Label the series of a ``.ts`` file (or dataset) with a trained classifier.

    Returns ``{"run_dir", "file", "series", "predictions"}``, and when the file has labels also
    ``"accuracy"``, ``"correct"``, ``"loss"`` and ``"confusion"``.
    """
    trained = load_classifier(run_dir, which)
    dataset = as_dataset(data, "test")
    return {"run_dir": str(trained.run_dir), "file": dataset.source, "series": len(dataset),
            **score(trained, dataset)}  # fmt: skip


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) with its counts as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...training.plots import _save

    K = len(classes)
    fig, ax = plt.subplots(figsize=(1.5 + 0.5 * K, 1.2 + 0.5 * K))
    ax.imshow(matrix, cmap="Blues")
    for i in range(K):
        for j in range(K):
            if matrix[i, j]:
                dark = matrix[i, j] > matrix.max() / 2
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(K), classes, rotation=90 if max(map(len, classes)) > 3 else 0)
    ax.set_yticks(range(K), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    return _save(fig, path)
