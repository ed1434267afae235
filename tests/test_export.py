"""Export: ONNX graphs use ONNX's own LSTM/GRU/RNN operators and ONNX Runtime reproduces rnnkit; the
torch.export program reproduces eager; `rnnkit export` writes a loadable file and refuses bad input."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # in the [dev] and [export] extras
ort = pytest.importorskip("onnxruntime")

from rnnkit import ElmanCell, GRUCell, InputError, JordanCell, LSTMCell, Recurrent  # noqa: E402
from rnnkit import nn as rnn  # noqa: E402
from rnnkit.apps.lm import export as ex  # noqa: E402
from rnnkit.apps.lm.model import LanguageModel, LMConfig  # noqa: E402
from rnnkit.cells.base import state_fields  # noqa: E402
from rnnkit.cli import main  # noqa: E402
from rnnkit.generate import sample_tokens  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only contend
F, H = 3, 5


def session(proto) -> "ort.InferenceSession":
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the state defaults (initializers that are also inputs) draw a notice
    return ort.InferenceSession(proto.SerializeToString(), options)


def fields(state) -> tuple[torch.Tensor, ...]:
    return tuple(s.detach() for s in state_fields(state))


def run_onnx(sess, names, *tensors) -> list[np.ndarray]:
    return sess.run(None, {n: t.numpy() for n, t in zip(names, tensors, strict=False)})


# -- layers: rnnkit.nn.LSTM / GRU / RNN ------------------------------------------------------------------

LAYOUTS = [  # (num_layers, bidirectional, batch_first)
    (1, False, False),
    (2, True, True),
    (2, False, True),
    (1, True, False),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda v: "L{}-bi{}-bf{}".format(*v))
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_onnx_layer_uses_the_native_op_and_matches(kind, layout):
    num_layers, bidirectional, batch_first = layout
    torch.manual_seed(0)
    model = getattr(rnn, kind)(
        F, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first
    )
    proto = ex.onnx_model(model)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count(kind) == num_layers  # one ONNX operator per layer (both directions in one)
    assert not {"Loop", "Scan"} & set(ops)
    assert ex.check_onnx(model) == kind
    sess = session(proto)
    names = [s.name for s in ex.signature(model)[0]]
    K = num_layers * (2 if bidirectional else 1)
    for T, B in [(6, 4), (1, 1)]:  # neither is the size it was traced with (3, 2)
        x = torch.randn((B, T, F) if batch_first else (T, B, F))
        state = tuple(torch.randn(K, B, H) for _ in names[1:])
        with torch.no_grad():
            y, final = model(x, state if kind == "LSTM" else state[0])
            y0, final0 = model(x)
        for got, want in zip(run_onnx(sess, names, x, *state), (y, *fields(final)), strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)
        # the state inputs are optional: zeros by default
        for got, want in zip(run_onnx(sess, names, x), (y0, *fields(final0)), strict=True):
            np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)


REFUSED = {
    "LSTMCell(peephole=True)": lambda: Recurrent(LSTMCell(F, H, peephole=True)),
    "LSTMCell(layer_norm=True)": lambda: Recurrent(LSTMCell(F, H, layer_norm=True)),
    "LSTMCell(proj_size=2)": lambda: rnn.LSTM(F, H, proj_size=2),
    "GRUCell(reset_after=False)": lambda: Recurrent(GRUCell(F, H, reset_after=False), num_layers=2),
    "JordanCell()": lambda: Recurrent(JordanCell(F, H, 2)),
    "ElmanCell(nonlinearity='sigmoid')": lambda: Recurrent(ElmanCell(F, H, "sigmoid")),
    "ElmanCell(readout_size=2)": lambda: Recurrent(ElmanCell(F, H, readout_size=2)),
    "merge='sum'": lambda: Recurrent(GRUCell(F, H), bidirectional=True, merge="sum"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_onnx_refuses_what_onnx_ops_do_not_compute_naming_it(name, tmp_path):
    model = REFUSED[name]()
    with pytest.raises(
        InputError, match=r"cannot export to ONNX: .*" + name.replace("(", r"\(").replace(")", r"\)")
    ):
        ex.onnx_model(model)
    target = tmp_path / "old.onnx"
    target.write_bytes(b"old")
    with pytest.raises(InputError, match="format='torch'"):
        ex.export(model, target, "onnx")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["old.onnx"]


def test_export_mode_restores_impl_and_training_mode():
    model = LanguageModel(LMConfig(vocab_size=7, hidden=4))
    model.train()
    with ex.export_mode(model, "native"):
        assert model.rnn.impl == "native" and not model.training
    assert model.rnn.impl == "auto" and model.training
    with pytest.raises(RuntimeError), ex.export_mode(model, "traced"):
        raise RuntimeError("boom")
    assert model.rnn.impl == "auto" and model.training


# -- the language model ------------------------------------------------------------------------------


@pytest.mark.parametrize("cell,layers,tie", [("lstm", 2, False), ("gru", 1, True), ("rnn", 2, False)])
def test_onnx_language_model_gives_rnnkit_probabilities_and_state(cell, layers, tie):
    torch.manual_seed(1)
    V = 11
    model = LanguageModel(LMConfig(vocab_size=V, cell=cell, hidden=8, layers=layers, tie_weights=tie)).eval()
    proto = ex.onnx_model(model)
    assert {"LSTM": cell == "lstm", "GRU": cell == "gru", "RNN": cell == "rnn"} == {
        op: op in {n.op_type for n in proto.graph.node} for op in ("LSTM", "GRU", "RNN")
    }
    sess = session(proto)
    names = [s.name for s in ex.signature(model)[0]]
    assert names == (["tokens", "h0", "c0"] if cell == "lstm" else ["tokens", "h0"])
    tokens = torch.randint(0, V, (4, 7))  # (B, T)
    state = tuple(torch.randn_like(f) for f in fields(model.init_state(4)))
    with torch.no_grad():
        logits, final = model(tokens.t(), state[0] if cell != "lstm" else type(model.init_state(1))(*state))
    logits_onnx, *final_onnx = run_onnx(sess, names, tokens, *state)
    probs = torch.softmax(logits.transpose(0, 1), -1)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits_onnx), -1), probs, rtol=0, atol=1e-5)
    for got, want in zip(final_onnx, fields(final), strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)


def test_greedy_generation_from_onnx_runtime_equals_rnnkit():
    """The prompt once, then one token at a time with the state fed back: ONNX Runtime == rnnkit."""
    torch.manual_seed(2)
    model = LanguageModel(LMConfig(vocab_size=13, cell="lstm", hidden=16, layers=2)).eval()
    sess = session(ex.onnx_model(model))
    prompt = torch.tensor([[3, 1, 4, 1, 5]])  # (1, T)
    logits, *state = sess.run(None, {"tokens": prompt.numpy()})  # no state: starts from zeros
    generated = []
    for _ in range(8):
        token = int(logits[0, -1].argmax())
        generated.append(token)
        logits, *state = sess.run(None, {"tokens": np.array([[token]]), "h0": state[0], "c0": state[1]})
    expected = sample_tokens(model, prompt[0], 8, greedy=True)
    assert generated == expected.tolist()


# -- torch.export --------------------------------------------------------------------------------------


def test_torch_export_takes_cells_onnx_cannot():
    """A bidirectional, batch-first layer of peephole LSTMs: the scan keeps T and B dynamic."""
    torch.manual_seed(4)
    model = Recurrent(LSTMCell(F, H, peephole=True, proj_size=2), bidirectional=True, batch_first=True)
    program = ex.torch_program(model).module()
    for B, T in [(2, 7), (1, 1)]:
        x = torch.randn(B, T, F)
        state = (torch.randn(2, B, 2), torch.randn(2, B, H))
        with torch.no_grad():
            y, final = model(x, state)
            got = program(x, *state)
        torch.testing.assert_close(got[0], y, rtol=0, atol=1e-5)
        for g, w in zip(got[1:], fields(final), strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_traced_runner_equals_the_reference_loop_with_lengths():
    """impl="traced" (what torch.export traces) computes exactly run_cell: padded lengths, both directions."""
    torch.manual_seed(5)
    scan = Recurrent(GRUCell(F, H, reset_after=False), bidirectional=True, impl="traced").double()
    ref = Recurrent(GRUCell(F, H, reset_after=False), bidirectional=True, impl="reference").double()
    ref.load_state_dict(scan.state_dict())
    x, lengths = torch.randn(6, 3, F, dtype=torch.float64), torch.tensor([6, 2, 4])
    h0 = torch.randn(2, 3, H, dtype=torch.float64)
    with torch.no_grad():  # eager scan compiles its body; it is meant for tracing
        y, h = scan(x, h0, lengths=lengths)
        y_ref, h_ref = ref(x, h0, lengths=lengths)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)


# -- the command line ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained character LM (3 steps), as `rnnkit train lm` writes it."""
    root = tmp_path_factory.mktemp("export")
    corpus = root / "corpus.txt"
    corpus.write_text("the cat sat on the mat; the dog sat on the log.\n" * 60)
    argv = ["train", "lm", "--data", str(corpus), "--out", str(root / "run"), "--steps", "3",
            "--hidden", "16", "--batch", "4", "--seq-len", "16", "--no-progress", "--no-plots"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return root / "run"


def test_cli_export_onnx_json_and_the_file_runs(run_dir, tmp_path, capsys):
    from rnnkit.apps.lm import load_language_model

    out = tmp_path / "lm.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["format"] == "onnx" and report["opset"] == ex.OPSET
    assert report["size"] == out.stat().st_size and report["run_dir"] == str(run_dir)
    V = load_language_model(run_dir).model.config.vocab_size
    assert report["inputs"][0] == {"name": "tokens", "shape": ["batch", "time"], "dtype": "int64"}
    assert report["outputs"][0] == {"name": "logits", "shape": ["batch", "time", V], "dtype": "float32"}
    assert [s["name"] for s in report["inputs"]] == ["tokens", "h0", "c0"]
    assert [s["name"] for s in report["outputs"]] == ["logits", "hn", "cn"]
    assert [p.name for p in tmp_path.iterdir()] == ["lm.onnx"]  # no temporary file left behind
    model = load_language_model(run_dir).model
    tokens = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        logits, _ = model(tokens.t())
    got = session(onnx.load(out)).run(None, {"tokens": tokens.numpy()})[0]
    np.testing.assert_allclose(got, logits.transpose(0, 1).numpy(), rtol=0, atol=1e-5)
    assert main(["export", str(run_dir), "--out", str(out)]) == 0  # text report; onnx is the default
    assert f"{out}: onnx opset {ex.OPSET}" in capsys.readouterr().out


def test_cli_export_torch_program_equals_eager(run_dir, tmp_path, capsys):
    from rnnkit.apps.lm import load_language_model

    out = tmp_path / "lm.pt2"
    assert main(["export", str(run_dir), "--format", "torch", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "torch" and report["opset"] is None and report["size"] == out.stat().st_size
    program = torch.export.load(out).module()
    model = load_language_model(run_dir).model
    V = model.config.vocab_size
    for B, T in [(3, 5), (1, 1)]:  # dynamic batch and time, one step included
        tokens = torch.randint(0, V, (B, T))
        state = tuple(torch.randn_like(f) for f in fields(model.init_state(B)))
        with torch.no_grad():
            logits, final = model(tokens.t(), type(model.init_state(1))(*state))
            got = program(tokens, *state)
        torch.testing.assert_close(got[0], logits.transpose(0, 1), rtol=0, atol=1e-5)
        for g, w in zip(got[1:], fields(final), strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-5)


def test_cli_export_refuses_bad_arguments(run_dir, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "x.onnx")
    with pytest.raises(SystemExit) as e:
        main(["export", str(run_dir), "--format", "tflite", "--out", out])
    assert e.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nope"), "--out", out]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(tmp_path / "no" / "x.onnx")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err

    # a model whose cell ONNX's operators do not compute: refused with the cell's name
    from rnnkit.apps.lm import run as lm

    real = lm.load_language_model

    def peephole(run, which="best"):
        trained = real(run, which)
        trained.model.rnn = Recurrent(LSTMCell(16, 16, peephole=True))
        return trained

    monkeypatch.setattr(lm, "load_language_model", peephole)
    assert main(["export", str(run_dir), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "cannot export to ONNX: LSTMCell(peephole=True)" in err and "format='torch'" in err
    assert not Path(out).exists()


def test_cli_formats_are_the_library_formats():
    from rnnkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    formats = next(a for a in sub.choices["export"]._actions if a.dest == "format")
    assert tuple(formats.choices) == ex.FORMATS
