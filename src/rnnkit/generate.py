"""Sampling from a language model: temperature, top-k, nucleus (top-p) and greedy decoding.

Generation carries the recurrent state forward: the prime is read once, then every new token is one
``(1, 1)`` step from the state the previous step left. The prefix is never re-read, so producing n
tokens costs n steps, not n^2 / 2.

    iter_tokens(model, prime_ids, n)         the one sampling loop: yields each token as it is drawn
    sample_tokens(model, prime_ids, n)       all of them as one (n,) tensor
    iter_text(model, tok, prime, n, stop=)   decoded pieces as they come (for streaming), optional stop
    sample_text(model, tok, prime, n)        prime + all of them as one string

Sequence to sequence (a model with ``encode``, ``step`` and ``select``, as :class:`~rnnkit.models.Seq2Seq`):

    greedy_decode(model, src, lengths)       the most likely token at every step
    beam_search(model, src, lengths, beam=)  the best of ``beam`` hypotheses kept at every step

Shape legend: P prime length, n tokens to generate, V vocabulary size, S source length, B batch, K beam.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError, check, check_int

__all__ = [
    "LENGTH_PENALTIES",
    "Decoded",
    "beam_search",
    "filter_logits",
    "greedy_decode",
    "iter_text",
    "iter_tokens",
    "length_penalty",
    "sample_next",
    "sample_text",
    "sample_tokens",
]


def _check_options(temperature: object, top_k: object, top_p: object, greedy: object) -> None:
    """Raise a clear error for a bad sampling option (the same checks for every entry point)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(
            f"temperature must be a number > 0, got {temperature!r} (use greedy=True for argmax decoding)"
        )
    if top_k is not None:
        check_int("top_k", top_k)  # TypeError for a non-int, ValueError for < 1
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
    if not isinstance(greedy, bool):
        raise TypeError(f"greedy should be of type bool, got: {type(greedy).__name__}")


def filter_logits(
    logits: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> Tensor:
    """Scale by temperature, then keep only the top-k and the nucleus; the rest become ``-inf``.

    Arguments:
        logits: (..., V) unnormalised scores.
        temperature: divides the logits; < 1 sharpens the distribution, > 1 flattens it.
        top_k: keep the k highest logits (all of them when k >= V).
        top_p: keep the smallest set of highest-probability tokens whose total probability is >= p
            (Holtzman et al. 2019, https://arxiv.org/abs/1904.09751, section 3.1); always at least
            one token. Applied after temperature and top-k.

    Returns:
        (..., V) logits; ``softmax`` of them is the distribution :func:`sample_next` draws from.
    """
    _check_options(temperature, top_k, top_p, False)
    logits = logits / temperature  # (..., V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
        probs = torch.softmax(sorted_logits, dim=-1)  # (..., V)
        before = torch.cumsum(probs, dim=-1) - probs  # (..., V) mass of the tokens ranked above
        drop_sorted = before >= top_p  # the set is already complete before this token; never the first
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # (..., V) back in vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> Tensor:
    """Draw one token id from each row of ``logits`` (..., V) -> (...) int64.

    ``greedy=True`` takes the argmax of the raw logits (temperature, top-k and top-p cannot change
    it); otherwise the draw is from ``softmax(filter_logits(logits, ...))`` with ``generator``.
    """
    _check_options(temperature, top_k, top_p, greedy)
    if greedy:
        return logits.argmax(dim=-1)  # (...)
    probs = torch.softmax(filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p), -1)
    flat = probs.reshape(-1, probs.shape[-1])  # (N, V)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])  # (...)


def iter_tokens(
    model: nn.Module,
    prime_ids: Tensor,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> Generator[Tensor, None, None]:
    """Continue ``prime_ids`` with ``n`` tokens sampled from ``model``, yielding each as it is drawn.

    The prime is read in one forward pass (batch 1, time-first); its last logits give the first new
    token, and each new token is then fed back as a ``(1, 1)`` input with the carried state. A token is
    yielded *before* the step that scores its successor, so a consumer can print it at once, and
    stopping early (``break``, ``close()``) costs no further steps: token k costs one step, whatever k.

    The arguments are checked here, before the first ``next()``. Until the iterator is exhausted or
    closed the model stays in eval mode (no dropout); its mode is restored after. Gradients are off
    only inside each model call, so the caller's autograd mode is never changed while it is suspended.

    Arguments:
        model: a :class:`~rnnkit.models.LanguageModel`, or any module with
            ``forward(tokens (T, B) int64, state) -> (logits (T, B, V), state)``.
        prime_ids: (P,) int64, P >= 1. There is no start token, so at least one prime token is
            required to condition the first prediction.
        n: tokens to generate (0 yields nothing).
        temperature, top_k, top_p, greedy: see :func:`filter_logits` and :func:`sample_next`.
        generator: a ``torch.Generator`` on the model's device, for reproducible samples.

    Yields:
        ``()`` int64 tensors on the model's device, the new tokens only (not the prime).
    """
    _check_options(temperature, top_k, top_p, greedy)
    n = check_int("n", n, minimum=0)
    check(isinstance(prime_ids, Tensor), f"prime_ids must be a Tensor, got {type(prime_ids).__name__}")
    check(
        prime_ids.dim() == 1 and prime_ids.dtype == torch.long,
        f"prime_ids must be (P,) int64, got shape {tuple(prime_ids.shape)} and dtype {prime_ids.dtype}",
    )
    check(
        prime_ids.numel() > 0,
        "prime_ids is empty: sampling needs at least one prime token to condition on (there is no start "
        "token); pass e.g. the encoding of a newline",
    )
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab_size is not None:
        lo, hi = int(prime_ids.min()), int(prime_ids.max())
        check(
            lo >= 0 and hi < vocab_size,
            f"prime_ids must be in [0, {vocab_size}) for a vocabulary of size {vocab_size}, "
            f"got values in [{lo}, {hi}]",
        )
    knobs: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "greedy": greedy}
    return _steps(model, prime_ids, n, generator, knobs)  # checked above: a generator would defer them


def _steps(
    model: nn.Module, prime_ids: Tensor, n: int, generator: torch.Generator | None, knobs: dict[str, Any]
) -> Generator[Tensor, None, None]:
    """The sampling loop of :func:`iter_tokens` (its arguments already checked)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits, state = model(prime_ids.to(device).view(-1, 1))  # (P, 1, V): read the prime once
        last = logits[-1, 0]  # (V,) scores for the token after the prime
        for i in range(n):
            token = sample_next(last, generator=generator, **knobs)  # ()
            yield token
            if i + 1 < n:  # the last token needs no successor scores
                with torch.no_grad():
                    logits, state = model(token.view(1, 1), state)  # (1, 1, V): one step, state carried
                last = logits[0, 0]  # (V,)
    finally:
        model.train(was_training)


def sample_tokens(model: nn.Module, prime_ids: Tensor, n: int, **kw: Any) -> Tensor:
    """All ``n`` tokens of :func:`iter_tokens` at once (same arguments, same draws for the same
    generator): (n,) int64, the new tokens only (not the prime), on the model's device."""
    tokens = list(iter_tokens(model, prime_ids, n, **kw))
    if not tokens:
        return torch.empty(0, dtype=torch.long, device=next(model.parameters()).device)  # (0,)
    return torch.stack(tokens)  # (n,)


def iter_text(
    model: nn.Module, tokenizer: Any, prime: str, n: int, *, stop: str | None = None, **kw: Any
) -> Generator[str, None, None]:
    """The text of up to ``n`` tokens sampled after ``prime``, one decoded token at a time.

    Yields one piece per token: a character for a character tokenizer, a word (with its leading
    space) or punctuation mark for a word tokenizer; both decode token by token, so the pieces joined
    are the decoding of all the tokens. The prime itself is not yielded.

    ``tokenizer`` encodes the prime: a character outside a strict vocabulary raises its own
    :class:`~rnnkit.errors.InputError` naming the characters; a vocabulary with ``<unk>`` (every word
    tokenizer) maps unknown characters or words to it.

    ``stop``: end as soon as the generated text (not the prime) contains this string; the last piece
    is cut just after it, so the text ends with ``stop``. Spotting it keeps only the last
    ``len(stop) - 1`` characters, so the work per token stays constant.

    Keyword arguments go to :func:`iter_tokens`. Everything is checked before the first piece.
    """
    if not isinstance(prime, str):
        raise InputError(f"prime must be a str, got {type(prime).__name__}")
    if stop is not None and (not isinstance(stop, str) or not stop):
        raise InputError(f"stop must be a non-empty string, got {stop!r}")
    ids = tokenizer.encode(prime, source="the prime")  # (P,)
    tokens = iter_tokens(model, ids, n, **kw)
    return _pieces(tokens, tokenizer, stop)  # checked above: a generator would defer them


def _pieces(
    tokens: Generator[Tensor, None, None], tokenizer: Any, stop: str | None
) -> Generator[str, None, None]:
    """Decode ``tokens`` one by one, cutting at the end of the first ``stop`` (see :func:`iter_text`)."""
    tail = ""  # the last len(stop) - 1 generated characters: a stop string may span pieces
    try:
        for token in tokens:
            piece = tokenizer.decode([int(token)])
            if stop is not None:
                seen = tail + piece
                at = seen.find(stop)
                if at >= 0:
                    yield piece[: at + len(stop) - len(tail)]  # through the end of the stop string
                    return
                tail = seen[-(len(stop) - 1) :] if len(stop) > 1 else ""
            yield piece
    finally:
        tokens.close()  # restore the model's mode now, not when the sampling loop is collected


def sample_text(model: nn.Module, tokenizer: Any, prime: str, n: int, **kw: Any) -> str:
    """``prime`` followed by the text of :func:`iter_text` (same arguments, same draws for the same
    generator), as one string."""
    return prime + "".join(iter_text(model, tokenizer, prime, n, **kw))


# -- sequence to sequence: greedy and beam search --------------------------------------------------------

LENGTH_PENALTIES = ("none", "length", "gnmt")


@dataclass
class Decoded:
    """Decoded outputs of a batch of B sources.

    Attributes:
        tokens: per source, the output ids without ``<s>`` and ``</s>``.
        scores: (B,) the sum of the log-probabilities of the output tokens, ``</s>`` included if produced.
        normalized: (B,) ``scores`` divided by the length penalty (what beam search ranks by; equal to
            ``scores`` for greedy decoding).
        finished: per source, whether ``</s>`` was produced within ``max_len``.
        weights: per source, the attention weights (n_b, S_b) of each output step (``</s>`` included,
            the source trimmed to its length); None for a model without attention.
    """

    tokens: list[list[int]]
    scores: Tensor
    normalized: Tensor
    finished: list[bool]
    weights: list[Tensor] | None


def length_penalty(kind: str, length: Tensor, alpha: float) -> Tensor:
    """The divisor of a hypothesis' log-probability, so that long outputs are not ruled out for being long.

    ``"gnmt"``: ((5 + |Y|) / 6)^alpha (Wu et al. 2016, https://arxiv.org/abs/1609.08144, section 7, eq. 14);
    ``"length"``: |Y|^alpha; ``"none"``: 1. ``alpha = 0`` is no normalisation, 1 the mean log-probability
    (for ``"length"``).
    """
    length = length.to(torch.float64)
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if kind == "length":
        return length.clamp(min=1.0) ** alpha
    return torch.ones_like(length)


def _check_decoding(src: Tensor, lengths: Any, max_len: object) -> Tensor:
    check(
        isinstance(src, Tensor) and src.dim() == 2 and src.dtype == torch.long,
        "src must be (S, B) int64 token ids, got "
        + (f"shape {tuple(src.shape)}, {src.dtype}" if isinstance(src, Tensor) else type(src).__name__),
    )
    check_int("max_len", max_len)
    lengths = torch.as_tensor(lengths)
    check(
        lengths.shape == src.shape[1:],
        f"lengths must be ({src.shape[1]},), one per source column, got {tuple(lengths.shape)}",
    )
    return lengths


def _weights(state: Any) -> Tensor | None:
    """The step's attention weights (B, S) from a decoder state, or None for a model without attention."""
    weights = getattr(state, "weights", None)
    return weights if isinstance(weights, Tensor) and weights.dim() == 2 and weights.shape[1] > 0 else None


@torch.no_grad()
def greedy_decode(
    model: nn.Module, src: Tensor, lengths: Tensor, *, bos: int = 1, eos: int = 2, max_len: int = 100
) -> Decoded:
    """Feed back the most likely token at every step, until ``</s>`` or ``max_len`` tokens.

    Arguments:
        model: ``encode(src, lengths) -> (memory, state)``, ``step(prev (B,), state, memory) -> (logits
            (B, V), state)``; the step's attention weights, if any, in ``state.weights`` (B, S).
        src: (S, B) int64 source ids, padded. lengths: (B,) true lengths.
        bos, eos: the start and end ids. max_len: the most output tokens per source, ``</s>`` included.
    """
    lengths = _check_decoding(src, lengths, max_len)
    was_training = model.training
    model.eval()
    try:
        memory, state = model.encode(src, lengths)
        B = src.shape[1]
        prev = torch.full((B,), bos, dtype=torch.long, device=src.device)  # (B,)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)  # (B,)
        score = torch.zeros(B, dtype=torch.float64, device=src.device)  # (B,)
        steps, weights = [], []
        for _ in range(max_len):
            logits, state = model.step(prev, state, memory)  # (B, V)
            logp = torch.log_softmax(logits.double(), -1)  # (B, V)
            token = logp.argmax(-1)  # (B,)
            score += torch.where(done, 0.0, logp.gather(1, token[:, None]).squeeze(1))
            token = torch.where(done, eos, token)  # a finished sequence stays finished
            steps.append(token)
            weights.append(_weights(state))
            done |= token == eos
            if bool(done.all()):
                break
            prev = token
    finally:
        model.train(was_training)
    out = torch.stack(steps, 1).tolist()  # (B, n)
    tokens, finished, kept = [], [], []
    for b in range(B):
        n = out[b].index(eos) + 1 if eos in out[b] else len(out[b])  # steps that belong to it
        tokens.append(out[b][: n - 1] if eos in out[b] else out[b])
        finished.append(eos in out[b])
        kept.append(n)
    attn = None
    if weights[0] is not None:
        w = torch.stack(weights, 1)  # (B, n, S)
        attn = [w[b, : kept[b], : int(lengths[b])].cpu() for b in range(B)]
    return Decoded(tokens, score.cpu(), score.cpu(), finished, attn)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    src: Tensor,
    lengths: Tensor,
    *,
    beam: int = 4,
    max_len: int = 100,
    penalty: str = "gnmt",
    alpha: float = 0.6,
    bos: int = 1,
    eos: int = 2,
    pad: int = 0,
) -> Decoded:
    """Keep the ``beam`` best hypotheses of every source at every step; return the best finished one.

    Every step extends each live hypothesis by every token; a finished one (it produced ``</s>``) has one
    continuation, itself, with its score unchanged. Of these candidates the ``beam`` best by normalised
    score, ``log p(Y) / length_penalty(|Y|)``, are kept, so finished hypotheses compete with live ones
    and a live one is dropped only for ``beam`` better ones. The search ends when all kept hypotheses are
    finished, or after ``max_len`` steps (a hypothesis still live then competes with its length so far).
    With ``beam=1`` this is greedy decoding, whatever the penalty: one hypothesis, extended by its most
    likely token, and finished by ``</s>``.

    Arguments:
        model, src, lengths, bos, eos, max_len: as :func:`greedy_decode`; the model also needs
            ``select(state, index) -> state`` (the batch rows ``index``), and ``memory.select(index)``.
        beam: K, hypotheses kept per source.
        penalty, alpha: the length normalisation, see :func:`length_penalty`.
        pad: the token a finished hypothesis is extended with (never part of the output).
    """
    lengths = _check_decoding(src, lengths, max_len)
    beam = check_int("beam", beam)
    if penalty not in LENGTH_PENALTIES:
        raise InputError(f"penalty must be one of {LENGTH_PENALTIES}, got {penalty!r}")
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not math.isfinite(alpha)
        or alpha < 0
    ):
        raise InputError(f"alpha must be a finite number >= 0, got {alpha!r}")
    was_training = model.training
    model.eval()
    try:
        return _beam(model, src, lengths, beam, max_len, penalty, float(alpha), bos, eos, pad)
    finally:
        model.train(was_training)


def _beam(
    model: nn.Module, src: Tensor, lengths: Tensor, K: int, max_len: int, penalty: str, alpha: float,
    bos: int, eos: int, pad: int,
) -> Decoded:  # fmt: skip
    """The search of :func:`beam_search` (its arguments checked)."""
    device = src.device
    memory, state = model.encode(src, lengths)
    B = src.shape[1]
    rows = torch.arange(B, device=device).repeat_interleave(K)  # (B*K,) each source K times
    memory, state = memory.select(rows), model.select(state, rows)
    score = torch.zeros(B, K, dtype=torch.float64, device=device)  # (B, K) log p of each hypothesis
    score[:, 1:] = -math.inf  # K copies of one start: only the first may expand, or all K would be equal
    finished = torch.zeros(B, K, dtype=torch.bool, device=device)  # (B, K)
    length = torch.zeros(B, K, dtype=torch.long, device=device)  # (B, K) tokens so far, </s> included
    prev = torch.full((B * K,), bos, dtype=torch.long, device=device)  # (B*K,)
    tokens, parents, weights = [], [], []
    for t in range(max_len):
        logits, state = model.step(prev, state, memory)  # (B*K, V)
        logp = torch.log_softmax(logits.double(), -1).view(B, K, -1)  # (B, K, V)
        V = logp.shape[-1]
        grown = score[:, :, None] + logp  # (B, K, V)
        kept = torch.full_like(grown, -math.inf)
        kept[:, :, pad] = score  # a finished hypothesis continues as itself
        candidate = torch.where(finished[:, :, None], kept, grown)  # (B, K, V)
        new_length = torch.where(finished, length, t + 1)  # (B, K) the same for every token
        key = candidate / length_penalty(penalty, new_length, alpha)[:, :, None]  # (B, K, V)
        _, flat = key.view(B, K * V).topk(K, dim=1)  # (B, K) the best K of K*V, best first
        parent, token = flat // V, flat % V  # (B, K) each
        score = candidate.view(B, K * V).gather(1, flat)
        length = new_length.gather(1, parent)
        finished = finished.gather(1, parent) | (token == eos)
        state = model.select(state, (torch.arange(B, device=device)[:, None] * K + parent).flatten())
        tokens.append(token)
        parents.append(parent)
        w = _weights(state)
        weights.append(None if w is None else w.view(B, K, -1))  # (B, K, S): each kept step's weights
        if bool(finished.all()):
            break
        prev = token.flatten()  # (B*K,)
    normalized = score / length_penalty(penalty, length, alpha)  # (B, K)
    best = normalized.argmax(1)  # (B,)
    out, out_w, done = [], [], []
    has_attention = weights[0] is not None
    for b in range(B):
        k, seq, ws = int(best[b]), [], []
        for t in range(len(tokens) - 1, -1, -1):  # follow the parents back to the first step
            seq.append(int(tokens[t][b, k]))
            ws.append(weights[t][b, k] if has_attention else None)
            k = int(parents[t][b, k])
        seq.reverse()
        ws.reverse()
        n = int(length[b, best[b]])  # the steps that belong to it; the rest are pad after </s>
        fin = bool(finished[b, best[b]])
        out.append(seq[: n - 1] if fin else seq[:n])
        done.append(fin)
        if has_attention:
            out_w.append(torch.stack(ws[:n])[:, : int(lengths[b])].cpu())  # (n, S_b)
    index = best[:, None]
    return Decoded(
        out, score.gather(1, index).squeeze(1).cpu(), normalized.gather(1, index).squeeze(1).cpu(), done,
        out_w if has_attention else None,
    )  # fmt: skip
