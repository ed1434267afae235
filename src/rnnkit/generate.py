"""Sampling from a language model: temperature, top-k, nucleus (top-p) and greedy decoding.

Generation carries the recurrent state forward: the prime is read once, then every new token is one
``(1, 1)`` step from the state the previous step left. The prefix is never re-read, so producing n
tokens costs n steps, not n^2 / 2.

    iter_tokens(model, prime_ids, n)         the one sampling loop: yields each token as it is drawn
    sample_tokens(model, prime_ids, n)       all of them as one (n,) tensor
    iter_text(model, tok, prime, n, stop=)   decoded pieces as they come (for streaming), optional stop
    sample_text(model, tok, prime, n)        prime + all of them as one string

Shape legend: P prime length, n tokens to generate, V vocabulary size.
"""

from __future__ import annotations

import numbers
from collections.abc import Generator
from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError, check, check_int

__all__ = ["filter_logits", "iter_text", "iter_tokens", "sample_next", "sample_text", "sample_tokens"]


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
