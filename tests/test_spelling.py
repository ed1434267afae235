"""One-to-many: a decoder that spells the digit in an image, from a vector, one character at a time."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.apps.spell import WORDS, load_digits_split
from rnnkit.apps.spell.model import BOS, EOS, Speller, SpellerConfig
from rnnkit.cli import main
from rnnkit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


def speller(cell: str = "gru") -> Speller:
    torch.manual_seed(0)
    return Speller(SpellerConfig(features=5, alphabet=sorted(set("".join(WORDS))), cell=cell, hidden=8))


def test_words_encode_and_decode():
    model = speller()
    ids = model.encode_words(["one", "seven"])
    assert ids.shape == (6, 2) and ids[3, 0] == EOS and ids[5, 1] == EOS
    assert model.decode_ids(ids) == ["one", "seven"]
    with pytest.raises(InputError, match=r"'ONE' has characters outside the alphabet: \['E', 'N', 'O'\]"):
        model.encode_words(["ONE"])
    with pytest.raises(InputError, match=r"features must be \(B, 5\), got shape \(2, 4\)"):
        model.spell(torch.zeros(2, 4))


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_teacher_forcing_feeds_the_truth_and_zero_feeds_the_models_own_samples(cell):
    model = speller(cell)
    with torch.no_grad():
        model.readout.weight.zero_()
        model.readout.bias.fill_(-50.0)
        model.readout.bias[5] = 50.0  # the model always says id 5
    seen = []
    model.embedding.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    targets = model.encode_words(["two", "nine"])
    x = torch.randn(2, 5)
    model(x, targets)
    assert seen[0].tolist() == [BOS, BOS] and torch.equal(torch.stack(seen[1:]), targets[:-1])
    seen.clear()
    model(x, targets, teacher_forcing=0.0)
    assert (torch.stack(seen[1:]) == 5).all()
    assert model.spell(x) == [model.config.alphabet[3] * (model.config.max_length + 1)] * 2  # never <eos>


def test_gradients_flow_to_encoder_and_decoder():
    model = speller("lstm").double()
    targets = model.encode_words(["six", "zero"])
    scores = model(torch.randn(2, 5, dtype=torch.float64), targets)
    scores.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_digits_split_is_stratified_and_disjoint():
    xtr, ytr, xte, yte = load_digits_split()
    assert xtr.shape == (1347, 64) and xte.shape == (450, 64) and xtr.min() >= 0 and xtr.max() <= 1
    counts = torch.bincount(yte, minlength=10).float() / torch.bincount(torch.cat([ytr, yte]), minlength=10)
    assert torch.allclose(counts, torch.full((10,), 0.25), atol=0.01)
    train_rows = {tuple(r) for r in xtr.tolist()}
    assert sum(tuple(r) in train_rows for r in xte.tolist()) < 10  # the set has a few duplicate images


def test_train_spell_command_learns_to_spell(tmp_path, capsys):
    argv = ["train", "spell", "--out", str(tmp_path / "run"), "--hidden", "64", "--steps", "80",
            "--lr", "1e-2", "--eval-every", "80", "--no-progress", "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_examples"] == 450 and report["steps"] == 80
    assert report["exact_match"] > 0.5  # chance is 0.1, and most errors would be misspellings
    assert all(e["spelled"] != e["truth"] for e in report["errors"])
