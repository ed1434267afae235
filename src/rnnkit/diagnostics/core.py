"""The numbers behind the diagnostics, for any unidirectional :class:`~rnnkit.layers.Recurrent` stack.

:func:`trace` runs the stack one step at a time through each cell's readable ``step`` (so every
hidden state h_t is a node of the graph, and the gates can be read), in eval mode (no dropout).

Shape legend: T steps, B batch, K layers, H hidden units, S = the state's size (H, or 2H for an LSTM's
(h, c)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cells.base import State, map_state, state_fields
from ..errors import InputError
from ..layers.recurrent import Recurrent
from ..training.task import evaluating

GATE_RANGES = {"input": (0, 1), "forget": (0, 1), "output": (0, 1), "cell": (-1, 1), "reset": (0, 1),
               "update": (0, 1), "new": (-1, 1)}  # fmt: skip


@dataclass
class Trace:
    """What :func:`trace` saw.

    Attributes:
        inputs: per layer, its input (T, B, F_k) (the layer below's output, detached).
        hidden: per layer, the hidden states h_t, a list of T tensors (B, H) that are graph nodes.
        states: per layer, the full states after each step (for an LSTM, LSTMState(h, c)).
        gates: per layer, gate name -> (T, B, H) (LSTM and GRU cells; empty for the others).
        output: (T, B, O), the top layer's outputs, with the graph.
    """

    inputs: list[Tensor] = field(default_factory=list)
    hidden: list[list[Tensor]] = field(default_factory=list)
    states: list[list[State]] = field(default_factory=list)
    gates: list[dict[str, Tensor]] = field(default_factory=list)
    output: Tensor | None = None


def _check_layer(layer: Recurrent) -> None:
    if not isinstance(layer, Recurrent):
        raise InputError(f"diagnostics need an rnnkit Recurrent layer, got {type(layer).__name__}")
    if layer.num_directions != 1:
        raise InputError("diagnostics follow time forward: use a unidirectional layer")


def trace(layer: Recurrent, x: Tensor, state: State | None = None, gates: bool = False) -> Trace:
    """Run ``layer`` over x (T, B, F) step by step, keeping every hidden state in the graph."""
    _check_layer(layer)
    if x.dim() != 3:
        raise InputError(f"x must be (T, B, F), got shape {tuple(x.shape)}")
    out = Trace()
    inputs = x
    cells = layer.layer_cells()
    for k, cell in enumerate(cells):
        if state is None:
            s = cell.init_state(x.shape[1], dtype=x.dtype, device=x.device)
        else:  # (K, B, H), or LSTMState of them, as Recurrent takes it
            s = map_state(lambda v, k=k: v[k], state)
        hs, ss, ys = [], [], []
        recorded: dict[str, list[Tensor]] = {}
        for x_t in inputs.unbind(0):  # not inputs[t]: each would get a full (T, B, F) gradient, O(T^2)
            if gates and hasattr(cell, "gates"):
                for name, value in cell.gates(x_t, s).items():
                    recorded.setdefault(name, []).append(value.detach())
            y, s = cell.step(x_t, s)
            ys.append(y)
            ss.append(s)
            hs.append(state_fields(s)[0])  # h: a state's first field (LSTMState(h, c) and every NamedTuple)
        out.inputs.append(inputs.detach())
        out.hidden.append(hs)
        out.states.append(ss)
        out.gates.append({name: torch.stack(v) for name, v in recorded.items()})
        inputs = torch.stack(ys)  # (T, B, O): the next layer's input
    out.output = inputs
    return out


def gradient_flow(layer: Recurrent, x: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> dict[str, list]:
    """``||dL/dh_t||`` for every step and layer, L = ``loss_fn(outputs (T, B, O))``.

    The norm is the L2 norm over units, averaged over the batch. Returns ``{"norms": [[...T] per
    layer], "ratio": [first/last per layer], "loss": L}``; a ratio far below 1 is a vanishing gradient
    (the first steps barely affect the loss), far above 1 an exploding one.
    """
    with evaluating(layer):
        t = trace(layer, x)
        loss = loss_fn(t.output)
        flat = [h for layer_h in t.hidden for h in layer_h]
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
    T = x.shape[0]
    norms = []
    for k in range(len(t.hidden)):
        row = []
        for g in grads[k * T : (k + 1) * T]:
            row.append(0.0 if g is None else float(g.norm(dim=-1).mean()))
        norms.append(row)
    ratio = [row[0] / row[-1] if row[-1] > 0 else float("inf") for row in norms]
    return {"norms": norms, "ratio": ratio, "loss": float(loss.detach())}


def _flatten(s: State) -> Tensor:
    """A state's fields side by side (B, n1 + n2 + ...): any NamedTuple state, not only LSTMState."""
    return torch.cat(state_fields(s), -1)


def _unflatten(v: Tensor, like: State) -> State:
    if isinstance(like, tuple):
        return type(like)(*v.split([f.shape[-1] for f in like], -1))
    return v


@torch.no_grad()
def jacobian_spectrum(layer: Recurrent, x: Tensor, layer_index: int = 0, sample: int = 0,
                      top: int = 5) -> dict[str, list]:  # fmt: skip
    """The Jacobians J_t = ds_t/ds_{t-1} of one layer's state along the trajectory of one sample.

    Returns ``{"spectral_norm": [T], "singular_values": [T][top], "product_norm": [T]}`` where
    ``product_norm[t]`` is the spectral norm of J_t J_{t-1} ... J_1 = ds_t/ds_0: it shrinking
    geometrically is why gradients vanish, growing why they explode. The state s is h, or (h, c)
    concatenated for an LSTM; the layer's input at each step is held fixed.
    """
    _check_layer(layer)
    cells = layer.layer_cells()
    if not 0 <= layer_index < len(cells):
        raise InputError(f"layer_index must be in [0, {len(cells)}), got {layer_index}")
    if not 0 <= sample < x.shape[1]:
        raise InputError(f"sample must be in [0, {x.shape[1]}), got {sample}")
    with evaluating(layer):
        t = trace(layer, x[:, sample : sample + 1])
    cell, inputs, states = cells[layer_index], t.inputs[layer_index], t.states[layer_index]
    start = cell.init_state(1, dtype=x.dtype, device=x.device)
    previous = [start, *states[:-1]]
    spectral, values, product_norms = [], [], []
    product = None
    for step in range(x.shape[0]):
        like = previous[step]

        def next_state(v: Tensor, x_t: Tensor = inputs[step], like: State = like) -> Tensor:
            return _flatten(cell.step(x_t, _unflatten(v[None], like))[1])[0]

        with torch.enable_grad():
            J = torch.func.jacrev(next_state)(_flatten(like)[0].detach())  # (S, S)
        sv = torch.linalg.svdvals(J)
        spectral.append(float(sv[0]))
        values.append([float(v) for v in sv[:top]])
        product = J if product is None else J @ product
        product_norms.append(float(torch.linalg.matrix_norm(product, ord=2)))
    return {"spectral_norm": spectral, "singular_values": values, "product_norm": product_norms}


def saturated(values: Tensor, name: str) -> Tensor:
    """Where ``values`` of gate ``name`` (a key of :data:`GATE_RANGES`) are saturated (same shape, bool):
    sigmoid gates below 0.1 or above 0.9, tanh-ranged ones beyond +-0.9."""
    lo, _ = GATE_RANGES[name]
    return (values.abs() > 0.9) if lo < 0 else ((values < 0.1) | (values > 0.9))


@torch.no_grad()
def gate_statistics(layer: Recurrent, x: Tensor, bins: int = 20) -> list[dict[str, dict]]:
    """Per layer and gate: mean, std, the fraction saturated (sigmoid gates < 0.1 or > 0.9; tanh
    candidates |g| > 0.9), the saturated fraction of each unit, and a histogram (``bins`` counts over
    the gate's range). Only LSTM and GRU cells have gates; other layers give ``{}``."""
    with evaluating(layer):
        t = trace(layer, x, gates=True)
    out = []
    for gates in t.gates:
        stats = {}
        for name, g in gates.items():  # (T, B, H)
            lo, hi = GATE_RANGES[name]
            sat = saturated(g, name)
            stats[name] = {
                "mean": float(g.mean()),
                "std": float(g.std()),
                "saturated": float(sat.float().mean()),
                "saturated_per_unit": sat.float().mean((0, 1)).tolist(),
                "histogram": torch.histc(g.float(), bins=bins, min=lo, max=hi).tolist(),
                "range": [lo, hi],
            }
        out.append(stats)
    return out


def pca(states: Tensor, components: int = 2, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Project hidden states (T, B, H) on their top principal components, fitted over all T * B steps,
    or over the steps where ``mask`` (T, B) is True (e.g. not padding).

    Returns ``(projections (T, B, components), explained variance ratio (components,))``.
    """
    if states.dim() != 3:
        raise InputError(f"states must be (T, B, H), got shape {tuple(states.shape)}")
    if mask is not None and mask.shape != states.shape[:2]:
        raise InputError(f"mask must be (T, B) = {tuple(states.shape[:2])}, got {tuple(mask.shape)}")
    flat = states.detach().reshape(-1, states.shape[-1]).double()
    fitted = flat if mask is None else flat[mask.reshape(-1)]
    mean = fitted.mean(0)
    _, s, v = torch.linalg.svd(fitted - mean, full_matrices=False)
    var = s**2
    k = min(components, v.shape[0])
    proj = ((flat - mean) @ v[:k].t()).reshape(*states.shape[:2], k)
    return proj.to(states.dtype), (var[:k] / var.sum()).to(states.dtype)
