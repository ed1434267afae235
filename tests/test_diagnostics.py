"""Diagnostics and synthetic tasks: each number checked against a case worked by hand or against torch."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnkit import ElmanCell, GRUCell, LSTMCell, Recurrent
from rnnkit.apps.synthetic.model import TaskModel
from rnnkit.cli import main
from rnnkit.data import synthetic as tasks
from rnnkit.diagnostics import gate_statistics, gradient_flow, jacobian_spectrum, pca, trace
from rnnkit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")


# -- tasks and their baselines --------------------------------------------------------------------------


def test_adding_problem_targets_and_baseline():
    x, y = tasks.adding_problem(4000, 50, seed=1)
    assert x.shape == (50, 4000, 2) and y.shape == (4000, 1)
    markers = x[..., 1]
    assert (markers.sum(0) == 2).all()
    assert (markers[:25].sum(0) == 1).all() and (markers[25:].sum(0) == 1).all()  # one in each half
    torch.testing.assert_close(y[:, 0], (x[..., 0] * markers).sum(0))
    assert float(((y - 1) ** 2).mean()) == pytest.approx(tasks.ADDING_BASELINE_MSE, abs=0.01)


def test_copy_memory_layout_and_baseline():
    x, y = tasks.copy_memory(3, delay=5, seed=0)
    assert x.shape == y.shape == (25, 3)
    assert ((x[:10] >= 1) & (x[:10] <= 8)).all() and (x[10:14] == 0).all() and (x[14] == 9).all()
    assert (x[15:] == 0).all() and (y[:15] == 0).all() and torch.equal(y[15:], x[:10])
    assert tasks.copy_memory_baseline(100) == pytest.approx(10 * math.log(8) / 120)


def test_binary_addition_and_parity_by_hand():
    x, y = tasks.binary_addition(50, 6, seed=2)
    weights = 2 ** torch.arange(6)
    a, b = (x[..., 0].long() * weights[:, None]).sum(0), (x[..., 1].long() * weights[:, None]).sum(0)
    assert torch.equal((y * weights[:, None]).sum(0), a + b)
    bits, running = tasks.parity(7, 9, seed=3)
    for t in range(9):
        assert torch.equal(running[t], bits[: t + 1, :, 0].long().sum(0) % 2)


def test_sine_waves_shift_by_one_step():
    x, y = tasks.sine_waves(5, 30, seed=4)
    assert torch.equal(x[1:], y[:-1])
    assert 0 < tasks.sine_baseline_mse(x, y) < 0.2


# -- trace, gradient flow, Jacobians ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell", [LSTMCell(3, 5, peephole=True), GRUCell(3, 5, reset_after=False), ElmanCell(3, 5)]
)
def test_trace_equals_the_layer(cell):
    torch.manual_seed(0)
    layer = Recurrent(cell, num_layers=2).double()
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    y, final = layer(x)
    t = trace(layer, x)
    torch.testing.assert_close(t.output, y)
    top = t.states[1][-1]
    torch.testing.assert_close(
        top.h if hasattr(top, "h") else top, final[1] if not hasattr(final, "h") else final.h[1]
    )


def linear_rnn(w: float) -> Recurrent:
    cell = ElmanCell(1, 1, lambda v: v, bias=False)
    with torch.no_grad():
        cell.weight_hh.fill_(w)
        cell.weight_ih.fill_(1.0)
    return Recurrent(cell).double()


def test_gradient_flow_of_a_scalar_linear_rnn_is_w_to_the_distance():
    # h_t = w h_{t-1} + x_t, L = h_{T-1}: dL/dh_t = w^(T-1-t)
    T, w = 6, 0.5
    flow = gradient_flow(linear_rnn(w), torch.ones(T, 1, 1, dtype=torch.float64), lambda y: y[-1].sum())
    assert flow["norms"][0] == pytest.approx([w ** (T - 1 - t) for t in range(T)])
    assert flow["ratio"][0] == pytest.approx(w ** (T - 1))


def test_jacobians_of_a_tanh_rnn_match_the_closed_form():
    # J_t = diag(1 - h_t^2) W_hh for h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)
    torch.manual_seed(0)
    layer = Recurrent(ElmanCell(3, 4)).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    r = jacobian_spectrum(layer, x, sample=1, top=4)
    h = trace(layer, x[:, 1:2]).hidden[0]
    W = layer.layer_cells()[0].weight_hh.detach()
    product = torch.eye(4, dtype=torch.float64)
    for t in range(5):
        J = torch.diag(1 - h[t][0].detach() ** 2) @ W
        product = J @ product
        assert r["singular_values"][t] == pytest.approx(torch.linalg.svdvals(J).tolist())
        assert r["product_norm"][t] == pytest.approx(float(torch.linalg.matrix_norm(product, ord=2)))
    assert linear_rnn(0.9) is not None
    lin = jacobian_spectrum(linear_rnn(0.9), torch.ones(4, 1, 1, dtype=torch.float64))
    assert lin["product_norm"] == pytest.approx([0.9, 0.81, 0.729, 0.6561])


def test_lstm_jacobian_covers_h_and_c():
    torch.manual_seed(0)
    r = jacobian_spectrum(Recurrent(LSTMCell(2, 3)), torch.randn(4, 1, 2), top=10)
    assert len(r["singular_values"][0]) == 6  # the state (h, c) has 2H = 6 numbers


def test_gate_saturation_counts():
    cell = LSTMCell(2, 3)
    with torch.no_grad():
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
        cell.bias_ih[3:6] = 10.0  # forget gate always ~1: saturated
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
    stats = gate_statistics(Recurrent(cell), torch.randn(6, 2, 2))[0]
    assert stats["forget"]["saturated"] == 1.0 and stats["input"]["saturated"] == 0.0
    assert stats["input"]["mean"] == pytest.approx(0.5)
    assert stats["forget"]["saturated_per_unit"] == [1.0, 1.0, 1.0]
    assert sum(stats["cell"]["histogram"]) == 6 * 2 * 3
    assert gate_statistics(Recurrent(ElmanCell(2, 3)), torch.randn(4, 1, 2)) == [{}]


def test_pca_of_points_on_a_line():
    t = torch.linspace(-1, 1, 20)
    states = torch.stack([t, 2 * t, -t], -1)[:, None, :].repeat(1, 2, 1)  # (20, 2, 3), rank one
    proj, explained = pca(states)
    assert proj.shape == (20, 2, 2)
    assert explained.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    with pytest.raises(InputError, match=r"states must be \(T, B, H\)"):
        pca(torch.zeros(3, 4))


def test_diagnostics_refuse_bidirectional_layers():
    with pytest.raises(InputError, match="unidirectional"):
        trace(Recurrent(GRUCell(2, 3), bidirectional=True), torch.zeros(3, 1, 2))


def test_irnn_starts_from_the_identity():
    model = TaskModel("adding", "irnn", hidden=8, layers=2)
    for cell in model.rnn.layer_cells():
        assert torch.equal(cell.weight_hh, torch.eye(8)) and cell.bias_hh.abs().sum() == 0
    flow = gradient_flow(model.rnn, torch.rand(10, 1, 2) + 0.1, lambda y: y[-1].sum())
    assert all(n > 0 for n in flow["norms"][0])


# -- the command ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gradients", "jacobian", "gates", "pca"])
def test_diagnose_command_on_a_fresh_task_model(tmp_path, capsys, kind):
    out = tmp_path / f"{kind}.png"
    argv = ["diagnose", kind, "--task", "adding", "--cell", "gru", "--hidden", "8", "--length", "20",
            "--batch", "4", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == kind and out.read_bytes()[:4] == b"\x89PNG"
    if kind == "gradients":
        assert len(report["norms"][0]) == 20 and report["ratio"][0] < 1
    if kind == "gates":
        assert set(report["gates"]) == {"reset", "update", "new"}


def test_diagnose_command_errors(tmp_path, capsys):
    assert (
        main(["diagnose", "gates", "--task", "adding", "--cell", "rnn", "--out", str(tmp_path / "g.png")])
        == 2
    )
    assert "gates need an LSTM or GRU layer" in capsys.readouterr().err
    assert main(["diagnose", "pca", "--out", str(tmp_path / "p.png")]) == 2
    assert "give a trained run (--run DIR) or a task" in capsys.readouterr().err
    assert main(["diagnose", "units", "--task", "adding", "--out", str(tmp_path / "u.png")]) == 2
    assert "units draws activations over a text" in capsys.readouterr().err


def test_diagnose_units_on_a_language_model_run(tmp_path, capsys):
    from rnnkit.apps.lm import train_language_model

    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    options = {"steps": 3, "batch_size": 2, "seq_len": 8, "plots": False}
    train_language_model(str(corpus), tmp_path / "run", {"hidden": 8}, options, progress=False)
    out = tmp_path / "units.png"
    assert main(["diagnose", "units", "--run", str(tmp_path / "run"), "--text", "the fox.", "--units", "1,3",
                 "--out", str(out), "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["units"] == [1, 3] and out.stat().st_size > 1000
    assert main(["diagnose", "units", "--run", str(tmp_path / "run"), "--units", "99", "--text", "the",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "units must be in [0, 8), got [99]" in capsys.readouterr().err


# -- training on the tasks ------------------------------------------------------------------------------


def test_train_task_learns_the_adding_problem_and_reports_the_flow(tmp_path, capsys):
    argv = ["train", "task", "--task", "adding", "--cell", "gru", "--hidden", "16", "--length", "10",
            "--steps", "250", "--lr", "1e-2", "--eval-every", "250", "--out", str(tmp_path / "run"),
            "--no-progress", "--no-plots", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test"]["loss"] < 0.25 * report["baseline"]["mse"]
    assert len(report["gradient_norms_before"]) == 10
    assert report["gradient_ratio_after"] > report["gradient_ratio_before"]  # training opened the path


def test_synthetic_training_resumes_exactly(tmp_path):
    from rnnkit.apps.synthetic import train_synthetic

    options = {
        "steps": 12,
        "batch_size": 8,
        "lr": 1e-2,
        "checkpoint_every": 6,
        "eval_every": 6,
        "plots": False,
    }
    shape = {"cell": "lstm", "hidden": 8, "length": 6, "progress": False}
    straight = train_synthetic("parity", tmp_path / "a", train_options=options, **shape)
    train_synthetic("parity", tmp_path / "b", train_options={**options, "steps": 6}, **shape)
    resumed = train_synthetic("parity", tmp_path / "b", train_options=options, resume=True, **shape)
    assert resumed["test"] == straight["test"] and resumed["steps"] == 12


# -- teacher forcing and free running on an autoregressive task -----------------------------------------


def test_feed_back_reads_the_truth_or_its_own_predictions():
    torch.manual_seed(0)
    model = TaskModel("sine", "gru", 8)
    x, _ = tasks.sine_waves(3, 12, seed=1)  # (T, B, 1)
    truth = torch.ones(12, 3, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(model.feed_back(x, truth), model(x), rtol=1e-5, atol=1e-6)
        truth[4:] = False  # free-running after 4 true values
        free = model.feed_back(x, truth)
        own = torch.cat([x[:4], free[3:-1]])  # what it read: 4 true values, then its own predictions
        torch.testing.assert_close(free, model(own), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(free, model(x))


def test_scheduled_sampling_feeds_predictions_with_the_right_probability():
    torch.manual_seed(0)
    model = TaskModel("sine", "lstm", 8)
    x, _ = tasks.sine_waves(400, 6, seed=2)
    seen = []
    step = model.rnn.step
    model.rnn.step = lambda inputs, state: (seen.append(inputs), step(inputs, state))[1]
    model(x, teacher_forcing=0.7)
    read_truth = torch.stack([torch.isclose(s, x[t]).all(-1) for t, s in enumerate(seen)])  # (T, B)
    assert read_truth[0].all()
    assert read_truth[1:].float().mean().item() == pytest.approx(0.7, abs=0.04)
    with pytest.raises(InputError, match="parity task's inputs are not the model's predictions"):
        TaskModel("parity", "lstm", 8)(tasks.parity(2, 5, seed=0)[0], teacher_forcing=0.5)


def test_sine_validation_reports_the_free_running_mse(tmp_path):
    from rnnkit.apps.synthetic import train_synthetic

    options = {"steps": 30, "batch_size": 16, "lr": 1e-2, "eval_every": 30, "plots": False,
               "teacher_forcing": "linear"}  # fmt: skip
    report = train_synthetic("sine", tmp_path / "r", cell="gru", hidden=16, length=30,
                             train_options=options, progress=False)  # fmt: skip
    assert 0 < report["test"]["loss"] < report["test"]["free_mse"]
    lines = [json.loads(s) for s in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["teacher_forcing"] for r in lines if "teacher_forcing" in r][-1] < 0.1
    with pytest.raises(InputError, match="needs a task whose next input is its target"):
        train_synthetic("adding", tmp_path / "s", train_options=options, progress=False)


def test_delayed_recall_stream_by_hand():
    ids = tasks.delayed_recall(3, 4, seed=0, symbols=8, fillers=4).view(3, 6)
    cue = tasks.recall_cue(8, 4)
    assert cue == 12
    assert (ids[:, 4] == cue).all() and torch.equal(ids[:, 0], ids[:, 5])
    assert ((ids[:, 0] >= 4) & (ids[:, 0] < 12)).all() and (ids[:, 1:4] < 4).all()
