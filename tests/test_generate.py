"""Sampling: state carrying against a full-prefix reference, the sampled distributions, the options."""

from __future__ import annotations

import pytest
import torch

from rnnkit.apps.lm.model import LanguageModel, LMConfig
from rnnkit.data import CharTokenizer, WordTokenizer
from rnnkit.errors import InputError
from rnnkit.generate import filter_logits, iter_text, iter_tokens, sample_next, sample_text, sample_tokens

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
    with pytest.raises(InputError, match=r"'Z' \(U\+005A\).*other unknown characters: 'Q' \(U\+0051\) x2"):
        sample_text(model, tok, "to ZeQQ", 5)  # every character outside the vocabulary is listed
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


# -- streaming: one token at a time, the same draws as all at once ------------------------------------------


def test_iter_tokens_takes_one_step_per_token_and_leaves_grad_mode_alone(prime: torch.Tensor) -> None:
    model = make_model(dropout=0.5).train()
    inputs: list[tuple[int, ...]] = []
    model.register_forward_hook(lambda m, args, out: inputs.append(tuple(args[0].shape)))
    g = torch.Generator().manual_seed(4)
    tokens = iter_tokens(model, prime, 1000, generator=g)
    assert inputs == [] and model.training  # nothing runs before the first token is asked for
    first = [int(next(tokens)) for _ in range(5)]
    # the prime once, then one (1, 1) step per further token: the 1000 asked for were never computed
    assert inputs == [(len(prime), 1)] + [(1, 1)] * 4
    assert torch.is_grad_enabled() and not model.training  # grad mode untouched while suspended
    tokens.close()
    assert model.training  # restored on close, not only at the end
    assert first == sample_tokens(model, prime, 5, generator=torch.Generator().manual_seed(4)).tolist()


def test_iter_text_pieces_are_sample_text(tok: CharTokenizer) -> None:
    model = make_model()
    pieces = list(iter_text(model, tok, "to be", 30, generator=torch.Generator().manual_seed(5)))
    assert len(pieces) == 30 and all(len(p) == 1 for p in pieces)  # one character per token
    text = sample_text(model, tok, "to be", 30, generator=torch.Generator().manual_seed(5))
    assert text == "to be" + "".join(pieces)
    assert text == "to be" + tok.decode(
        sample_tokens(model, tok.encode("to be"), 30, generator=torch.Generator().manual_seed(5))
    )


def sampled_pieces(model: LanguageModel, tokenizer, prime: str, n: int, **kw) -> list[str]:
    return list(iter_text(model, tokenizer, prime, n, generator=torch.Generator().manual_seed(6), **kw))


def test_stop_cuts_right_after_the_first_occurrence(tok: CharTokenizer) -> None:
    model = make_model(layers=1)
    with torch.no_grad():
        model.readout.weight.div_(8.0)  # varied text, so the stop string below first occurs late
    full = "".join(sampled_pieces(model, tok, "to be", 80))
    stop = full[40:43]  # spans three one-character pieces
    end = full.index(stop) + len(stop)
    model.train()
    pieces = sampled_pieces(model, tok, "to be", 80, stop=stop)
    assert "".join(pieces) == full[:end] and len(pieces) == end
    assert model.training  # the sampling loop was closed as soon as it stopped
    # a stop string the text never contains: all n tokens
    assert "".join(sampled_pieces(model, tok, "to be", 80, stop="zz")) == full
    # only the generated text is searched, not the prime
    generated = "".join(sampled_pieces(model, tok, "to be", 80, stop="to b"))
    assert generated == (full[: full.index("to b") + 4] if "to b" in full else full)


def word_model(text: str) -> tuple[LanguageModel, WordTokenizer]:
    wtok = WordTokenizer.fit(text)
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(len(wtok), hidden=16))
    with torch.no_grad():
        model.readout.weight.mul_(8.0)  # peaked distributions: the prime visibly steers the sample
    return model, wtok


def test_stop_inside_a_word_token() -> None:
    model, wtok = word_model("the king is dead, long live the king. my lord, the queen is in the garden.\n")
    full_pieces = sampled_pieces(model, wtok, "the", 40)
    full = "".join(full_pieces)
    # a stop string that ends in the middle of a piece: the piece is cut there
    k = next(i for i in range(5, 40) if len(full_pieces[i]) > 2)
    before = "".join(full_pieces[:k])
    stop = before[-2:] + full_pieces[k][:2]
    end = full.index(stop) + len(stop)
    pieces = sampled_pieces(model, wtok, "the", 40, stop=stop)
    assert "".join(pieces) == full[:end] and pieces[-1] != full_pieces[len(pieces) - 1]
    assert len(pieces) <= k + 1


def test_unknown_prime_words_are_unk() -> None:
    model, wtok = word_model("the king is dead, long live the king.\n")
    a = sampled_pieces(model, wtok, "the king, Zounds", 20)
    b = sampled_pieces(model, wtok, "the king, Gadzooks", 20)  # another unknown word: the same ids
    c = sampled_pieces(model, wtok, "the king, long", 20)
    assert a == b and a != c
    # a character vocabulary with <unk> maps unknown prime characters to it the same way
    ctok = CharTokenizer.fit(TEXT, allow_unknown=True)
    model = LanguageModel(LMConfig(len(ctok), hidden=16))
    assert sampled_pieces(model, ctok, "to Ze", 10) == sampled_pieces(model, ctok, "to Qe", 10)


@pytest.mark.parametrize("stop", ["", 5])
def test_bad_stop_is_refused_before_sampling(stop: object, tok: CharTokenizer) -> None:
    model = make_model()
    with pytest.raises(InputError, match="stop must be a non-empty string, got"):
        iter_text(model, tok, "to be", 5, stop=stop)  # type: ignore[arg-type]  # not iterated: raised at once
