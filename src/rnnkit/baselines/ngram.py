"""Character (token) n-gram language model with interpolated modified Kneser-Ney smoothing.

The Markov baseline the RNNs are compared with: the next token depends only on the previous
``order - 1`` tokens. Smoothing follows Chen & Goodman, "An Empirical Study of Smoothing Techniques for
Language Modeling" (TR-10-98, 1998, https://dash.harvard.edu/handle/1/25104739), section 3.5 (modified
Kneser-Ney, interpolated form, eqs. 17-20 there). For a context ``h`` of ``k - 1`` tokens and its
shortened context ``h'`` (``h`` without its first token):

.. math::

    p_k(w \\mid h) = \\frac{\\max(c_k(hw) - D_k(c_k(hw)), 0)}{\\sum_v c_k(hv)}
                   + \\gamma_k(h)\\, p_{k-1}(w \\mid h'), \\qquad
    \\gamma_k(h) = \\frac{D_{k,1} N_1(h\\bullet) + D_{k,2} N_2(h\\bullet) + D_{k,3+} N_{3+}(h\\bullet)}
                        {\\sum_v c_k(hv)}

    p_0(w) = 1 / V \\quad \\text{(uniform over the vocabulary: no probability is ever zero)}

- ``c_k`` is the raw count for the highest order and the *continuation count* for every lower order:
  ``c_k(x) = N_{1+}(\\bullet x)``, the number of distinct tokens seen just before ``x``. A token that
  follows many different contexts is a good guess after an unseen one; a token seen often but only
  after one context ("Francisco" after "San") is not.
- ``D(c)`` is ``D1`` for ``c = 1``, ``D2`` for ``c = 2`` and ``D3+`` for ``c >= 3``, estimated per
  order from the count-of-counts ``n_r`` (how many k-grams have count ``r``) of that order's counts:
  ``Y = n1 / (n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3``.
  Where a count-of-counts is zero or an estimate falls outside ``(0, r]`` (tiny corpora), the order uses
  KenLM's fallback discounts ``(0.5, 1.0, 1.5)`` (``lmplz --discount_fallback``).
- ``N_r(h\\bullet)`` counts the tokens ``w`` with ``c_k(hw) = r`` (``3+``: ``>= 3``); the discounted
  mass of a context is exactly what the lower order receives, so every distribution sums to one.
- A context never seen in training (or one whose counts are all zero) passes ``p_{k-1}`` through
  unchanged.

Notes where this departs from a textbook word model:

- There are no sentence markers: the text is one stream. Continuation counts treat the text as if it
  were preceded by a start marker, so the k-grams at position 0 count that marker as one left
  neighbour (KenLM's treatment of n-grams after ``<s>``); the marker is never predicted.
- The first ``order - 1`` tokens of a scored sequence are predicted from the context they have (a
  shorter one), i.e. by the lower-order distributions.

Representation (the "hashing trick"): every k-gram seen in training has a row in the order-k table,
sorted by its integer code ``row_of(prefix) * V + last_token``, where ``row_of(prefix)`` is the row of its
first ``k - 1`` tokens in the order-(k-1) table (the empty prefix has row 0). Codes stay below
``(number of training tokens) * V`` for any order, so they fit in int64, and looking up a k-gram is k
binary searches. All counting is ``np.unique`` over the codes of every position; scoring is vectorised
over positions. See ``docs/results.md`` for timings on tinyshakespeare.

Example (the caller maps characters to ids)::

    text = open("tinyshakespeare.txt").read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = [stoi[ch] for ch in text]
    n = int(0.9 * len(ids))
    lm = KneserNeyLM(order=6).fit(ids[:n], vocab_size=len(chars))
    lm.evaluate(ids[n:])  # {"loss": ~1.5 nats/char, "bits_per_token": ..., "perplexity": ..., "tokens": ...}
    new = lm.sample([stoi[c] for c in "ROMEO:"], 200, generator=torch.Generator().manual_seed(0))
    print("".join(chars[i] for i in new))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rnnkit.errors import InputError, check, check_int

__all__ = ["KneserNeyLM"]

# KenLM's `lmplz --discount_fallback` defaults: (D1, D2, D3+) for an order whose count-of-counts cannot
# give valid estimates.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)

_STATE_FORMAT = "rnnkit.baselines.KneserNeyLM"
_STATE_VERSION = 1


@dataclass
class _Order:
    """The order-k table: one row per k-gram seen in training, and one per (k-1)-gram context.

    ``codes`` (sorted) and ``counts`` are the model; the rest is derived from them.
    """

    codes: np.ndarray  # (G,) int64, sorted: row of the (k-1)-gram prefix * V + last token
    counts: np.ndarray  # (G,) int64: raw counts (highest order) or continuation counts (lower orders)
    discounts: tuple[float, float, float]  # (D1, D2, D3+)
    discounted: np.ndarray  # (G,) float64: max(count - D(count), 0)
    total: np.ndarray  # (C,) float64: sum of counts of each context's k-grams; C = rows of order k-1
    backoff: np.ndarray  # (C,) float64: D1 N1 + D2 N2 + D3+ N3+ of each context (gamma * total)


def modified_kn_discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """Chen & Goodman's (D1, D2, D3+) from the count-of-counts of ``counts`` (section 3.5, eq. 26).

    ``Y = n1 / (n1 + 2 n2)``, ``D_r = r - (r + 1) Y n_{r+1} / n_r`` for r = 1, 2, 3. Falls back to
    :data:`FALLBACK_DISCOUNTS` when a needed ``n_r`` is zero or an estimate is outside ``(0, r]``.
    """
    n1, n2, n3, n4 = (float(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))  # count-of-counts
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < d_r <= r for r, d_r in enumerate(d, start=1)):
        return FALLBACK_DISCOUNTS
    return (float(d[0]), float(d[1]), float(d[2]))


def _lookup(codes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of each query code in the sorted ``codes``, or -1 where it is absent."""
    rows = np.searchsorted(codes, queries)  # (Q,)
    rows = np.minimum(rows, len(codes) - 1) if len(codes) else np.zeros_like(rows)
    found = (codes[rows] == queries) if len(codes) else np.zeros(queries.shape, dtype=bool)
    return np.where(found, rows, -1)


class KneserNeyLM:
    """An order-n Markov model over integer token ids in ``[0, vocab_size)``, interpolated modified
    Kneser-Ney smoothing (see the module docstring for the equations).

    The API takes token ids, not strings: map characters (or words) to ids yourself, as for the RNNs.

    Arguments:
        order: n, the number of tokens in the longest n-gram (context = the previous n - 1 tokens).
        discount: ``None`` (default) for modified Kneser-Ney with three discounts (D1, D2, D3+) per order
            estimated from count-of-counts; a number in (0, 1] for plain interpolated Kneser-Ney with
            that one discount for every count and order.

    Attributes (after :meth:`fit`):
        vocab_size: V; every probability is over ids ``0 .. V-1``.
        discounts: ``[(D1, D2, D3+) for order 1 .. n]``.

    Shapes: ``context`` and ``ids`` are 1-D sequences of ints (list, tuple, NumPy array or tensor);
    :meth:`next_distribution` returns a float64 NumPy array of shape ``(V,)``.
    """

    def __init__(self, order: int = 6, discount: float | None = None) -> None:
        self.order = check_int("order", order)
        if discount is not None:
            ok = isinstance(discount, numbers.Real) and not isinstance(discount, bool) and 0 < discount <= 1
            if not ok:
                raise ValueError(f"discount should be None or a number in (0, 1], got {discount!r}")
            discount = float(discount)
        self.discount = discount
        self.vocab_size: int | None = None
        self._orders: list[_Order] = []  # index k - 1 holds order k

    # -- training --------------------------------------------------------------------------------------

    def fit(self, train_ids: Any, vocab_size: int | None = None) -> KneserNeyLM:
        """Count every k-gram (k = 1 .. n) of ``train_ids`` and estimate the discounts. Returns self.

        Arguments:
            train_ids: 1-D token ids, ``(N,)``.
            vocab_size: V; default ``max(train_ids) + 1``. Give it when some ids of the vocabulary never
                occur in training: they still get probability > 0 (through the uniform floor).
        """
        ids = self._as_ids(train_ids, "train_ids")
        check(len(ids) > 0, "train_ids must not be empty")
        if vocab_size is None:
            vocab_size = int(ids.max()) + 1
        vocab_size = check_int("vocab_size", vocab_size)
        check(
            int(ids.max()) < vocab_size, f"train_ids must be < vocab_size={vocab_size}, got {int(ids.max())}"
        )
        V, N, n = vocab_size, len(ids), self.order
        check(N * V < 2**62, f"len(train_ids) * vocab_size must be < 2**62 (int64 codes), got {N} * {V}")

        # Pass 1, k = 1 .. n: the code of the k-gram at every position, its table (np.unique), and each
        # position's row in that table, which is the prefix row of the (k+1)-gram at the same position.
        codes, raw_counts, first_pos, pos_rows = [], [], [], []
        prev_rows = np.zeros(N, dtype=np.int64)  # row of the empty prefix, for every position
        for k in range(1, n + 1):
            m = max(N - k + 1, 0)  # number of k-gram positions
            pos_codes = prev_rows[:m] * V + ids[k - 1 : k - 1 + m]  # (m,)
            uniq, first, rows, cnt = np.unique(
                pos_codes, return_index=True, return_inverse=True, return_counts=True
            )
            codes.append(uniq)
            raw_counts.append(cnt.astype(np.int64))
            first_pos.append(first)
            pos_rows.append(rows.reshape(-1).astype(np.int64))
            prev_rows = pos_rows[-1]

        # Pass 2: the counts each order uses. Highest order: raw counts. Lower order k: continuation
        # counts N1+(. x) = how many distinct (k+1)-grams end in x. The (k+1)-gram first seen at position
        # i ends in the k-gram at position i + 1; the start marker is one more left neighbour of the
        # k-gram at position 0.
        self.vocab_size = V
        self._orders = []
        for k in range(1, n + 1):
            if k == n:
                counts = raw_counts[k - 1]
            else:
                suffix_rows = pos_rows[k - 1][first_pos[k] + 1]  # one per distinct (k+1)-gram
                counts = np.bincount(suffix_rows, minlength=len(codes[k - 1])).astype(np.int64)
                if len(pos_rows[k - 1]):
                    counts[pos_rows[k - 1][0]] += 1
            n_contexts = 1 if k == 1 else len(codes[k - 2])
            self._orders.append(self._build_order(codes[k - 1], counts, n_contexts, discounts=None))
        return self

    def _build_order(
        self,
        codes: np.ndarray,
        counts: np.ndarray,
        n_contexts: int,
        discounts: tuple[float, float, float] | None,
    ) -> _Order:
        """Discounts (estimated unless given) and the per-context sums of one order's table."""
        if discounts is None and self.discount is not None:
            discounts = (self.discount,) * 3
        elif discounts is None:
            discounts = modified_kn_discounts(counts)
        d1, d2, d3 = discounts
        d_of_count = np.select([counts == 1, counts == 2, counts >= 3], [d1, d2, d3], 0.0)  # D(c), (G,)
        context_rows = codes // self.vocab_size  # (G,) row of each k-gram's context in order k-1
        return _Order(
            codes=codes,
            counts=counts,
            discounts=(float(d1), float(d2), float(d3)),
            discounted=np.maximum(counts - d_of_count, 0.0),
            total=np.bincount(context_rows, weights=counts, minlength=n_contexts).astype(np.float64),
            backoff=np.bincount(context_rows, weights=d_of_count, minlength=n_contexts),
        )

    @property
    def discounts(self) -> list[tuple[float, float, float]]:
        """``[(D1, D2, D3+) for order 1 .. n]``, as used (estimated, fallback or the fixed discount)."""
        self._check_fitted()
        return [t.discounts for t in self._orders]

    # -- probabilities ---------------------------------------------------------------------------------

    def _interpolate(self, context_rows: list[np.ndarray], tokens: np.ndarray) -> np.ndarray:
        """p(token | context) for a batch of queries, by the recursion p_0 = 1/V, p_k = ... p_{k-1}.

        ``context_rows[k - 1]`` holds each query's context row in order k - 1 (its last k - 1 tokens), or
        -1 where that context was never seen or the query has fewer than k - 1 tokens of context.
        ``tokens`` and the row arrays broadcast against each other.
        """
        V = self.vocab_size
        p = np.full(np.broadcast(tokens, *context_rows).shape, 1.0 / V)  # p_0: uniform
        for table, ctx in zip(self._orders, context_rows, strict=True):
            if len(table.codes) == 0:  # training text shorter than k: every context is unseen
                continue
            ctx_row = np.maximum(ctx, 0)  # -1 -> any valid row; masked below
            total = table.total[ctx_row]
            seen = (ctx >= 0) & (total > 0)
            gram = _lookup(table.codes, ctx * V + tokens)  # ctx = -1 gives codes < 0: never found
            discounted = np.where(gram >= 0, table.discounted[np.maximum(gram, 0)], 0.0)
            p_k = (discounted + table.backoff[ctx_row] * p) / np.where(seen, total, 1.0)
            p = np.where(seen, p_k, p)
        return p

    def _context_rows(self, context: np.ndarray) -> list[np.ndarray]:
        """Rows of the last k - 1 tokens of one context for k = 1 .. n (shape (1,) each; -1: unseen)."""
        V, rows = self.vocab_size, [np.zeros(1, dtype=np.int64)]  # order 1: the empty context, row 0
        for k in range(2, self.order + 1):
            if len(context) < k - 1:
                rows.append(np.full(1, -1, dtype=np.int64))
                continue
            row = np.zeros(1, dtype=np.int64)
            for j, token in enumerate(context[len(context) - (k - 1) :]):  # walk the suffix, one table each
                row = _lookup(self._orders[j].codes, row * V + token)  # row -1 stays -1
            rows.append(row)
        return rows

    def next_distribution(self, context: Any) -> np.ndarray:
        """p(. | context) over the whole vocabulary, shape ``(V,)``, float64, summing to 1.

        Only the last ``order - 1`` tokens of ``context`` are used; a shorter (even empty) context uses the
        lower orders.
        """
        self._check_fitted()
        context = self._last_tokens(self._as_ids(context, "context", vocab=True))
        return self._interpolate(self._context_rows(context), np.arange(self.vocab_size))

    def log_prob(self, context: Any, token: int) -> float:
        """log p(token | context) in nats (natural log)."""
        self._check_fitted()
        token = check_int("token", token, minimum=0)
        check(token < self.vocab_size, f"token must be < vocab_size={self.vocab_size}, got {token}")
        context = self._last_tokens(self._as_ids(context, "context", vocab=True))
        p = self._interpolate(self._context_rows(context), np.array([token], dtype=np.int64))
        return float(np.log(p[0]))

    def evaluate(self, ids: Any) -> dict[str, float]:
        """Average negative log-likelihood of every token of ``ids`` given the tokens before it.

        Token t is predicted from ``ids[max(0, t - n + 1) : t]`` (the first tokens have shorter contexts).
        Equals ``mean(-log_prob(ids[:t], ids[t]) for t in range(len(ids)))``, vectorised over positions.

        Returns:
            ``{"loss": nats per token, "bits_per_token": loss / ln 2, "perplexity": exp(loss),
            "tokens": len(ids)}``.
        """
        self._check_fitted()
        ids = self._as_ids(ids, "ids", vocab=True)
        check(len(ids) > 0, "ids must not be empty")
        M, V = len(ids), self.vocab_size

        # rows[k][i]: row of the k-gram starting at position i in the order-k table (-1: unseen); (M-k+1,)
        rows = [np.zeros(M, dtype=np.int64)]
        for k in range(1, self.order):
            prev = rows[-1][: max(M - k + 1, 0)]  # the (k-1)-gram prefix of each k-gram
            rows.append(_lookup(self._orders[k - 1].codes, prev * V + ids[k - 1 :]))  # -1 stays -1

        # Context of order k for the token at position t: the (k-1)-gram starting at t - k + 1.
        context_rows = []
        for k in range(1, self.order + 1):
            ctx = np.full(M, -1, dtype=np.int64)
            ctx[k - 1 :] = rows[k - 1][: max(M - k + 1, 0)]
            context_rows.append(ctx)
        nll = -np.log(self._interpolate(context_rows, ids))  # (M,)
        loss = float(nll.mean())
        return {
            "loss": loss,
            "bits_per_token": loss / math.log(2),
            "perplexity": math.exp(loss),
            "tokens": M,
        }

    # -- generation ------------------------------------------------------------------------------------

    def sample(
        self,
        prime: Any = (),
        n: int = 100,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Draw ``n`` tokens after ``prime``; returns only the new tokens (a list of ids).

        Each step draws from ``p(. | last n - 1 tokens) ** (1 / temperature)``, renormalised, with
        ``torch.multinomial`` (seed ``generator`` for reproducible samples). The context carried from step
        to step is the last n - 1 tokens; the prime is read once.
        """
        self._check_fitted()
        n = check_int("n", n, minimum=0)
        ok = isinstance(temperature, numbers.Real) and not isinstance(temperature, bool) and temperature > 0
        if not ok:
            raise ValueError(f"temperature should be a number > 0, got {temperature!r}")
        context = self._last_tokens(self._as_ids(prime, "prime", vocab=True)).tolist()
        out = []
        for _ in range(n):
            logits = np.log(self.next_distribution(context)) / temperature  # (V,)
            probs = torch.softmax(torch.from_numpy(logits), dim=0)  # (V,)
            token = int(torch.multinomial(probs, 1, generator=generator))
            out.append(token)
            context = self._last_tokens(context + [token])  # the state: the last n - 1 tokens
        return out

    # -- state -----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The fitted model as plain JSON-able data (ints, floats, lists, str; no pickle).

        ``{"format", "version", "order", "discount", "vocab_size", "tables": [{"codes", "counts",
        "discounts"} for order 1 .. n]}``; everything else is recomputed by :meth:`load_state_dict`.
        """
        self._check_fitted()
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "order": self.order,
            "discount": self.discount,
            "vocab_size": self.vocab_size,
            "tables": [
                {"codes": t.codes.tolist(), "counts": t.counts.tolist(), "discounts": list(t.discounts)}
                for t in self._orders
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (after a JSON round trip too). Order and discount setting
        must match this model's."""
        check(
            isinstance(state, dict) and state.get("format") == _STATE_FORMAT,
            f"not a KneserNeyLM state_dict (expected format {_STATE_FORMAT!r})",
        )
        check(
            state["version"] == _STATE_VERSION, f"Expected version {_STATE_VERSION}, got {state['version']}"
        )
        check(state["order"] == self.order, f"Expected order {self.order}, got {state['order']}")
        check(
            state["discount"] == self.discount, f"Expected discount {self.discount}, got {state['discount']}"
        )
        check(
            len(state["tables"]) == self.order,
            f"Expected {self.order} tables, got {len(state['tables'])}",
        )
        self.vocab_size = check_int("vocab_size", state["vocab_size"])
        orders = []
        for k, table in enumerate(state["tables"], start=1):
            codes = np.asarray(table["codes"], dtype=np.int64)
            counts = np.asarray(table["counts"], dtype=np.int64)
            check(codes.shape == counts.shape, f"order {k}: {len(codes)} codes but {len(counts)} counts")
            n_contexts = 1 if k == 1 else len(orders[-1].codes)
            check(
                bool(np.all(np.diff(codes) > 0))
                and (not len(codes) or codes[-1] // self.vocab_size < n_contexts),
                f"order {k}: codes must be increasing and refer to rows of order {k - 1}",
            )
            d1, d2, d3 = (float(d) for d in table["discounts"])
            orders.append(self._build_order(codes, counts, n_contexts, discounts=(d1, d2, d3)))
        self._orders = orders

    # -- helpers ---------------------------------------------------------------------------------------

    def _last_tokens(self, context: Any) -> Any:
        """The last ``order - 1`` tokens: all of the context an order-n model can use."""
        return context[len(context) - self.order + 1 :] if len(context) >= self.order - 1 else context

    def _check_fitted(self) -> None:
        if self.vocab_size is None:
            raise InputError("KneserNeyLM is not fitted: call fit() or load_state_dict() first")

    def _as_ids(self, values: Any, name: str, vocab: bool = False) -> np.ndarray:
        """A 1-D int64 array of non-negative ids (below vocab_size when ``vocab``)."""
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        if isinstance(values, (str, bytes)):
            raise TypeError(f"{name} should be a sequence of integer token ids, got {type(values).__name__}")
        array = np.asarray(values if isinstance(values, (np.ndarray, Sequence)) else list(values))
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        check(array.ndim == 1, f"{name} must be 1-D, got {array.ndim}-D with shape {tuple(array.shape)}")
        check(
            np.issubdtype(array.dtype, np.integer),
            f"{name} must hold integer token ids, got dtype {array.dtype}",
        )
        array = array.astype(np.int64, copy=False)
        check(int(array.min()) >= 0, f"{name} must be >= 0, got {int(array.min())}")
        if vocab:
            top = int(array.max())
            check(top < self.vocab_size, f"{name} must be < vocab_size={self.vocab_size}, got {top}")
        return array
