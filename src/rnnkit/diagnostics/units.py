"""Single units over a text: how variable, saturated or pattern-like each one is, and the LSTMVis-style
hypothesis search (Strobelt et al. 2017, https://arxiv.org/abs/1606.07461, section 5: select a span,
find the units on inside it and off around it, then the other spans where those units are on together).

Everything works on an activation matrix ``acts`` (N, H): one row per token of the text, one column per
unit (h, c or a gate of one layer, e.g. from :func:`~rnnkit.diagnostics.core.trace`).
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from ..errors import InputError

SCORES = ("variance", "saturation", "correlation")


def _check_acts(acts: Tensor) -> None:
    if not isinstance(acts, Tensor) or acts.dim() != 2 or acts.shape[0] < 1:
        shape = tuple(acts.shape) if isinstance(acts, Tensor) else type(acts).__name__
        raise InputError(f"acts must be (N, H) with N >= 1, got {shape}")


def pattern_from_regex(tokens: list[str], regex: str) -> Tensor:
    """(N,) float: 1 for each token that overlaps a match of ``regex`` in ``"".join(tokens)``, else 0."""
    try:
        compiled = re.compile(regex)
    except re.error as e:
        raise InputError(f"pattern is not a valid regular expression ({e}): {regex!r}") from None
    text = "".join(tokens)
    inside = torch.zeros(len(text) + 1, dtype=torch.long)  # +1 at each match start, -1 at its end
    for m in compiled.finditer(text):
        if m.end() > m.start():
            inside[m.start()] += 1
            inside[m.end()] -= 1
    covered = inside.cumsum(0)[:-1] > 0  # (len(text),) characters inside a match
    starts = torch.tensor([0, *[len(t) for t in tokens]]).cumsum(0)
    return torch.tensor([float(covered[a:b].any()) for a, b in zip(starts[:-1], starts[1:], strict=True)])


def unit_scores(acts: Tensor, saturated: Tensor | None = None, pattern: Tensor | None = None) -> dict:
    """Per unit (H,): ``variance`` over the N tokens; ``saturation``, the fraction of tokens where the
    unit is saturated (``saturated`` (N, H) bool, e.g. from :func:`~rnnkit.diagnostics.core.saturated`;
    None where the quantity has no fixed range); ``correlation``, Pearson's r between the unit and
    ``pattern`` (N,) (0 where either is constant; None without a pattern)."""
    _check_acts(acts)
    a = acts.detach().double()
    out: dict = {"variance": a.var(0, unbiased=False), "saturation": None, "correlation": None}
    if saturated is not None:
        out["saturation"] = saturated.double().mean(0)
    if pattern is not None:
        if pattern.shape != acts.shape[:1]:
            raise InputError(f"pattern must be (N,) = ({acts.shape[0]},), got {tuple(pattern.shape)}")
        da, dp = a - a.mean(0), (pattern.double() - pattern.double().mean())[:, None]  # (N, H), (N, 1)
        denom = (da.square().sum(0) * dp.square().sum()).sqrt()  # (H,)
        out["correlation"] = torch.where(denom > 0, (da * dp).sum(0) / denom.clamp_min(1e-300), 0.0)
    return out


def select_units(
    acts: Tensor, start: int, end: int, threshold: float, left: int = 1, right: int = 0
) -> Tensor:
    """The units on (``>= threshold``) at every token of the span [start, end), and off at the ``left``
    tokens before it and the ``right`` tokens after it (as far as the text goes): (U,) unit indices."""
    _check_acts(acts)
    N = acts.shape[0]
    if not 0 <= start < end <= N:
        raise InputError(f"the span must satisfy 0 <= start < end <= {N} (tokens), got [{start}, {end})")
    if left < 0 or right < 0:
        raise InputError(f"left and right must be >= 0, got {left} and {right}")
    on = acts.detach() >= threshold  # (N, H)
    chosen = on[start:end].all(0)
    chosen &= ~on[max(0, start - left) : start].any(0)
    chosen &= ~on[end : end + right].any(0)
    return torch.nonzero(chosen).flatten()


def match_spans(acts: Tensor, units: Tensor, threshold: float, min_length: int = 2, agree: float = 1.0,
                top: int = 20) -> list[dict]:  # fmt: skip
    """The spans where the ``units`` are on together, best first (ranked as LSTMVis ranks them).

    A span is a maximal run of >= ``min_length`` tokens at each of which at least a fraction ``agree``
    of ``units`` is on (``>= threshold``). The units on throughout a span are compared with ``units``:
    spans sharing the most of them (``shared``) come first, then those with the fewest other units on
    throughout (``extra``), then the longest. Returns up to ``top`` dicts ``{"start", "end", "length",
    "shared", "extra", "jaccard"}`` (tokens, end exclusive; jaccard = shared / |union|).
    """
    _check_acts(acts)
    if not 0 < agree <= 1:
        raise InputError(f"agree must be in (0, 1], got {agree!r}")
    if units.numel() == 0:
        return []
    on = acts.detach() >= threshold  # (N, H)
    need = max(1, math.ceil(agree * units.numel() - 1e-9))
    together = (on[:, units].sum(1) >= need).tolist()  # (N,) enough units of the hypothesis on
    chosen = set(units.tolist())
    spans, t, N = [], 0, len(together)
    while t < N:
        if not together[t]:
            t += 1
            continue
        s = t
        while t < N and together[t]:
            t += 1
        if t - s >= min_length:
            always = set(torch.nonzero(on[s:t].all(0)).flatten().tolist())  # on throughout the span
            shared, union = len(always & chosen), len(always | chosen)
            spans.append({"start": s, "end": t, "length": t - s, "shared": shared,
                          "extra": len(always - chosen), "jaccard": shared / union})  # fmt: skip
    spans.sort(key=lambda m: (-m["shared"], m["extra"], -m["length"], m["start"]))
    return spans[:top]
