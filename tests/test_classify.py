"""Many-to-one classification: pooling over true lengths, normalisation fitted on training data only,
ClassifyTask through the one training loop (learning, exact resume), and `rnnkit train classify` /
`rnnkit predict` on the UEA Japanese Vowels data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.apps import classify
from rnnkit.apps.classify.model import ClassifierConfig, build_classifier
from rnnkit.apps.classify.task import ClassifyTask
from rnnkit.cli import main
from rnnkit.data import uea
from rnnkit.data.timeseries import SeriesDataset, read_ts
from rnnkit.errors import InputError
from rnnkit.training.trainer import TrainConfig, fit

_VOWELS = uea.shipped("JapaneseVowels")  # the aeon wheel's copy of the UEA files
TRAIN, TEST = _VOWELS or (Path("JapaneseVowels_TRAIN.ts"), Path("JapaneseVowels_TEST.ts"))
needs_vowels = pytest.mark.skipif(_VOWELS is None, reason="the aeon package (a dev dependency) is missing")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vowels() -> tuple[SeriesDataset, SeriesDataset]:
    return read_ts(TRAIN), read_ts(TEST)


def model_for(pool: str = "mean", cell: str = "gru", bidirectional: bool = True, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ClassifierConfig(input_size=3, num_classes=4, cell=cell, hidden=8, layers=2,
                              bidirectional=bidirectional, pool=pool, **kw)  # fmt: skip
    model = build_classifier(config).eval()
    with torch.no_grad():  # non-trivial statistics, so that normalising the padding would show
        model.normalizer.mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        model.normalizer.std.copy_(torch.tensor([2.0, 0.5, 1.5]))
    return model


POOLS = ("last", "mean", "max", "attention")
CASES = [(p, c, bi) for p in POOLS for c, bi in (("gru", True), ("lstm", False))]
CASES += [("last", "rnn", True), ("attention", "lstm", True), ("max", "gru", False)]


@pytest.mark.parametrize("pool, cell, bidirectional", CASES)
def test_padding_never_leaks_into_the_output(pool, cell, bidirectional):
    """Appending padding, and filling it with garbage, leaves logits and state unchanged."""
    model = model_for(pool, cell, bidirectional)
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([5, 2, 7, 1])
    x = torch.randn(4, 7, 3, generator=g)  # (B, T, C)
    x = x * (torch.arange(7)[None, :, None] < lengths[:, None, None])  # zero padding
    with torch.no_grad():
        ref, ref_state = model(x, lengths)
        longer = torch.cat([x, torch.zeros(4, 6, 3)], dim=1)  # 6 more padded steps
        garbage = longer + 100 * torch.randn(longer.shape, generator=g) * (
            torch.arange(13)[None, :, None] >= lengths[:, None, None]
        )  # every padded step, including the ones inside T = 7, holds large noise
        for padded in (longer, garbage):
            out, state = model(padded, lengths)
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
            for a, b in zip(torch.as_tensor(state[0] if isinstance(state, tuple) else state),
                            torch.as_tensor(ref_state[0] if isinstance(ref_state, tuple) else ref_state),
                            strict=True):  # fmt: skip
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        # each series alone, unpadded, gives its row of the batch
        for b in range(4):
            alone, _ = model(x[b : b + 1, : lengths[b]], lengths[b : b + 1])
            torch.testing.assert_close(alone, ref[b : b + 1], rtol=0, atol=1e-5)


def test_mlp_baseline_ignores_padding_and_cuts_long_series():
    torch.manual_seed(0)
    model = build_classifier(ClassifierConfig(3, 4, model="mlp", hidden=16, layers=2, max_len=6)).eval()
    lengths = torch.tensor([3, 6])
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        ref, state = model(x[:, :3].clone() * torch.tensor([[[1.0]], [[1.0]]]), torch.tensor([3, 3]))
        assert state is None
        short = model(x[:1, :3], lengths[:1])[0]  # the same series without padding
        garbage = x.clone()
        garbage[0, 3:] = 1e3  # past series 0's end
        out = model(garbage, lengths)[0]
        torch.testing.assert_close(out[0], short[0], rtol=0, atol=1e-6)
        longer = torch.cat([x, torch.randn(2, 4, 3)], dim=1)  # 10 steps > max_len: cut to 6
        torch.testing.assert_close(model(longer, torch.tensor([3, 10]))[0][1], model(x, lengths)[0][1])
    assert ref.shape == (2, 4)


def test_last_pool_reads_each_direction_at_its_end():
    """Bidirectional "last" = the forward output at L - 1 joined with the reverse output at step 0."""
    model = model_for("last", "gru", True)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 4, 2])
    with torch.no_grad():
        y, _ = model.rnn(model.normalizer(x), lengths=lengths)  # (B, T, 2H)
        pooled = classify_pool(y, lengths)
        logits, h = model(x, lengths)
        torch.testing.assert_close(logits, model.readout(pooled))
        # the same vectors are the final states of the top layer's two directions
        torch.testing.assert_close(pooled, torch.cat([h[-2], h[-1]], dim=-1))


def classify_pool(y, lengths):
    H = y.shape[-1] // 2
    return torch.stack([torch.cat([y[b, n - 1, :H], y[b, 0, H:]]) for b, n in enumerate(lengths.tolist())])


def test_bad_model_input_is_an_input_error():
    model = model_for()
    with pytest.raises(InputError, match=r"built for 3 channels per step, got 5"):
        model(torch.zeros(2, 4, 5))
    with pytest.raises(InputError, match=r"expects float series \(B, T, C\), got torch.float32 of shape"):
        model(torch.zeros(4, 3))
    with pytest.raises(InputError, match=r"lengths must be in \[1, 4\], got 0..4"):
        model(torch.zeros(2, 4, 3), torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="pool must be one of"):
        ClassifierConfig(3, 4, pool="sum")
    with pytest.raises(ValueError, match="the mlp model needs max_len"):
        ClassifierConfig(3, 4, model="mlp")


@needs_vowels
def test_normalisation_is_fitted_on_training_series_only(tmp_path, vowels):
    train, test = vowels
    report = classify.train_classifier(
        TRAIN, None, tmp_path / "run", {"hidden": 8}, {"steps": 2, "plots": False}, progress=False
    )
    trained = classify.load_classifier(report["run_dir"])
    steps = np.concatenate(train.series)  # (sum T_i, C): every valid training step, no padding
    np.testing.assert_allclose(trained.model.normalizer.mean.numpy(), steps.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trained.model.normalizer.std.numpy(), steps.std(0), rtol=1e-4)
    # the test set's own statistics differ, and predicting on it leaves the buffers alone
    assert not np.allclose(np.concatenate(test.series).mean(0), steps.mean(0), atol=1e-3)
    before = trained.model.normalizer.mean.clone()
    classify.score(trained, test)
    assert torch.equal(trained.model.normalizer.mean, before)
    assert {"normalizer.mean", "normalizer.std"} <= set(trained.model.state_dict())


def test_batches_visit_every_series_once_per_epoch():
    N, B = 10, 4
    x, n, y = torch.zeros(N, 3, 1), torch.full((N,), 3), torch.arange(N)
    task = ClassifyTask(x, n, y, (x, n, y), batch_size=B, seed=3)
    seen = [task._next_batch().tolist() for _ in range(6)]  # two epochs: 4 + 4 + 2, 4 + 4 + 2
    assert [len(s) for s in seen] == [4, 4, 2, 4, 4, 2]
    first, second = sum(seen[:3], []), sum(seen[3:], [])
    assert sorted(first) == sorted(second) == list(range(N)) and first != second
    assert task.state_dict() == {"classify": {"epoch": 1, "position": 10, "seed": 3}}
    again = ClassifyTask(x, n, y, (x, n, y), batch_size=B, seed=3)
    again.load_state_dict({"classify": {"epoch": 1, "position": 4, "seed": 3}})
    assert again._next_batch().tolist() == seen[4]


def small_task(data: SeriesDataset, seed: int = 0) -> tuple[torch.nn.Module, ClassifyTask]:
    torch.manual_seed(seed)
    config = ClassifierConfig(12, 9, cell="lstm", hidden=12, layers=2, dropout=0.2, input_noise=0.1)
    model = build_classifier(config)
    x, lengths = data.padded()
    model.normalizer.fit(x, lengths)
    y = data.targets()
    return model, ClassifyTask(x, lengths, y, (x[:50], lengths[:50], y[:50]), batch_size=32, seed=seed)


@needs_vowels
def test_exact_resume(tmp_path, vowels):
    """N steps straight = N/2 steps, stop, resume to N: identical weights (dropout, input noise,
    shuffling, Adam)."""
    train = vowels[0]
    common = {"eval_every": 4, "checkpoint_every": 100, "plots": False, "weight_decay": 0.01}
    model, task = small_task(train)
    fit(model, task, TrainConfig(steps=14, **common), tmp_path / "straight", progress=False)
    half, task2 = small_task(train)
    fit(half, task2, TrainConfig(steps=7, **common), tmp_path / "resumed", progress=False)  # mid-epoch
    resumed, task3 = small_task(train, seed=0)
    fit(resumed, task3, TrainConfig(steps=14, **common), tmp_path / "resumed", resume=True, progress=False)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # 9 batches in epoch 0 (8 of 32, one of 14), then 5 of 32
    assert (task.epoch, task.position) == (task3.epoch, task3.position) == (1, 160)
    assert not torch.equal(model.state_dict()["readout.weight"], half.state_dict()["readout.weight"])


@needs_vowels
def test_short_training_beats_chance(tmp_path):
    report = classify.train_classifier(
        TRAIN, TEST, tmp_path / "run", {"hidden": 32}, {"steps": 80, "plots": False}, progress=False
    )
    # chance is 1/9; always answering the largest test class scores 88/370 = 0.24
    assert report["test_accuracy"] > 0.75 and report["train_accuracy"] > 0.8
    assert sum(map(sum, report["confusion"])) == 370
    assert np.trace(np.array(report["confusion"])) == round(report["test_accuracy"] * 370)
    assert (tmp_path / "run" / "confusion.png").stat().st_size > 1000


@needs_vowels
def test_cli_train_json_predict_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "classify", "--train", str(TRAIN), "--test", str(TEST), "--out", str(out),
            "--hidden", "16", "--no-progress", "--no-plots"]  # fmt: skip
    assert main([*base, "--steps", "20", "--seed", "1", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # exactly one JSON object on stdout
    assert {"test_accuracy", "train_accuracy", "run_dir", "steps", "confusion", "classes"} <= set(report)
    assert report["run_dir"] == str(out) and report["steps"] == 20
    assert 0 <= report["test_accuracy"] <= 1 and (out / "confusion.png").exists()
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["hidden"] == 16 and saved["model"]["bidirectional"] is True
    assert saved["train"]["seed"] == 1

    assert main(["predict", str(out), str(TEST), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    assert predicted["series"] == 370 and len(predicted["predictions"]) == 370
    assert math.isclose(predicted["accuracy"], report["test_accuracy"])
    assert set(predicted["predictions"]) <= set(report["classes"])

    # unlabelled series: predictions only; text output is one label per line
    lines = TEST.read_text().splitlines()
    body = [line.rsplit(":", 1)[0] for line in lines[lines.index("@data") + 1 :][:5]]
    unlabelled = tmp_path / "new.ts"
    unlabelled.write_text("@dimensions 12\n@classLabel false\n@data\n" + "\n".join(body) + "\n")
    assert main(["predict", str(out), str(unlabelled)]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == predicted["predictions"][:5] and "accuracy" not in captured.err

    # resume to 30 steps; other settings must match
    assert main([*base, "--steps", "30", "--seed", "1", "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 30
    assert main([*base, "--steps", "40", "--seed", "2", "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err


@needs_vowels
def test_cli_mlp_baseline_with_epochs(tmp_path, capsys):
    out = tmp_path / "mlp"
    argv = ["train", "classify", "--train", str(TRAIN), "--test", str(TEST), "--out", str(out), "--model",
            "mlp", "--hidden", "32", "--epochs", "2", "--no-progress", "--no-plots"]  # fmt: skip
    assert main(argv) == 0
    assert "trained 17 steps" in capsys.readouterr().out  # ceil(2 * 270 / 32)
    config = json.loads((out / "config.json").read_text())["model"]
    assert config["model"] == "mlp" and config["max_len"] == 29  # the longest series, train or test


@needs_vowels
def test_cli_bad_files_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.ts"
    bad.write_text("@dimensions 12\n@classLabel true 1 2\n@data\n1,2:3,?:1\n")
    assert main(["train", "classify", "--train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert f"{bad}:4: expected 12 dimensions" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(TEST)]) == 2
    assert "not a run directory (no config.json); `predict` needs a classifier run" in capsys.readouterr().err
    other = tmp_path / "other.ts"
    other.write_text("@dimensions 12\n@classLabel true 1 x\n@data\n" + ",".join(["1"] * 3) + ":1\n")
    argv = ["train", "classify", "--train", str(TRAIN), "--test", str(other), "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "other.ts:4: expected 12 dimensions" in capsys.readouterr().err


@pytest.mark.slow
@needs_vowels
def test_japanese_vowels_default_reaches_98_5_percent(tmp_path):
    """The default of `rnnkit train classify`, 5 seeds: mean test accuracy >= 98.5% (docs/results.md)."""
    model_opts, train_opts = classify.options_from(None)
    accuracies = []
    for seed in range(5):
        report = classify.train_classifier(
            TRAIN, TEST, tmp_path / f"seed{seed}", model_opts, {**train_opts, "seed": seed, "plots": False},
            progress=False,
        )  # fmt: skip
        accuracies.append(report["test_accuracy"])
        assert report["elapsed_s"] < 120
    assert sum(accuracies) / 5 >= 0.985, accuracies


@needs_vowels
def test_diagnose_pca_of_a_classifier_run_coloured_by_class(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "classify", "--train", str(TRAIN), "--out", str(out), "--hidden", "8", "--steps", "5",
            "--no-progress", "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    png = tmp_path / "pca.png"
    assert main(["diagnose", "pca", "--run", str(out), "--data", str(TEST), "--out", str(png), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["series"] == 370 and report["drawn"] == 9 * 8 and len(report["classes"]) == 9
    assert 0 < sum(report["explained_variance"]) <= 1 and png.stat().st_size > 10_000
    assert report["layer"] == 1  # the top one of the default's 2 layers
    assert main(["diagnose", "pca", "--run", str(out), "--data", str(TEST), "--out", str(png), "--json",
                 "--layer", "0"]) == 0  # fmt: skip
    first = json.loads(capsys.readouterr().out)
    assert first["layer"] == 0 and first["explained_variance"] != report["explained_variance"]
    assert main(["diagnose", "pca", "--run", str(out), "--out", str(png), "--layer", "5"]) == 2
    assert "layer must be in [0, 2)" in capsys.readouterr().err
    assert main(["diagnose", "gates", "--run", str(out)]) == 2
    assert "supports `diagnose pca`" in capsys.readouterr().err


def test_pca_fitted_over_the_masked_steps_only():
    from rnnkit.diagnostics import pca

    torch.manual_seed(0)
    states = torch.randn(6, 3, 5)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[4:, 1] = False  # padding
    states[4:, 1] = 100.0  # would dominate the components if it were fitted
    proj, explained = pca(states, mask=mask)
    kept = states[mask]  # (16, 5)
    alone, explained_alone = pca(kept[:, None])
    torch.testing.assert_close(proj[mask].abs(), alone[:, 0].abs(), rtol=1e-4, atol=1e-5)  # up to sign
    torch.testing.assert_close(explained, explained_alone)
