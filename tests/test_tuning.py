"""Measured dispatch (kernels/tuning.py): the tuning file, the choice, and the static rules when off.

The rest of the suite runs with measuring off (conftest.py sets RNNKIT_TUNE=0); these tests switch
it on against a file of their own. Times are never asserted: a fake ``measure`` decides where the
outcome matters.
"""

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import rnnkit.nn as rnn
from rnnkit import GRUCell, LSTMCell, Recurrent
from rnnkit.cli import main
from rnnkit.kernels import dispatch, tuning
from rnnkit.kernels.fused import run_fused
from rnnkit.layers.recurrent import run_cell

SRC = str(Path(tuning.__file__).parents[2])


@pytest.fixture
def tuned(monkeypatch, tmp_path):
    """Measuring on, a tuning file of the test's own, a tiny budget, nothing remembered."""
    file = tmp_path / "tuning.json"
    monkeypatch.setenv("RNNKIT_TUNE", "1")
    monkeypatch.setenv("RNNKIT_TUNE_FILE", str(file))
    monkeypatch.setenv("RNNKIT_TUNE_BUDGET", "0.01")
    tuning.forget()
    yield file
    tuning.forget()


def fake_times(monkeypatch, fastest: str) -> list:
    """Replace the timing: ``fastest`` takes 1 ms, the others 2 ms; returns the list of calls."""
    calls = []

    def measure(cells, cands, x, budget_s=None):
        calls.append([c.name for c in cands])
        return {c.name: (1e-3 if c.name == fastest else 2e-3) for c in cands}

    monkeypatch.setattr(tuning, "measure", measure)
    return calls


def gru_case(H=8, B=3, T=5):
    layer = rnn.GRU(H, H)
    return layer, layer.layer_cells(), torch.randn(T, B, H)


def test_round_trip(tuned):
    cases = {"case a": {"choice": "fused", "ms": {"fused": 1.0, "native": 2.0}}}
    tuning.write_cases(cases)
    assert tuning.read_cases() == cases
    data = json.loads(tuned.read_text())
    assert data["format"] == tuning.FORMAT and data["machine_id"] == tuning.machine_id()
    assert data["machine"]["torch"] == torch.__version__
    tuning.write_cases({"case b": {"choice": "native"}})  # merged with what is there
    assert set(tuning.read_cases()) == {"case a", "case b"}
    assert not list(tuned.parent.glob("*.tmp"))  # the temporary file was moved into place


def test_default_path_is_per_machine_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("RNNKIT_TUNE_FILE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert tuning.path() == tmp_path / "rnnkit" / "tuning" / f"{tuning.machine_id()}.json"


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", json.dumps({"format": "other", "version": 1, "cases": {}}), "\x00\xff"],
)
def test_corrupt_file_is_ignored_with_one_warning_and_replaced(tuned, monkeypatch, content):
    tuned.write_text(content)
    with pytest.warns(RuntimeWarning, match="ignoring") as record:
        assert tuning.read_cases() == {}
        assert tuning.read_cases() == {}
    assert len(record) == 1
    calls = fake_times(monkeypatch, "fused-python")
    layer, cells, x = gru_case()
    layer(x)  # measures (the file had nothing usable) and writes a good file over the bad one
    assert len(calls) == 1
    assert list(tuning.read_cases().values())[0]["choice"] == "fused-python"


def test_foreign_file_is_ignored(tuned):
    tuning.write_cases({"case a": {"choice": "fused"}})
    data = json.loads(tuned.read_text())
    data["machine_id"] = "someone-else"
    tuned.write_text(json.dumps(data))
    with pytest.warns(RuntimeWarning, match="another machine"):
        assert tuning.read_cases() == {}


def test_two_processes_writing_at_once_lose_nothing(tuned):
    script = textwrap.dedent(
        """
        import sys
        import torch
        from rnnkit.kernels import tuning
        who = sys.argv[1]
        torch.set_num_threads(int(sys.argv[2]))  # the machine key holds the thread count: match ours
        for i in range(40):
            tuning.write_cases({f"{who} {i}": {"choice": "fused", "ms": {"fused": float(i)}}})
        """
    )
    env = {"PYTHONPATH": SRC, "RNNKIT_TUNE_FILE": str(tuned), "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, who, str(torch.get_num_threads())], env=env, stderr=subprocess.PIPE
        )
        for who in ("a", "b")
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    cases = tuning.read_cases()
    assert set(cases) == {f"{who} {i}" for who in "ab" for i in range(40)}


def test_off_gives_the_static_rules_and_measures_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_TUNE", "0")
    monkeypatch.setenv("RNNKIT_TUNE_FILE", str(tmp_path / "t.json"))
    tuning.forget()
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured with tuning off"))
    lstm = rnn.LSTM(8, 8)
    chosen = dispatch.plan(lstm.layer_cells(), "concat", "auto", run_cell, torch.randn(5, 3, 8))
    assert chosen.native_op == "lstm"
    ln = Recurrent(LSTMCell(8, 8, layer_norm=True))
    chosen = dispatch.plan(ln.layer_cells(), "concat", "auto", run_cell, torch.randn(5, 3, 8))
    assert chosen.native_op is None and chosen.runners == (run_fused,)
    # a big GRU step when training: the fused kernel by FUSED_WINS' thresholds
    gru = rnn.GRU(512, 512)
    x = torch.randn(5, 64, 512, requires_grad=True)
    assert dispatch.plan(gru.layer_cells(), "concat", "auto", run_cell, x).runners == (run_fused,)
    gru(x)
    assert not (tmp_path / "t.json").exists()


def test_choice_is_measured_once_then_read_back(tuned, monkeypatch):
    calls = fake_times(monkeypatch, "fused-python")
    layer, cells, x = gru_case()
    expected = layer(x)[0]
    assert calls == [["native", "fused", "fused-python"]] or calls == [["native", "fused"]]
    layer(x)  # remembered in this process
    assert len(calls) == 1
    tuning.forget()  # as a new process: read from the file, not measured
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured a recorded case"))
    chosen = dispatch.plan(cells, "concat", "auto", run_cell, x)
    assert chosen.native_op is None  # the recorded fused path, not torch's op
    torch.testing.assert_close(layer(x)[0], expected)


def test_near_tie_keeps_the_static_path(tuned, monkeypatch):
    def measure(cells, cands, x, budget_s=None):
        return {c.name: (1.00e-3 if c.name == "fused" else 1.02e-3) for c in cands}

    monkeypatch.setattr(tuning, "measure", measure)
    layer, cells, x = gru_case()  # small: the static rules take torch's op
    assert dispatch.plan(cells, "concat", "auto", run_cell, x).native_op == "gru"


def test_real_measurement_leaves_rng_and_grads_alone(tuned):
    layer = Recurrent(GRUCell(6, 8, reset_after=False), num_layers=2, bidirectional=True)
    x = torch.randn(7, 3, 6, requires_grad=True)
    rng = torch.get_rng_state()
    y, _ = layer(x)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in layer.parameters())
    (entry,) = tuning.read_cases().values()
    assert entry["choice"] in entry["ms"] and set(entry["ms"]) >= {"fused", "reference"}
    with torch.no_grad():
        ref = Recurrent(GRUCell(6, 8, reset_after=False), num_layers=2, bidirectional=True, impl="reference")
        ref.load_state_dict(layer.state_dict())
        torch.testing.assert_close(y, ref(x)[0])


def test_cases_differ_by_mode_batch_bucket_and_dtype(tuned, monkeypatch):
    fake_times(monkeypatch, "native")
    layer, cells, x = gru_case(B=3)
    keys = {tuning.case_key(cells, "concat", x)}
    keys.add(tuning.case_key(cells, "concat", torch.randn(5, 4, 8)))  # same bucket as B=3
    assert len(keys) == 1
    keys.add(tuning.case_key(cells, "concat", torch.randn(5, 5, 8)))
    keys.add(tuning.case_key(cells, "concat", x.bfloat16()))
    with torch.no_grad():
        keys.add(tuning.case_key(cells, "concat", x))
    assert len(keys) == 4


def test_no_measuring_while_tracing_distributed_or_stateful(tuned, monkeypatch):
    x = torch.randn(5, 3, 8)
    assert tuning.applies(x, None)
    assert not tuning.applies(x, [object()])  # state dropout / zoneout / resets: the forward's masks
    assert not tuning.applies(x[:1], None)  # one step: generation's path
    monkeypatch.setattr(tuning, "_distributed", lambda: True)
    assert not tuning.applies(x, None)
    monkeypatch.undo()
    monkeypatch.setenv("RNNKIT_TUNE", "1")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not tuning.applies(x, None)


def test_torch_compile_does_not_measure(tuned, monkeypatch):
    monkeypatch.setattr(tuning, "measure", lambda *a, **k: pytest.fail("measured while tracing"))
    layer = rnn.GRU(4, 4)
    x = torch.randn(5, 2, 4)
    y = torch.compile(lambda v: layer(v)[0], backend="eager")(x)
    assert tuning.read_cases() == {}
    monkeypatch.setenv("RNNKIT_TUNE", "0")
    torch.testing.assert_close(y, layer(x)[0])


def test_cli_tune(tuned, capsys):
    rc = main(["tune", "--cell", "gru", "lstm-layernorm", "--batch", "2", "--hidden", "8", "--mode", "train",
               "--seq-len", "6", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["cell"] for r in out["rows"]] == ["gru", "lstm-layernorm"]
    for row in out["rows"]:
        assert row["choice"] in row["ms"] and row["static"] in row["ms"]
    assert len(tuning.read_cases()) == 2
    assert main(["tune", "--cell", "nope", "--batch", "2", "--hidden", "8"]) == 2
    assert "cell must be one of" in capsys.readouterr().err


def test_cli_tune_refuses_when_off(monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_TUNE", "0")
    assert main(["tune", "--batch", "2"]) == 2
    assert "RNNKIT_TUNE=0" in capsys.readouterr().err


def test_silent_when_file_is_fine(tuned, monkeypatch):
    fake_times(monkeypatch, "native")
    layer, cells, x = gru_case()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)
        tuning.forget()
        layer(x)
