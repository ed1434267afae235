"""Many-to-many tagging: restoring letter case, the rule baseline, the tagger, and the commands."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.apps.tag.model import SequenceTagger, TaggerConfig
from rnnkit.cli import main
from rnnkit.data.casing import case_targets, letter_mask, rule_baseline, tag_scores
from rnnkit.training.batches import EpochBatches, random_windows


def test_case_targets_and_rule_baseline_by_hand():
    lower, tags = case_targets("ROMEO.\nO, she is. Fair i am")
    assert lower == "romeo.\no, she is. fair i am"
    text = "ROMEO.\nO, she is. Fair i am"
    assert tags.tolist() == [int(c.isupper()) for c in text] and sum(tags.tolist()) == 7
    pred = rule_baseline(lower)
    # line starts, after ". ", and the word "i"; not the "i" inside "is" or "fair"
    expected = [0] * len(lower)
    expected[0] = expected[7] = expected[lower.index("fair")] = expected[lower.index(" i ") + 1] = 1
    assert pred.tolist() == expected


def test_tag_scores_by_hand():
    pred = torch.tensor([1, 1, 0, 0, 1, 0])
    target = torch.tensor([1, 0, 1, 0, 1, 0])
    s = tag_scores(pred, target, torch.tensor([True, True, True, False, False, False]))
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["upper_precision"] == pytest.approx(2 / 3) and s["upper_recall"] == pytest.approx(2 / 3)
    assert s["upper_f1"] == pytest.approx(2 / 3)
    assert s["letter_accuracy"] == pytest.approx(1 / 3)
    assert letter_mask("a1 b").tolist() == [True, False, False, True]


def test_unidirectional_tagger_cannot_see_the_future_and_bidirectional_can():
    torch.manual_seed(0)
    x = torch.randint(0, 10, (12, 3))
    y = x.clone()
    y[8:] = (y[8:] + 1) % 10  # change only the future of step 5
    for bidirectional, same in ((False, True), (True, False)):
        model = SequenceTagger(TaggerConfig(10, 3, "gru", hidden=8, bidirectional=bidirectional)).double()
        a, b = model(x)[5], model(y)[5]
        assert torch.equal(a, b) == same
    with pytest.raises(ValueError, match=r"tokens must be \(T, B\) int64"):
        model(x.float())


def test_lengths_keep_padding_out():
    torch.manual_seed(0)
    model = SequenceTagger(TaggerConfig(10, 2, "lstm", hidden=8, bidirectional=True))
    x = torch.randint(1, 10, (6, 1))
    padded = torch.cat([x, torch.randint(1, 10, (4, 1))])
    torch.testing.assert_close(model(padded, lengths=torch.tensor([6]))[:6], model(x))


def test_epoch_batches_and_windows_are_reproducible_and_resume():
    batches = EpochBatches(10, 4, seed=3)
    seen = [batches.next() for _ in range(3)]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))  # one epoch: 4 + 4 + 2, each once
    state = batches.state_dict()
    after = [batches.next().tolist() for _ in range(4)]
    again = EpochBatches(10, 4, seed=3)
    again.load_state_dict(state)
    assert [again.next().tolist() for _ in range(4)] == after
    with pytest.raises(ValueError, match="batch state is for 10 examples with seed 3, not 10 with seed 4"):
        EpochBatches(10, 4, seed=4).load_state_dict(state)
    assert torch.equal(random_windows(100, 8, 5, 1, 7), random_windows(100, 8, 5, 1, 7))
    assert not torch.equal(random_windows(100, 8, 5, 1, 7), random_windows(100, 8, 5, 1, 8))
    assert int(random_windows(100, 8, 1000, 0, 0).max()) <= 92


def test_train_tag_command_beats_the_rule_and_tags_text(tmp_path, capsys, works_dir):
    folder = tmp_path / "works"
    folder.mkdir()
    for name in sorted(p.name for p in works_dir.iterdir())[:10]:  # 10 works: 9 to train, 1 held out
        (folder / name).write_text((works_dir / name).read_text()[:30000])
    run = tmp_path / "run"
    argv = ["train", "tag", "--data", str(folder), "--out", str(run), "--hidden", "32", "--steps", "150",
            "--batch", "16", "--seq-len", "64", "--eval-every", "150", "--no-progress", "--no-plots",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bidirectional"] is True and report["steps"] == 150
    assert report["upper_f1"] > report["baseline"]["upper_f1"]  # the names in capitals
    assert report["accuracy"] > 0.95
    assert main(["tag", str(run), "romeo. o romeo.", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)["text"]
    assert text.lower() == "romeo. o romeo." and text != text.lower()
    assert main(["tag", str(tmp_path / "nothing"), "x"]) == 2
    assert "not a run directory" in capsys.readouterr().err
