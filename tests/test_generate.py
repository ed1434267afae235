"""Sampling: state carrying against a full-prefix reference, the sampled distributions, the options."""

from __future__ import annotations

import pytest
import torch

from rnnkit.data import CharTokenizer
from rnnkit.errors import InputError
from rnnkit.generate import filter_logits, sample_next, sample_text, sample_tokens
from rnnkit.models import LanguageModel, LMConfig

TEXT = "to be or not to be, that is the question\n"


def make_model(cell: str = "lstm", layers: int = 2, dropout: float = 0.0, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    tok = CharTokenizer.fit(TEXT)
    model = LanguageModel(LMConfig(len(tok), cell=cell, hidden=16, layers=layers, dropout=dropout))
    with torch.no_grad():
        model.readout.weight.mul_(8.0)  # spread the logits so the argmax is never a near-tie
    return model


@pytest.fixture
def tok() -> CharTokenizer:
    return CharTokenizer.fit(TEXT)


@pytest.fixture
def prime(tok: CharTokenizer) -> torch.Tensor:
    return tok.encode("to be ")


def greedy_by_rereading(model: LanguageModel, prime: torch.Tensor, n: int) -> torch.Tensor:
    """The independent reference: every step re-runs the whole prefix from a zero state."""
    seq = prime.clone()
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(seq.view(-1, 1))  # (len, 1, V)
            seq = torch.cat([seq, logits[-1, 0].argmax().view(1)])
    return seq[len(prime) :]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_greedy_matches_rereading_the_prefix(cell: str, prime: torch.Tensor) -> None:
    model = make_model(cell).eval()
    got = sample_tokens(model, prime, 25, greedy=True)
    assert got.dtype == torch.long and got.shape == (25,)
    assert torch.equal(got, greedy_by_rereading(model, prime, 25))


def sample_by_rereading(model: LanguageModel, prime: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """The same reference for sampling: the same generator draws from the full-prefix logits."""
    g, seq = torch.Generator().manual_seed(seed), prime.clone()
    with torch.no_grad():
        for _ in range(n):
            logits, _ = model(seq.view(-1, 1))  # (len, 1, V)
            probs = torch.softmax(logits[-1, 0], -1).view(1, -1)  # (1, V)
            seq = torch.cat([seq, torch.multinomial(probs, 1, generator=g).view(1)])
    return seq[len(prime) :]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_sampling_matches_rereading_the_prefix(cell: str, prime: torch.Tensor) -> None:
    model = make_model(cell).eval()
    got = sample_tokens(model, prime, 40, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, sample_by_rereading(model, prime, 40, seed=3))
    assert len(set(got.tolist())) > 3  # a varied chain: the carried state really steers every step


def test_eval_mode_during_sampling_and_mode_restored(prime: torch.Tensor) -> None:
    model = make_model(dropout=0.5)
    model.train()
    a = sample_tokens(model, prime, 20, greedy=True)
    assert model.training  # restored
    b = sample_tokens(model, prime, 20, greedy=True)
    assert torch.equal(a, b)  # dropout was off: the greedy chain is deterministic
    assert torch.equal(a, greedy_by_rereading(model.eval(), prime, 20))
    sample_tokens(model, prime, 3)
    assert not model.training  # eval stays eval
    # restored even when sampling fails part way
    model.train()
    with pytest.raises(ValueError):
        sample_tokens(model, prime, 3, top_p=2.0)
    assert model.training


def test_runs_without_grad(prime: torch.Tensor) -> None:
    model = make_model()
    out = sample_tokens(model, prime, 5)
    assert not out.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_same_seed_same_sample(prime: torch.Tensor) -> None:
    model = make_model()
    a = sample_tokens(model, prime, 40, generator=torch.Generator().manual_seed(7))
    b = sample_tokens(model, prime, 40, generator=torch.Generator().manual_seed(7))
    c = sample_tokens(model, prime, 40, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_top_k_1_and_tiny_top_p_and_tiny_temperature_equal_greedy(prime: torch.Tensor) -> None:
    model = make_model()
    greedy = sample_tokens(model, prime, 30, greedy=True)
    for seed in range(3):
        for kw in ({"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-4}):
            g = torch.Generator().manual_seed(seed)
            assert torch.equal(sample_tokens(model, prime, 30, generator=g, **kw), greedy), kw


def first_token_probs(model: LanguageModel, prime: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits, _ = model.eval()(prime.view(-1, 1))
    return torch.softmax(logits[-1, 0], -1)  # (V,)


def empirical(draws: torch.Tensor, V: int) -> torch.Tensor:
    return torch.bincount(draws, minlength=V).double() / draws.numel()


def test_first_token_distribution_matches_softmax(prime: torch.Tensor) -> None:
    model = make_model()
    with torch.no_grad():
        model.readout.weight.div_(8.0)  # a broad distribution, so every token gets mass
    p = first_token_probs(model, prime).double()  # (V,)
    V = p.numel()
    assert p.max() < 0.5
    # end to end through sample_tokens: total variation within a loose bound for 1500 draws
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(model, prime, 1, generator=g)[0] for _ in range(1500)])
    assert 0.5 * (empirical(draws, V) - p).abs().sum() < 0.08
    # many draws from the same logits: a chi-square test (df = V - 1; 99.9% quantile < V + 6*sqrt(V))
    logits = torch.log(p).float().expand(200_000, V)
    many = sample_next(logits, generator=torch.Generator().manual_seed(1))  # (200000,)
    counts = torch.bincount(many, minlength=V).double()
    expected = p * many.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < (V - 1) + 6 * (2 * (V - 1)) ** 0.5


def test_top_k_puts_no_mass_outside_the_top_k(prime: torch.Tensor) -> None:
    model = make_model()
    with torch.no_grad():
        model.readout.weight.div_(8.0)
    p = first_token_probs(model, prime)
    top3 = set(torch.topk(p, 3).indices.tolist())
    g = torch.Generator().manual_seed(0)
    draws = [int(sample_tokens(model, prime, 1, top_k=3, generator=g)[0]) for _ in range(600)]
    assert set(draws) == top3  # all three reached, nothing else
    # the kept tokens keep their relative probabilities
    many = sample_next(torch.log(p).expand(100_000, -1), top_k=3, generator=torch.Generator().manual_seed(2))
    q = torch.zeros_like(p)
    idx = torch.tensor(sorted(top3))
    q[idx] = p[idx] / p[idx].sum()
    assert set(many.unique().tolist()) == top3
    assert (empirical(many, p.numel()) - q.double()).abs().max() < 0.01


def test_filter_logits_nucleus_is_the_smallest_set_reaching_p() -> None:
    p = torch.tensor([0.05, 0.5, 0.3, 0.15])
    logits = torch.log(p)
    kept = lambda top_p: set(torch.isfinite(filter_logits(logits, top_p=top_p)).nonzero().flatten().tolist())  # noqa: E731
    assert kept(0.4) == {1}
    assert kept(0.5) == {1}
    assert kept(0.51) == {1, 2}
    assert kept(0.8) == {1, 2}
    assert kept(0.9) == {1, 2, 3}
    assert kept(1.0) == {0, 1, 2, 3}
    assert kept(1e-9) == {1}  # always at least one token
    # top-k then top-p, on a batch of rows
    rows = torch.log(torch.tensor([[0.05, 0.5, 0.3, 0.15], [0.4, 0.1, 0.2, 0.3]]))
    out = filter_logits(rows, top_k=2)
    assert torch.isfinite(out).tolist() == [[False, True, True, False], [True, False, False, True]]
    # temperature divides
    assert torch.allclose(filter_logits(logits, temperature=0.5), logits * 2)


def test_temperature_sharpens(prime: torch.Tensor) -> None:
    model = make_model()
    with torch.no_grad():
        model.readout.weight.div_(8.0)
    logits = torch.log(first_token_probs(model, prime)).expand(20_000, -1)
    top = int(logits[0].argmax())
    share = [
        float(
            (sample_next(logits, temperature=t, generator=torch.Generator().manual_seed(0)) == top).mean(
                dtype=torch.float64
            )
        )
        for t in (2.0, 1.0, 0.3, 0.01, 1e-6)
    ]
    assert share == sorted(share) and share[-1] == 1.0


def test_sample_text(tok: CharTokenizer) -> None:
    model = make_model()
    text = sample_text(model, tok, "to be", 30, generator=torch.Generator().manual_seed(0))
    assert text.startswith("to be") and len(text) == 35
    assert set(text) <= set(TEXT)
    greedy = sample_text(model, tok, "to be", 10, greedy=True)
    assert greedy == "to be" + tok.decode(greedy_by_rereading(model.eval(), tok.encode("to be"), 10))
    with pytest.raises(InputError, match="'Z'"):
        sample_text(model, tok, "to Ze", 5)
    with pytest.raises(InputError, match="at least one prime token"):
        sample_text(model, tok, "", 5)


def test_n_zero(prime: torch.Tensor) -> None:
    out = sample_tokens(make_model(), prime, 0)
    assert out.shape == (0,) and out.dtype == torch.long


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature must be a number > 0, got 0.0"),
        ({"temperature": -1.0}, ValueError, "temperature must be a number > 0"),
        ({"temperature": True}, ValueError, "temperature"),
        ({"top_k": 0}, ValueError, "top_k must be greater than zero, got 0"),
        ({"top_k": 2.5}, TypeError, "top_k should be of type int"),
        ({"top_p": 0.0}, ValueError, r"top_p must be a number in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, ValueError, r"top_p must be a number in \(0, 1\]"),
        ({"greedy": 1}, TypeError, "greedy should be of type bool"),
    ],
)
def test_bad_options(kw: dict, error: type[Exception], match: str, prime: torch.Tensor) -> None:
    with pytest.raises(error, match=match):
        sample_tokens(make_model(), prime, 3, **kw)


def test_bad_prime_and_n(prime: torch.Tensor) -> None:
    model = make_model()
    with pytest.raises(InputError, match="at least one prime token"):
        sample_tokens(model, torch.zeros(0, dtype=torch.long), 3)
    with pytest.raises(InputError, match=r"prime_ids must be \(P,\) int64"):
        sample_tokens(model, prime.view(1, -1), 3)
    with pytest.raises(InputError, match=r"prime_ids must be \(P,\) int64"):
        sample_tokens(model, prime.float(), 3)
    with pytest.raises(InputError, match=r"prime_ids must be in \[0, "):
        sample_tokens(model, torch.tensor([0, 999]), 3)
    with pytest.raises(InputError, match="prime_ids must be a Tensor"):
        sample_tokens(model, [1, 2], 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        sample_tokens(model, prime, -1)
