"""What the explorer computes: a run directory's model, asked questions a page (or a script) can send.

Every number comes from the library: hidden states, c and gates from
:meth:`rnnkit.layers.Recurrent.forward_with_states` (what ``rnnkit diagnose pca`` reads on a
classifier; the tests check it against :func:`rnnkit.diagnostics.core.trace`), projections from
:func:`~rnnkit.diagnostics.core.pca`, unit scores and the hypothesis search from
:mod:`rnnkit.diagnostics.units`, samples from :func:`rnnkit.generate.iter_tokens` and
:func:`~rnnkit.generate.filter_logits`, curves from :func:`rnnkit.training.plots.read_metrics`,
translations from :func:`rnnkit.apps.seq2seq.run.translate`. Nothing here knows about HTTP (see ``app.py``).

Shape legend: N tokens of a text, H hidden units, V vocabulary size, K layers.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cells.base import LSTMState
from ..errors import InputError

DIGITS = 4  # activations and probabilities are sent rounded to this many decimals (what a page shows)
DEFAULT_TEXT = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    "Arise, fair sun, and kill the envious moon,\nWho is already sick and pale with grief,\n"
    "That thou her maid art far more fair than she:\n"
)


@dataclass
class Limits:
    """What one request may ask for (long texts are refused with a message naming the limit)."""

    max_chars: int = 5000  # characters of a text to trace, or of a prime
    max_generate: int = 2000  # tokens of one sample
    max_top: int = 20  # next-token probabilities per step


def run_kind(run_dir: Path) -> str:
    """``"lm"``, ``"classifier"``, ``"seq2seq"`` or ``"other"`` (curves only): the explorer's names for
    the CLI's run kinds (:func:`rnnkit.commands.runs.run_kind`; a tagger's run is "other", not an LM)."""
    from ..commands.runs import run_kind as kind_of

    return {"language-model": "lm", "classifier": "classifier", "seq2seq": "seq2seq"}.get(
        kind_of(run_dir) or "", "other"
    )


def rounded(t: torch.Tensor) -> np.ndarray:
    """A float32, C-contiguous numpy copy rounded to :data:`DIGITS` decimals (what the JSON carries)."""
    return np.ascontiguousarray(np.round(t.detach().float().cpu().numpy(), DIGITS))


@dataclass
class Traced:
    """One text run through the model: token strings, and per layer its fields, each (N, H)."""

    tokens: list[str]
    ids: torch.Tensor  # (N,)
    layers: list[dict[str, torch.Tensor]] = field(default_factory=list)
    logits: torch.Tensor | None = None  # (N, V): the scores of the token after each one


class Explorer:
    """A run directory opened for questions. Thread-safe: the model is asked one question at a time."""

    def __init__(self, run_dir: str | Path, texts: dict[str, str] | None = None, limits: Limits | None = None,
                 which: str = "best") -> None:  # fmt: skip
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise InputError(f"{self.run_dir}: no such run directory")
        self.kind = run_kind(self.run_dir)
        self.limits = limits or Limits()
        self.texts = dict(texts or {})
        self.lock = threading.Lock()
        self._cache: OrderedDict[str, Traced] = OrderedDict()
        self.lm: Any = None
        self.seq2seq: Any = None
        if self.kind == "lm":
            from ..apps.lm.run import load_language_model

            self.lm = load_language_model(self.run_dir, which)
            self.lm.model.eval()
        elif self.kind == "seq2seq":
            from ..apps.seq2seq.run import load_seq2seq

            self.seq2seq = load_seq2seq(self.run_dir, which)
            self.seq2seq.model.eval()

    # -- what the run is ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        path = self.run_dir / "config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        out: dict[str, Any] = {"run": self.run_dir.name, "kind": self.kind, "model": config.get("model"),
                               "limits": vars(self.limits), "texts": sorted(self.texts)}  # fmt: skip
        if self.lm is not None:
            rnn = self.lm.model.rnn
            out.update(layers=rnn.num_layers, hidden=self.lm.model.config.hidden, fields=self.fields(),
                       token=self.lm.tokenizer.kind, default_text=DEFAULT_TEXT)  # fmt: skip
        return out

    def fields(self) -> list[str]:
        """What :meth:`trace` can return per layer: ``h``, ``c`` for an LSTM, and the gates the cell has."""
        cell = self.lm.model.rnn.cells[0]
        probe = cell.init_state(1)
        names = ["h"] + (["c"] if isinstance(probe, LSTMState) else [])
        if hasattr(cell, "gates"):
            with torch.no_grad():
                names += list(cell.gates(torch.zeros(1, cell.input_size), probe))
        return names

    def text(self, name: str) -> dict[str, Any]:
        if name not in self.texts:
            raise InputError(f"no text named {name!r}; the texts given with --text are {sorted(self.texts)}")
        return self._cut(self.texts[name], f"the file {name}")

    def _cut(self, text: str, what: str) -> dict[str, Any]:
        limit = self.limits.max_chars
        if len(text) <= limit:
            return {"text": text, "cut": None}
        return {"text": text[:limit], "cut": f"{what} has {len(text):,} characters: only the first {limit:,} "
                "are shown (the limit; rnnkit serve --max-chars)"}  # fmt: skip

    # -- language models: states over a text ---------------------------------------------------------

    def _need_lm(self) -> Any:
        if self.lm is None:
            raise InputError(f"{self.run_dir.name} is a {self.kind} run: this needs a language model's run")
        return self.lm

    def _check_text(self, text: str, what: str = "text") -> None:
        if len(text) > self.limits.max_chars:
            limit = self.limits.max_chars
            raise InputError(f"the {what} has {len(text):,} characters; the limit is {limit:,} "
                             "(rnnkit serve --max-chars)")  # fmt: skip
        if not text:
            raise InputError(f"the {what} is empty")

    def traced(self, text: str) -> Traced:
        """Every layer's h (and c, gates) after each token of ``text``, and the next-token scores; the
        last few texts are kept, so asking several questions about one text traces it once."""
        lm = self._need_lm()
        self._check_text(text)
        with self.lock:
            if text in self._cache:
                self._cache.move_to_end(text)
                return self._cache[text]
            from ..training.task import evaluating

            ids = lm.tokenizer.encode(text, source="the text")  # (N,)
            if ids.numel() == 0:
                raise InputError("the text has no tokens")
            model = lm.model
            with evaluating(model), torch.no_grad():
                # the fused kernels' own buffers (as `diagnose pca` on a classifier reads them): h, c and
                # gates of every step, 2-3x faster than core.trace's loop over cell.step (same numbers)
                t = model.rnn.forward_with_states(model.embedding(ids[:, None]))  # x (N, 1, H)
                logits = model.readout(model.dropout(t.output[:, 0]))  # (N, V)
            out = Traced([lm.tokenizer.decode([i]) for i in ids.tolist()], ids, logits=logits)
            # each (N, K, 1, H)
            fields = t.states._asdict() if isinstance(t.states, LSTMState) else {"h": t.states}
            for k in range(model.rnn.num_layers):
                out.layers.append({name: v[:, k, 0] for name, v in {**fields, **t.gates}.items()})  # (N, H)
            self._cache[text] = out
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
            return out

    def acts(self, text: str, layer: int, field: str) -> tuple[Traced, torch.Tensor]:
        t = self.traced(text)
        if not 0 <= layer < len(t.layers):
            raise InputError(f"layer must be in [0, {len(t.layers)}), got {layer}")
        if field not in t.layers[layer]:
            raise InputError(f"field must be one of {list(t.layers[layer])}, got {field!r}")
        return t, t.layers[layer][field]

    def trace(self, text: str, layers: list[int] | None = None, fields: list[str] | None = None,
              top: int = 0) -> dict[str, Any]:  # fmt: skip
        """Tokens, and for each asked layer each asked field as an (N, H) array; with ``top`` > 0 also
        the ``top`` most likely next tokens after each token."""
        t = self.traced(text)
        layers = list(range(len(t.layers))) if layers is None else layers
        out_layers = []
        for k in layers:
            wanted = list(t.layers[0]) if fields is None else fields
            out_layers.append({"layer": k, **{f: rounded(self.acts(text, k, f)[1]) for f in wanted}})
        out: dict[str, Any] = {"tokens": t.tokens, "ids": t.ids.tolist(), "layers": out_layers}
        if top:
            out["predictions"] = self._top(torch.softmax(t.logits, -1), self._check_top(top))
        return out

    def _check_top(self, top: int) -> int:
        if not 0 <= top <= self.limits.max_top:
            raise InputError(f"top must be in [0, {self.limits.max_top}], got {top}")
        return top

    def _top(self, probs: torch.Tensor, k: int) -> list[list[list]]:
        """Per row of probs (M, V): the k most likely tokens as [token, p] pairs."""
        values, indices = torch.topk(probs, min(k, probs.shape[-1]), dim=-1)  # (M, k)
        decode = self.lm.tokenizer.decode
        return [[[decode([i]), round(float(p), DIGITS)] for p, i in zip(pv, iv, strict=True)]
                for pv, iv in zip(values.tolist(), indices.tolist(), strict=True)]  # fmt: skip

    # -- language models: units, hypothesis search, state space --------------------------------------

    def _saturation(self, values: torch.Tensor, field: str) -> torch.Tensor | None:
        from ..diagnostics import core

        if field in core.GATE_RANGES:
            return core.saturated(values, field)
        if field == "h" and self.lm.model.config.cell in ("lstm", "gru", "rnn"):
            return core.saturated(values, "cell")  # these cells' h lies in (-1, 1), as a tanh gate's
        return None  # c and the minimal cells' h have no fixed range

    def units(self, text: str, layer: int = 0, field: str = "h", pattern: str | None = None,
              sort: str = "variance", count: int = 20) -> dict[str, Any]:  # fmt: skip
        """Each unit's variance, saturation and (with a regex ``pattern``) correlation with the tokens
        the pattern matches, and the ``count`` units that score highest by ``sort``."""
        from ..diagnostics import units as du

        if sort not in du.SCORES:
            raise InputError(f"sort must be one of {list(du.SCORES)}, got {sort!r}")
        t, acts = self.acts(text, layer, field)
        target = du.pattern_from_regex(t.tokens, pattern) if pattern else None
        scores = du.unit_scores(acts, self._saturation(acts, field), target)
        if scores[sort] is None:
            why = (
                "a pattern (regex)" if sort == "correlation" else f"a field with a fixed range, not {field!r}"
            )
            raise InputError(f"sorting by {sort} needs {why}")
        key = scores[sort].abs() if sort == "correlation" else scores[sort]
        order = torch.argsort(key, descending=True)[:count]
        out = {k: None if v is None else rounded(v) for k, v in scores.items()}
        return {**out, "top": order.tolist(), "sort": sort,
                "pattern": None if target is None else target.int().tolist()}  # fmt: skip

    def search(self, text: str, start: int, end: int, layer: int = 0, field: str = "h",
               threshold: float = 0.3, left: int = 1, right: int = 0, agree: float = 1.0,
               min_length: int = 2, count: int = 20) -> dict[str, Any]:  # fmt: skip
        """The hypothesis search: units on over tokens [start, end) and off around them, then the
        spans where those units are on together (see :mod:`rnnkit.diagnostics.units`)."""
        from ..diagnostics import units as du

        t, acts = self.acts(text, layer, field)
        chosen = du.select_units(acts, start, end, threshold, left=left, right=right)
        matches = du.match_spans(acts, chosen, threshold, min_length=min_length, agree=agree, top=count)
        for m in matches:
            m["text"] = "".join(t.tokens[m["start"] : m["end"]])
            m["selected"] = m["start"] <= start and end <= m["end"]
        return {"units": chosen.tolist(), "selection": "".join(t.tokens[start:end]), "matches": matches}

    def pca(self, text: str, layer: int = 0, field: str = "h") -> dict[str, Any]:
        """The first two principal components of one layer's states over the text: (N, 2) points."""
        from ..diagnostics import core

        t, acts = self.acts(text, layer, field)
        if acts.shape[0] < 2:
            raise InputError("a projection needs at least 2 tokens")
        proj, explained = core.pca(acts[:, None])  # (N, 1, 2), (2,)
        return {"tokens": t.tokens, "points": rounded(proj[:, 0]), "explained": explained.tolist()}

    # -- language models: sampling --------------------------------------------------------------------

    def generate(self, prime: str, length: int = 200, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, greedy: bool = False,
                 top: int = 5) -> Iterator[dict[str, Any]]:  # fmt: skip
        """Sample ``length`` tokens after ``prime``, yielding ``{"token": str}`` as each is drawn, then
        one ``{"done": True, ...}`` with the text and, per new token, the model's ``top`` most likely
        tokens at that step (``top``), the drawn token's probability under the model (``p``) and under
        the sampling distribution after temperature / top-k / top-p (``p_sampled``).

        The probabilities come from one forward pass over prime + sample, which gives the scores the
        sampling loop drew from (the model carries its state, so one pass equals the steps)."""
        from ..generate import filter_logits, iter_tokens

        lm = self._need_lm()
        self._check_text(prime, "prime")
        if not 0 <= length <= self.limits.max_generate:
            raise InputError(f"length must be in [0, {self.limits.max_generate:,}] tokens (the limit; rnnkit "
                             f"serve --max-generate), got {length:,}")  # fmt: skip
        top = self._check_top(top)
        knobs = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "greedy": greedy}
        prime_ids = lm.tokenizer.encode(prime, source="the prime")  # (P,)
        generator = torch.Generator().manual_seed(seed)
        tokens = iter_tokens(lm.model, prime_ids, length, generator=generator, **knobs)  # checks the knobs
        return self._sample(lm, prime, prime_ids, tokens, knobs, top, filter_logits)

    def _sample(self, lm: Any, prime: str, prime_ids: torch.Tensor, tokens: Iterator[torch.Tensor],
                knobs: dict[str, Any], top: int, filter_logits: Any) -> Iterator[dict[str, Any]]:  # fmt: skip
        drawn: list[int] = []
        with self.lock:
            for token in tokens:
                drawn.append(int(token))
                yield {"token": lm.tokenizer.decode(drawn[-1:])}
            if not drawn:
                yield {"done": True, "prime": prime, "text": "", "steps": []}
                return
            ids = torch.cat([prime_ids, torch.tensor(drawn, dtype=torch.long)])  # (P + n,)
            with torch.no_grad():
                logits = lm.model(ids[:-1, None])[0][:, 0][len(prime_ids) - 1 :]  # (n, V): scores drawn from
        new = torch.tensor(drawn, dtype=torch.long)  # (n,)
        probs = torch.softmax(logits, -1)  # (n, V)
        if knobs["greedy"]:
            sampled = torch.ones(len(drawn))
        else:
            filtered = filter_logits(logits, **{k: v for k, v in knobs.items() if k != "greedy"})
            sampled = torch.softmax(filtered, -1).gather(1, new[:, None])[:, 0]
        steps = [{"token": lm.tokenizer.decode([i]), "p": round(float(p), DIGITS),
                  "p_sampled": round(float(q), DIGITS), "top": tops}
                 for i, p, q, tops in zip(drawn, probs.gather(1, new[:, None])[:, 0], sampled,
                                          self._top(probs, top) if top else [[]] * len(drawn),
                                          strict=True)]  # fmt: skip
        yield {"done": True, "prime": prime, "text": lm.tokenizer.decode(drawn), "steps": steps}

    # -- every run: curves; seq2seq runs: attention ----------------------------------------------------

    def metrics(self, points: int = 2000) -> dict[str, Any]:
        """The run's curves from ``metrics.jsonl`` (re-read on every call, so a run still training shows
        its latest steps): training loss, gradient norm and learning rate, and the validation loss, each
        thinned to at most ``points`` points. ``bits`` says whether loss / ln 2 is bits per token."""
        from ..training.plots import read_metrics

        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return {"train": {}, "valid": {}, "bits": False, "mtime": None}
        train, valid = read_metrics(self.run_dir)

        def columns(rows: list[dict], names: tuple[str, ...]) -> dict[str, list]:
            stride = max(1, math.ceil(len(rows) / points))
            kept = rows[::stride] + (rows[-1:] if rows and (len(rows) - 1) % stride else [])
            return {n: [_finite(r.get(n)) for r in kept] for n in names}

        return {"train": columns(train, ("step", "loss", "grad_norm", "lr")),
                "valid": columns(valid, ("step", "valid_loss")), "bits": self.kind == "lm",
                "mtime": path.stat().st_mtime}  # fmt: skip

    def translate(self, text: str, beam: int = 1) -> dict[str, Any]:
        """One input decoded by a seq2seq run, with its attention matrix (len(output), len(source))."""
        from ..apps.seq2seq.run import translate

        if self.seq2seq is None:
            raise InputError(f"{self.run_dir.name} is a {self.kind} run: translation needs a seq2seq run")
        self._check_text(text)
        with self.lock:
            result = translate(self.seq2seq, text, beam=beam)
        weights = None if result.weights is None else rounded(result.weights)
        return {"text": text, "translation": result.translation, "source": result.source,
                "output": result.output, "score": result.score, "weights": weights}  # fmt: skip


def _finite(v: Any) -> Any:
    """JSON has no NaN or infinity: such numbers (a skipped step's loss) become null."""
    return None if isinstance(v, float) and not math.isfinite(v) else v
