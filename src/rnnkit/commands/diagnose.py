"""``rnnkit diagnose``: each diagnostic on a trained language-model run or on a fresh model for a task.

For a run directory the input is a text (``text=``, default a passage of Romeo and Juliet) and the loss
is the next-character loss at the last position, so gradient flow shows how far back the last
prediction reaches. For a task (:mod:`rnnkit.data.synthetic`) the input is a batch of the task and the
loss is the task's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data.synthetic import make_batch
from ..diagnostics import core, plots
from ..errors import InputError

KINDS = ("gradients", "jacobian", "gates", "pca", "units")
TEXT = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon,\nWho is already sick and pale with grief,\n"
    "That thou her maid art far more fair than she:\n"
)


def _subject(run_dir: str | None, task: str | None, cell: str, hidden: int, length: int, batch: int,
             seed: int, text: str | None) -> dict[str, Any]:  # fmt: skip
    """The layer, its input (T, B, F), a loss on its outputs, and (for text) the characters."""
    if (run_dir is None) == (task is None):
        raise InputError("give a trained run (--run DIR) or a task for a fresh model (--task NAME), not both")
    if run_dir is not None:
        from ..apps.lm import load_language_model

        trained = load_language_model(run_dir)
        text = TEXT if text is None else text
        ids = trained.tokenizer.encode(text, source="the text")
        if len(ids) < 2:
            raise InputError("the text needs at least 2 characters")
        model = trained.model
        x = model.embedding(ids[:-1, None]).detach()  # (T, 1, H)

        def loss_fn(y: torch.Tensor) -> torch.Tensor:  # the last position's next-character loss
            return F.cross_entropy(model.readout(y[-1]), ids[-1:])

        return {"layer": model.rnn, "x": x, "loss": loss_fn, "text": text[:-1], "name": str(run_dir)}
    from ..apps.synthetic.model import TaskModel

    torch.manual_seed(seed)
    model = TaskModel(task, cell, hidden)
    x, y = make_batch(task, batch, length, seed)
    model.eval()
    features = model.features(x).detach()
    return {"layer": model.rnn, "x": features, "loss": lambda out: model.loss(model.head(out), y),
            "labels": None, "name": f"{cell} on {task} (T={features.shape[0]}, fresh)"}  # fmt: skip


def diagnose(
    kind: str,
    out: str | os.PathLike[str],
    *,
    run_dir: str | None = None,
    task: str | None = None,
    cell: str = "lstm",
    hidden: int = 64,
    length: int = 100,
    batch: int = 32,
    seed: int = 0,
    layer: int | None = None,
    units: list[int] | None = None,
    text: str | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """Compute diagnostic ``kind`` (one of :data:`KINDS`), draw its PNG at ``out`` and return its numbers.
    A classifier's run (``rnnkit train classify``) supports ``pca``, on the series of ``data``."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if run_dir is not None and (Path(run_dir) / "classes.json").is_file():
        if kind != "pca":
            raise InputError(
                f"{run_dir} is a classifier's run: it supports `diagnose pca` (trajectories coloured by "
                f"class); {kind} works on language-model runs and on --task models"
            )
        return classifier_pca(run_dir, out, data=data, layer=layer)
    layer = 0 if layer is None else layer
    s = _subject(run_dir, task, cell, hidden, length, batch, seed, text)
    layer_module, x, name = s["layer"], s["x"], s["name"]
    report: dict[str, Any] = {"kind": kind, "subject": name, "plot": str(out)}
    if kind == "gradients":
        r = core.gradient_flow(layer_module, x, s["loss"])
        curves = {f"layer {k}": row for k, row in enumerate(r["norms"])}
        plots.plot_gradient_flow(curves, out, title=f"gradient flow: {name}")
        report.update(r)
    elif kind == "jacobian":
        r = core.jacobian_spectrum(layer_module, x, layer_index=layer)
        plots.plot_jacobian(r, out, title=f"Jacobians of layer {layer}: {name}")
        report.update(r)
    elif kind == "gates":
        stats = core.gate_statistics(layer_module, x)
        if not stats[layer]:
            raise InputError("gates need an LSTM or GRU layer; this one has none")
        plots.plot_gates(stats[layer], out, title=f"gates of layer {layer}: {name}")
        report["gates"] = {
            g: {k: v for k, v in d.items() if k != "saturated_per_unit"} for g, d in stats[layer].items()
        }
    else:
        with torch.no_grad():
            t = core.trace(layer_module, x)
        hidden_states = torch.stack(t.hidden[layer]).detach()  # (T, B, H)
        if kind == "pca":
            proj, explained = core.pca(hidden_states)
            plots.plot_pca(proj, out, explained, title=f"hidden states of layer {layer}: {name}")
            report["explained_variance"] = explained.tolist()
        else:
            if "text" not in s:
                raise InputError("units draws activations over a text: use --run DIR")
            H = hidden_states.shape[-1]
            chosen = units or list(range(min(4, H)))
            bad = [u for u in chosen if not 0 <= u < H]
            if bad:
                raise InputError(f"units must be in [0, {H}), got {bad}")
            acts = hidden_states[:, 0, chosen]  # (N, U)
            plots.plot_units(s["text"], acts, chosen, out, title=f"layer {layer} units: {name}")
            report["units"] = chosen
            report["mean_abs_activation"] = acts.abs().mean(0).tolist()
    return report


@torch.no_grad()
def classifier_pca(run_dir: str | os.PathLike[str], out: str | os.PathLike[str], data: str | None = None,
                   layer: int | None = None, per_class: int = 8) -> dict[str, Any]:  # fmt: skip
    """The hidden-state trajectories of a trained classifier's recurrent ``layer`` (default the top
    one; both directions' h side by side), projected on their first two principal components (fitted
    over every step of every series in ``data``, padding left out) and coloured by class: up to
    ``per_class`` series of each class are drawn, each up to its own length. ``data``: a ``.ts`` file
    or dataset name; default the run's training series."""
    from ..apps.classify import as_dataset, load_classifier
    from ..training.task import evaluating

    trained = load_classifier(run_dir)
    model = trained.model
    if not hasattr(model, "rnn"):
        raise InputError(f"{run_dir}: an MLP classifier has no hidden states over time")
    source = data or json.loads((Path(run_dir) / "classes.json").read_text())["train"]
    dataset = as_dataset(source)
    if dataset.labels is None:
        raise InputError(f"{dataset.source}: the series need class labels to colour by class")
    rnn = model.rnn
    layer = rnn.num_layers - 1 if layer is None else layer
    if not 0 <= layer < rnn.num_layers:
        raise InputError(f"layer must be in [0, {rnn.num_layers}) for this classifier, got {layer}")
    x, lengths = dataset.padded()  # (N, T, C), (N,)
    with evaluating(model):
        trace = rnn.forward_with_states(model.normalizer(x), lengths=lengths)
    h = trace.states[0] if isinstance(trace.states, tuple) else trace.states  # (N, T, K, n), batch first
    D = rnn.num_directions
    states = h[:, :, layer * D : (layer + 1) * D].flatten(2).transpose(0, 1)  # (T, N, D * n)
    valid = torch.arange(states.shape[0])[:, None] < lengths[None, :]  # (T, N)
    proj, explained = core.pca(states, mask=valid)
    labels = dataset.targets(trained.classes)  # (N,)
    classes = range(len(trained.classes))
    picked = torch.cat([torch.nonzero(labels == k).flatten()[:per_class] for k in classes])
    proj = proj.masked_fill(~valid[..., None], float("nan"))[:, picked]
    title = f"layer {layer} by class: {Path(run_dir).name} on {Path(dataset.source).name}"
    plots.plot_pca(proj, out, explained, labels=labels[picked].tolist(), classes=trained.classes, title=title)
    return {"kind": "pca", "subject": str(run_dir), "plot": str(out), "data": dataset.source,
            "explained_variance": explained.tolist(), "series": int(x.shape[0]),
            "drawn": len(picked), "classes": trained.classes, "layer": layer}  # fmt: skip
