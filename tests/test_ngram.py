"""KneserNeyLM checked against hand computations, a dict-of-tuples reference written from the equations,
and real text (tinyshakespeare)."""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from fractions import Fraction

import numpy as np
import pytest
import torch

from rnnkit.baselines import KneserNeyLM
from rnnkit.baselines.ngram import FALLBACK_DISCOUNTS, modified_kn_discounts
from rnnkit.errors import InputError


@pytest.fixture(scope="module")
def shakespeare(works_dir):
    """(ids, vocab) of the complete works (the registry's, 4.6 M characters, the files in name order),
    characters mapped to ids in sorted order."""
    text = "".join(f.read_text(encoding="utf-8") for f in sorted(works_dir.glob("*.txt")))
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    return np.array([stoi[ch] for ch in text], dtype=np.int64), chars


def encode(s: str) -> list[int]:
    """Tiny corpora over a..e: a=0, b=1, c=2, d=3, e=4."""
    return [ord(ch) - ord("a") for ch in s]


# -- hand computations, order 2 ----------------------------------------------------------------------

# "adcddabadddccccca", V = 5 (e = 4 never occurs). Chosen so that every count-of-counts n1..n4 is > 0.
CORPUS = "adcddabadddccccca"


def test_bigram_modified_kn_by_hand():
    lm = KneserNeyLM(order=2).fit(encode(CORPUS), vocab_size=5)
    F = Fraction

    # Bigram raw counts (16 bigrams): ab 1, ad 2, ba 1, ca 1, cc 4, cd 1, da 1, dc 2, dd 3.
    # Count-of-counts: n1 = 5 (ab ba ca cd da), n2 = 2 (ad dc), n3 = 1 (dd), n4 = 1 (cc).
    # Y = 5 / (5 + 2*2) = 5/9; D1 = 1 - 2Y n2/n1 = 1 - 2 (5/9)(2/5) = 5/9;
    # D2 = 2 - 3Y n3/n2 = 2 - 3 (5/9)(1/2) = 7/6; D3+ = 3 - 4Y n4/n3 = 3 - 20/9 = 7/9.
    D1, D2, D3 = F(5, 9), F(7, 6), F(7, 9)
    # Unigram continuation counts (distinct left neighbours; the start marker counts once for the first
    # character): a <- {^, b, c, d} = 4; b <- {a} = 1; c <- {c, d} = 2; d <- {a, c, d} = 3; total 10.
    # n1 = n2 = n3 = n4 = 1: Y = 1/3; d1 = 1 - 2/3 = 1/3; d2 = 2 - 1 = 1; d3 = 3 - 4/3 = 5/3.
    d1, d2, d3 = F(1, 3), F(1), F(5, 3)
    np.testing.assert_allclose(lm.discounts, [[float(d) for d in ds] for ds in ((d1, d2, d3), (D1, D2, D3))])

    # Order 1: gamma = (d3 [a: 4] + d1 [b: 1] + d2 [c: 2] + d3 [d: 3]) / 10 = (14/3) / 10 = 7/15;
    # p1(w) = max(N1+(.w) - D, 0) / 10 + (7/15) / 5:
    # a: (4 - 5/3)/10 + 7/75 = 49/150; b: (1 - 1/3)/10 + 7/75 = 24/150; c: (2 - 1)/10 + 7/75 = 29/150;
    # d: (3 - 5/3)/10 + 7/75 = 34/150; e: 0 + 7/75 = 14/150. Sum 150/150.
    p1 = [F(49, 150), F(24, 150), F(29, 150), F(34, 150), F(14, 150)]
    assert sum(p1) == 1

    # Context d: dd 3, da 1, dc 2 -> total 6; gamma(d) = (D3 + D1 + D2) / 6 = (7/9 + 5/9 + 7/6) / 6 = 5/12.
    # p(a|d) = (1 - 5/9)/6 + 5/12 * 49/150 = 2/27 + 49/360 = 227/1080
    # p(b|d) = 0 + 5/12 * 24/150 = 1/15
    # p(c|d) = (2 - 7/6)/6 + 5/12 * 29/150 = 5/36 + 29/360 = 79/360
    # p(d|d) = (3 - 7/9)/6 + 5/12 * 34/150 = 10/27 + 17/180 = 251/540
    # p(e|d) = 0 + 5/12 * 14/150 = 7/180                       (sum: 1080/1080)
    p_given_d = [F(227, 1080), F(1, 15), F(79, 360), F(251, 540), F(7, 180)]
    assert sum(p_given_d) == 1
    np.testing.assert_allclose(lm.next_distribution([3]), [float(p) for p in p_given_d], rtol=1e-12)

    # Context c: ca 1, cc 4, cd 1 -> total 6; gamma(c) = (D1 + D3 + D1) / 6 = (17/9) / 6 = 17/54.
    # p(c|c) = (4 - 7/9)/6 + 17/54 * 29/150 = 29/54 + 493/8100 = 4843/8100
    assert math.exp(lm.log_prob([2], 2)) == pytest.approx(float(F(4843, 8100)), rel=1e-12)

    # Context e was never seen: p(. | e) = p1 (the continuation unigram).
    np.testing.assert_allclose(lm.next_distribution([4]), [float(p) for p in p1], rtol=1e-12)
    # The empty context (first token of a sequence) also uses p1.
    np.testing.assert_allclose(lm.next_distribution([]), [float(p) for p in p1], rtol=1e-12)


def test_bigram_fixed_discount_by_hand():
    lm = KneserNeyLM(order=2, discount=0.5).fit(encode(CORPUS), vocab_size=5)
    # Order 1: continuation counts a 4, b 1, c 2, d 3 (total 10); gamma = 0.5 * 4 types / 10 = 1/5.
    # p1 = (N1+(.w) - 0.5)/10 + (1/5)/5: a 39/100, b 9/100, c 19/100, d 29/100, e 4/100.
    p1 = np.array([39, 9, 19, 29, 4]) / 100
    np.testing.assert_allclose(lm.next_distribution([4]), p1, rtol=1e-12)
    # Context d (dd 3, da 1, dc 2; total 6): gamma = 0.5 * 3 / 6 = 1/4.
    # p(d|d) = 2.5/6 + 1/4 * 29/100 = 5/12 + 29/400 = 587/1200; p(b|d) = 1/4 * 9/100 = 9/400.
    assert math.exp(lm.log_prob([3], 3)) == pytest.approx(587 / 1200, rel=1e-12)
    assert math.exp(lm.log_prob([0, 3], 1)) == pytest.approx(9 / 400, rel=1e-12)  # only the last token counts
    assert lm.discounts == [(0.5, 0.5, 0.5)] * 2


def test_discount_estimates_and_fallback():
    # n1..n4 = 4, 3, 2, 1: Y = 4/10; D1 = 1 - 2(0.4)(3/4) = 0.4; D2 = 2 - 3(0.4)(2/3) = 1.2;
    # D3+ = 3 - 4(0.4)(1/2) = 2.2.
    counts = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 9])
    assert modified_kn_discounts(counts) == pytest.approx((0.4, 1.2, 2.2), rel=1e-12)
    # No count of 3: the estimate is undefined, KenLM's fallback is used.
    assert modified_kn_discounts(np.array([1, 1, 2, 4])) == FALLBACK_DISCOUNTS
    # n1 = n2 = 1, n3 = 3: Y = 1/3, D2 = 2 - 3 (1/3) 3 = -1 < 0: out of range, fallback.
    assert modified_kn_discounts(np.array([1, 2, 3, 3, 3, 4])) == FALLBACK_DISCOUNTS
    # "abracadabra": bigram counts 2, 2, 2, 1, 1, 1, 1 have no 3s.
    lm = KneserNeyLM(order=2).fit(encode("abracadabra"))
    assert lm.discounts[1] == FALLBACK_DISCOUNTS


# -- a reference written from the equations -----------------------------------------------------------


def reference_discounts(counts, discount):
    if discount is not None:
        return (discount,) * 3
    n = Counter(counts)
    if any(n[r] == 0 for r in (1, 2, 3, 4)):
        return FALLBACK_DISCOUNTS
    y = n[1] / (n[1] + 2 * n[2])
    d = tuple(r - (r + 1) * y * n[r + 1] / n[r] for r in (1, 2, 3))
    return d if all(0 < d[r - 1] <= r for r in (1, 2, 3)) else FALLBACK_DISCOUNTS


class ReferenceKN:
    """Interpolated modified Kneser-Ney with dicts of tuples, one probability at a time."""

    def __init__(self, ids, order, vocab_size, discount=None):
        ids = [int(t) for t in ids]
        self.order, self.V = order, vocab_size
        raw = {
            k: Counter(tuple(ids[i : i + k]) for i in range(len(ids) - k + 1)) for k in range(1, order + 1)
        }
        self.counts, self.D = {}, {}
        for k in range(1, order + 1):
            if k == order:
                counts = dict(raw[k])
            else:
                left = defaultdict(set)  # k-gram -> distinct tokens seen just before it
                for gram in raw[k + 1]:
                    left[gram[1:]].add(gram[0])
                left[tuple(ids[:k])].add("<start>")
                counts = {gram: len(left[gram]) for gram in raw[k]}
            self.counts[k] = counts
            self.D[k] = reference_discounts(list(counts.values()), discount)
        self.children = {k: defaultdict(dict) for k in self.counts}  # context -> {token: count}
        for k, counts in self.counts.items():
            for gram, c in counts.items():
                self.children[k][gram[:-1]][gram[-1]] = c

    def prob(self, context, w, k=None):
        context = tuple(int(t) for t in context)[-(self.order - 1) :] if self.order > 1 else ()
        k = len(context) + 1 if k is None else k
        if k == 0:
            return 1 / self.V
        h = context[len(context) - (k - 1) :] if k > 1 else ()
        lower = self.prob(context, w, k - 1)
        children = self.children[k].get(h)
        if not children:
            return lower
        d1, d2, d3 = self.D[k]

        def D(c):
            return d1 if c == 1 else d2 if c == 2 else d3

        total = sum(children.values())
        gamma = sum(D(c) for c in children.values()) / total
        c = children.get(w, 0)
        return (max(c - D(c), 0) if c else 0) / total + gamma * lower


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("discount", [None, 0.75])
def test_matches_reference(shakespeare, order, discount):
    ids, chars = shakespeare
    train, held_out = ids[:20_000], ids[500_000:500_300]
    lm = KneserNeyLM(order, discount).fit(train, vocab_size=len(chars))
    ref = ReferenceKN(train, order, len(chars), discount)
    np.testing.assert_allclose(lm.discounts, [ref.D[k] for k in range(1, order + 1)], rtol=1e-12)
    for t in [*range(order), *range(order, len(held_out), 7)]:  # t < order - 1: short contexts
        context = held_out[max(0, t - order + 1) : t]
        expected = [ref.prob(context, w) for w in range(len(chars))]
        np.testing.assert_allclose(lm.next_distribution(context), expected, rtol=1e-10, atol=0)
    nll = [
        -math.log(ref.prob(held_out[max(0, t - order + 1) : t], held_out[t])) for t in range(len(held_out))
    ]
    assert lm.evaluate(held_out)["loss"] == pytest.approx(np.mean(nll), rel=1e-10)


# -- properties on real text --------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 6])
def test_next_distribution_sums_to_one(shakespeare, order):
    ids, chars = shakespeare
    lm = KneserNeyLM(order).fit(ids[:100_000], vocab_size=len(chars))
    rng = np.random.default_rng(order)
    contexts = [ids[s : s + rng.integers(0, order + 2)] for s in rng.integers(0, len(ids) - 10, 40)]  # seen
    contexts += [rng.integers(0, len(chars), rng.integers(0, order + 2)) for _ in range(20)]  # mostly unseen
    for context in contexts:
        p = lm.next_distribution(context)
        assert p.shape == (len(chars),)
        assert (p > 0).all()
        assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_unseen_contexts_and_tokens_have_positive_probability(shakespeare):
    ids, chars = shakespeare
    V = len(chars) + 5  # the last 5 ids never occur in training
    a, b, c, d = V - 4, V - 3, V - 2, V - 1
    lm = KneserNeyLM(order=4).fit(ids[:50_000], vocab_size=V)
    seen_context = ids[1000:1003]
    for context in (seen_context, [a, b, c], [b], [], [0, 0, 0]):
        p = lm.next_distribution(context)
        assert (p > 0).all() and p.sum() == pytest.approx(1.0, abs=1e-12)
        assert p[len(chars) :] == pytest.approx(p[-1])  # unseen tokens: only the uniform floor
        assert math.isfinite(lm.log_prob(context, d))
    # In a frequent seen context the unseen token gets much less than the seen ones.
    assert lm.next_distribution(seen_context)[d] < 1e-2 / V
    assert math.isfinite(lm.evaluate([a, b, c, d, 1, 2])["loss"])


def test_unigram_reduces_to_discounted_counts_plus_uniform(shakespeare):
    ids, chars = shakespeare
    train = ids[:30_000]
    V = len(chars) + 1
    for discount in (None, 0.75):
        lm = KneserNeyLM(order=1, discount=discount).fit(train, vocab_size=V)
        # Order 1 is the highest order, so it uses raw counts: p(w) = max(c(w) - D(c), 0)/N + gamma/V,
        # gamma = sum_w D(c(w)) / N; whatever the context.
        c = Counter(train.tolist())
        d = reference_discounts(list(c.values()), discount)

        def D(n, d=d):
            return d[0] if n == 1 else d[1] if n == 2 else d[2]

        gamma = sum(D(n) for n in c.values()) / len(train)
        expected = [max(c[w] - D(c[w]), 0) / len(train) + gamma / V if c[w] else gamma / V for w in range(V)]
        for context in ([], ids[:10], [3]):
            np.testing.assert_allclose(lm.next_distribution(context), expected, rtol=1e-12)

    # In a higher-order model an unseen context falls back to the *continuation* unigram:
    # p(w) = max(N1+(.w) - D, 0) / N1+(..) + gamma/V, N1+(.w) = distinct left neighbours (+1 at the start).
    lm = KneserNeyLM(order=3, discount=0.5).fit(train, vocab_size=V)
    left = defaultdict(set)
    for a, b in zip(train[:-1].tolist(), train[1:].tolist(), strict=True):
        left[b].add(a)
    left[int(train[0])].add("<start>")
    n1p = {w: len(s) for w, s in left.items()}
    total = sum(n1p.values())
    gamma = 0.5 * len(n1p) / total
    expected = [(n1p[w] - 0.5) / total + gamma / V if w in n1p else gamma / V for w in range(V)]
    np.testing.assert_allclose(lm.next_distribution([V - 1, V - 1]), expected, rtol=1e-12)
    np.testing.assert_allclose(lm.next_distribution([]), expected, rtol=1e-12)


def test_evaluate_is_mean_negative_log_prob(shakespeare):
    ids, chars = shakespeare
    lm = KneserNeyLM(order=4).fit(ids[:100_000], vocab_size=len(chars))
    held_out = ids[900_000:900_400]
    nll = [-lm.log_prob(held_out[:t], held_out[t]) for t in range(len(held_out))]
    result = lm.evaluate(torch.from_numpy(held_out))
    assert result["tokens"] == len(held_out)
    assert result["loss"] == pytest.approx(np.mean(nll), rel=1e-12)
    assert result["bits_per_token"] == pytest.approx(result["loss"] / math.log(2))
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    # Sequences shorter than the order.
    for m in (1, 2, 3):
        short = held_out[:m].tolist()
        expected = np.mean([-lm.log_prob(short[:t], short[t]) for t in range(m)])
        assert lm.evaluate(short)["loss"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("discount", [None, 0.6])
def test_state_dict_json_round_trip(shakespeare, discount):
    ids, chars = shakespeare
    lm = KneserNeyLM(order=5, discount=discount).fit(ids[:50_000], vocab_size=len(chars) + 2)
    state = json.loads(json.dumps(lm.state_dict()))
    loaded = KneserNeyLM(order=5, discount=discount)
    loaded.load_state_dict(state)
    assert loaded.vocab_size == lm.vocab_size and loaded.discounts == lm.discounts
    held_out = ids[600_000:602_000]
    assert loaded.evaluate(held_out) == lm.evaluate(held_out)
    for t in range(0, 2000, 97):
        np.testing.assert_array_equal(
            loaded.next_distribution(held_out[:t]), lm.next_distribution(held_out[:t])
        )
    with pytest.raises(InputError, match="Expected order 5, got 4"):
        KneserNeyLM(order=5, discount=discount).load_state_dict({**state, "order": 4})
    with pytest.raises(InputError, match="not a KneserNeyLM state_dict"):
        loaded.load_state_dict({"weights": []})


def test_real_text_loss_far_below_uniform_and_falls_with_order(shakespeare):
    ids, chars = shakespeare
    train, held_out = ids[:200_000], ids[1_003_854:1_023_854]  # 200 K chars; 20 K of the validation split
    losses = {}
    for order in range(1, 6):
        start = time.perf_counter()
        losses[order] = KneserNeyLM(order).fit(train, vocab_size=len(chars)).evaluate(held_out)["loss"]
        assert time.perf_counter() - start < 5  # measured ~0.1 s; generous for a loaded machine
    uniform = math.log(len(chars))  # 4.17 nats
    assert losses[1] < uniform - 0.7  # the unigram alone: ~3.3
    assert losses[4] < 0.5 * uniform  # ~1.9
    assert losses[1] > losses[2] > losses[3] > losses[4]
    assert min(losses.values()) > 1.3  # 200 K chars cannot do better than the full-data 6-gram (~1.52)


def test_training_text_shorter_than_order():
    # Orders longer than the training text have empty tables: they pass the lower orders through.
    for train in ([2], [0, 1], [1, 1, 1]):
        lm = KneserNeyLM(order=6).fit(train, vocab_size=4)
        lower = KneserNeyLM(order=len(train)).fit(train, vocab_size=4)
        for context in ([], [1], [0, 1], [3, 3, 3, 3, 3, 3]):
            p = lm.next_distribution(context)
            assert (p > 0).all() and p.sum() == pytest.approx(1.0, abs=1e-12)
            # with no k-gram longer than the text, the highest order with counts is len(train)
            np.testing.assert_allclose(p, lower.next_distribution(context), rtol=1e-12)
        assert lm.evaluate([0, 1, 2, 3])["loss"] == pytest.approx(lower.evaluate([0, 1, 2, 3])["loss"])


# -- sampling -----------------------------------------------------------------------------------------


def test_sample(shakespeare):
    ids, chars = shakespeare
    lm = KneserNeyLM(order=4).fit(ids[:100_000], vocab_size=len(chars))
    prime = ids[:20].tolist()
    a = lm.sample(prime, 200, generator=torch.Generator().manual_seed(0))
    b = lm.sample(prime, 200, generator=torch.Generator().manual_seed(0))
    assert a == b and len(a) == 200 and all(0 <= t < len(chars) for t in a)
    # Only the last order - 1 tokens of the prime matter.
    c = lm.sample([5, 6, 7, *prime], 200, generator=torch.Generator().manual_seed(0))
    assert c == a
    # A cold temperature picks the most likely token at every step.
    cold = lm.sample(prime, 30, temperature=1e-3, generator=torch.Generator().manual_seed(1))
    context = prime
    for token in cold:
        assert token == int(np.argmax(lm.next_distribution(context)))
        context = [*context, token]
    assert lm.sample(prime, 0) == []


def test_sample_follows_next_distribution(shakespeare):
    ids, chars = shakespeare
    lm = KneserNeyLM(order=1).fit(ids[:100_000], vocab_size=len(chars))
    draws = 4000
    samples = lm.sample([], draws, generator=torch.Generator().manual_seed(0))
    p = lm.next_distribution([])
    freq = np.bincount(samples, minlength=len(chars)) / draws
    sigma = np.sqrt(p * (1 - p) / draws)
    assert (np.abs(freq - p) < 5 * sigma + 1e-3).all()
    # temperature 2 flattens the distribution towards p ** 0.5 (renormalised)
    hot = lm.sample([], draws, temperature=2.0, generator=torch.Generator().manual_seed(0))
    q = np.sqrt(p) / np.sqrt(p).sum()
    freq = np.bincount(hot, minlength=len(chars)) / draws
    assert (np.abs(freq - q) < 5 * np.sqrt(q * (1 - q) / draws) + 1e-3).all()


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_input():
    with pytest.raises(ValueError, match="order must be greater than zero, got 0"):
        KneserNeyLM(order=0)
    with pytest.raises(TypeError, match="order should be of type int"):
        KneserNeyLM(order=2.0)
    with pytest.raises(ValueError, match=r"discount should be None or a number in \(0, 1\], got 1.5"):
        KneserNeyLM(discount=1.5)
    lm = KneserNeyLM(order=3)
    with pytest.raises(InputError, match="not fitted"):
        lm.evaluate([1, 2])
    with pytest.raises(TypeError, match="integer token ids, got str"):
        lm.fit("hello")
    with pytest.raises(InputError, match="integer token ids, got dtype float64"):
        lm.fit([0.5, 1.0])
    with pytest.raises(InputError, match=r"must be 1-D, got 2-D with shape \(2, 2\)"):
        lm.fit([[1, 2], [3, 4]])
    with pytest.raises(InputError, match="train_ids must be >= 0, got -1"):
        lm.fit([1, -1])
    with pytest.raises(InputError, match="train_ids must be < vocab_size=3, got 3"):
        lm.fit([1, 3], vocab_size=3)
    with pytest.raises(InputError, match="train_ids must not be empty"):
        lm.fit([])
    lm.fit([0, 1, 2, 1, 0], vocab_size=4)
    with pytest.raises(InputError, match="ids must be < vocab_size=4, got 4"):
        lm.evaluate([1, 4])
    with pytest.raises(InputError, match="context must be < vocab_size=4, got 7"):
        lm.next_distribution([7])
    with pytest.raises(InputError, match="token must be < vocab_size=4, got 4"):
        lm.log_prob([1], 4)
    with pytest.raises(ValueError, match="temperature should be a number > 0, got 0"):
        lm.sample([1], 5, temperature=0)


# -- the full benchmark -------------------------------------------------------------------------------


@pytest.mark.slow
def test_six_gram_on_standard_split(tiny_path):
    text = tiny_path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    assert (n, len(ids) - n) == (1_003_854, 111_540)
    start = time.perf_counter()
    lm = KneserNeyLM(order=6).fit(ids[:n], vocab_size=len(chars))
    fit_s = time.perf_counter() - start
    result = lm.evaluate(ids[n:])
    total_s = time.perf_counter() - start
    print(f"\n6-gram: {result}, fit {fit_s:.2f} s, fit + eval {total_s:.2f} s")
    assert result["tokens"] == 111_540
    assert result["loss"] <= 1.60  # published character-level KN 6-gram: ~1.56 nats/char
    assert total_s < 60
