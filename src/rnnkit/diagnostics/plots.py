"""PNG pictures of the diagnostics (matplotlib, off screen). Each function draws one figure to ``path``."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..training.checkpoint import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue())
    return path


def plot_gradient_flow(
    curves: dict[str, Sequence[float]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """``||dL/dh_t||`` against t, one line per label (a cell, a layer, before/after training), log scale."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, norms in curves.items():
        ax.plot(range(len(norms)), [max(n, 1e-45) for n in norms], label=label)
    ax.set(yscale="log", xlabel="time step t", ylabel="||dL/dh_t|| (mean over the batch)",
           title=title or "gradient flow through time")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def plot_jacobian(result: dict[str, list], path: str | os.PathLike[str], title: str = "") -> Path:
    """Spectral norm of each step's Jacobian, its top singular values, and the norm of their product."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    values = torch.tensor(result["singular_values"])  # (T, top)
    for k in range(values.shape[1]):
        a.plot(values[:, k], linewidth=1.8 if k == 0 else 0.8, label="sigma_1 = ||J_t||" if k == 0 else None)
    a.axhline(1.0, color="gray", linestyle="--")
    a.set(xlabel="time step t", ylabel="singular values of J_t = ds_t/ds_{t-1}", title="per step")
    a.legend()
    b.plot([max(v, 1e-45) for v in result["product_norm"]], color="tab:red")
    b.set(yscale="log", xlabel="time step t", ylabel="||J_t ... J_1|| = ||ds_t/ds_0||", title="product")
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(title or "Jacobians along the trajectory")
    return _save(fig, path)


def plot_gates(stats: dict[str, dict], path: str | os.PathLike[str], title: str = "") -> Path:
    """One histogram per gate, with the saturated fraction in its title."""
    plt = _plt()
    names = list(stats)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        s = stats[name]
        lo, hi = s["range"]
        counts = torch.tensor(s["histogram"])
        edges = torch.linspace(lo, hi, len(counts) + 1)
        ax.bar(
            edges[:-1].tolist(), (counts / counts.sum()).tolist(), width=(hi - lo) / len(counts), align="edge"
        )
        ax.set(title=f"{name}: {100 * s['saturated']:.0f}% saturated", xlabel="activation", xlim=(lo, hi))
    axes[0][0].set_ylabel("fraction")
    fig.suptitle(title or "gate activations")
    return _save(fig, path)


def plot_pca(proj: Tensor, path: str | os.PathLike[str], explained: Tensor | None = None,
             labels: Sequence[int] | None = None, title: str = "",
             classes: Sequence[str] | None = None) -> Path:  # fmt: skip
    """Trajectories of hidden states in their first two principal components: proj (T, B, 2) (NaN steps
    are not drawn: padding). Coloured by time step, or by ``labels`` (one per sequence) when given, with
    ``classes`` naming them in a legend; the dot marks each trajectory's last step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    T, B = proj.shape[:2]
    cmap = plt.get_cmap("tab10")
    drawn: set[int] = set()
    for b in range(min(B, 40 if labels is None else 200)):
        xy = proj[:, b].detach().cpu()
        if labels is None:
            ax.plot(xy[:, 0], xy[:, 1], color="gray", alpha=0.3, linewidth=0.7)
            points = ax.scatter(xy[:, 0], xy[:, 1], c=range(T), cmap="viridis", s=8)
        else:
            k = int(labels[b])
            ax.plot(xy[:, 0], xy[:, 1], color=cmap(k % 10), alpha=0.6, linewidth=1)
            last = xy[~xy.isnan().any(-1)][-1:]
            named = classes is not None and k not in drawn
            ax.scatter(last[:, 0], last[:, 1], color=cmap(k % 10), s=25, label=classes[k] if named else None)
            drawn.add(k)
    if labels is None:
        fig.colorbar(points, ax=ax, label="time step")
    elif classes is not None:
        ax.legend(title="class", fontsize=8)
    pcs = (
        ("PC1", "PC2")
        if explained is None
        else (f"PC1 ({100 * explained[0]:.0f}%)", f"PC2 ({100 * explained[1]:.0f}%)")
    )
    ax.set(xlabel=pcs[0], ylabel=pcs[1], title=title or "hidden-state trajectories")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_units(text: str, activations: Tensor, units: Sequence[int], path: str | os.PathLike[str],
               width: int = 80, title: str = "") -> Path:  # fmt: skip
    """The text, once per unit, each character on a background coloured by that unit's activation
    (blue -1 ... white 0 ... red +1): the "interpretable cell" pictures. activations (N, U)."""
    plt = _plt()
    rows = (len(text) + width - 1) // width
    fig, axes = plt.subplots(len(units), 1, figsize=(width * 0.11, (rows * 0.22 + 0.5) * len(units)),
                             squeeze=False)  # fmt: skip
    for ax, (u, unit) in zip(axes[:, 0], enumerate(units), strict=True):
        grid = torch.full((rows, width), float("nan"))
        grid.view(-1)[: len(text)] = activations[: len(text), u].detach().float()
        ax.imshow(grid.numpy(), cmap="bwr", vmin=-1, vmax=1, aspect="auto")
        for k, ch in enumerate(text):
            shown = {"\n": "⏎", " ": ""}.get(ch, ch)
            ax.text(k % width, k // width, shown, ha="center", va="center", fontsize=7, family="monospace")
        ax.set(xticks=[], yticks=[], title=f"unit {unit}")
    fig.suptitle(title or "activation of hidden units over the text")
    return _save(fig, path)
