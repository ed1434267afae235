"""The compiled loops (kernels/csrc/scan.cpp via kernels/compiled.py) against the reference loop over
``cell.step`` and the Python loops of kernels/fused.py, and the fallback when they cannot run.

The extension is built once per machine (~30-60 s with g++ on 2 cores, cached in TORCH_EXTENSIONS_DIR)
and loaded once per process; these tests skip only where there is no C++ compiler at all."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch
from test_fused import FUSED_CELLS, fields, pair, state_like
from test_fused import run as run_once
from test_regularization import assert_same
from test_regularization import pair as reg_pair
from test_regularization import random_state as reg_state
from test_regularization import run as reg_run

from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, Recurrent
from rnnkit.kernels import compiled, dispatch

HAS_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None
needs_build = pytest.mark.skipif(
    not HAS_COMPILER, reason="no C++ compiler here: the compiled kernels cannot be built"
)


@pytest.fixture(autouse=True)
def extension_on(monkeypatch):
    monkeypatch.delenv(compiled.ENV_OFF, raising=False)


@pytest.fixture
def built():
    if not compiled.available():  # a compiler is there, so the build must work
        pytest.fail(f"the compiled kernels did not build: {compiled.failure()}")


def run(model, x, state, lengths):
    """test_fused.run with fresh gradients, so one model can run twice (compiled, then Python loops)."""
    model.zero_grad(set_to_none=True)
    return run_once(model, x, state, lengths)


def kernel_of(name: str) -> str:
    return name.split("_")[0]


def took(kernel: str, path: str, before: int) -> bool:
    return compiled.PATHS[kernel, path] > before


@needs_build
@pytest.mark.parametrize(
    "name,layers,bidirectional,with_lengths,with_state",
    [(n, 1, False, False, False) for n in FUSED_CELLS] + [(n, 2, True, True, True) for n in FUSED_CELLS]
    + [(n, 1, True, True, False) for n in ("gru_before", "lstm_layernorm_all", "jordan", "elman_relu")],
)  # fmt: skip
def test_compiled_equals_reference_float64(built, name, layers, bidirectional, with_lengths, with_state):
    ref, fast = pair(FUSED_CELLS[name], num_layers=layers, bidirectional=bidirectional)
    T, B = 6, 3
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 3, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 5]) if with_lengths else None
    state = state_like(ref, layers * (2 if bidirectional else 1), B, gen) if with_state else None
    before = compiled.PATHS[kernel_of(name), "compiled"]
    y_f, f_f, g_f = run(fast, x, state, lengths)
    assert took(kernel_of(name), "compiled", before)
    y_r, f_r, g_r = run(ref, x, state, lengths)
    torch.testing.assert_close(y_f, y_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(f_f, f_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert g_f.keys() == g_r.keys()
    for key in g_r:
        torch.testing.assert_close(g_f[key], g_r[key], rtol=1e-9, atol=1e-9, msg=f"grad {key}")


@needs_build
@pytest.mark.parametrize("name", list(FUSED_CELLS))
def test_compiled_equals_python_fused_float32(built, monkeypatch, name):
    """float32 with oneDNN's packed products: the compiled loops against the Python loops of fused.py
    and the reference loop: 1e-5 values, 1e-4 gradients. Layer norm over 4 units is ill-conditioned in
    float32 (as in test_fused), so there the compiled loops are held to the float64 truth instead: no
    worse than 8x the Python loops' error, or the bounds relative to the values' scale."""
    ref, fast = pair(FUSED_CELLS[name], dtype=torch.float32, num_layers=2, bidirectional=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 8, 3, generator=gen)
    lengths = torch.randint(1, 21, (8,), generator=gen)
    state = tuple(s.float() for s in fields(state_like(ref, 4, 8, gen)))
    state = state if len(state) > 1 else state[0]
    before = compiled.PATHS[kernel_of(name), "compiled"]
    got = run(fast, x, state, lengths)
    assert took(kernel_of(name), "compiled", before)
    monkeypatch.setenv(compiled.ENV_OFF, "1")
    before = compiled.PATHS[kernel_of(name), "python"]
    python = run(fast, x, state, lengths)
    assert took(kernel_of(name), "python", before)
    for y, final, grads in [] if "layernorm" in name else [python, run(ref, x, state, lengths)]:
        torch.testing.assert_close(got[0], y, rtol=1e-5, atol=1e-5)
        for a, b in zip(got[1], final, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for key in grads:
            torch.testing.assert_close(got[2][key], grads[key], rtol=1e-4, atol=1e-4, msg=f"grad {key}")
    if "layernorm" in name:
        truth, _ = pair(FUSED_CELLS[name], dtype=torch.float64, num_layers=2, bidirectional=True)
        exact = run(truth, x.double(), tuple(s.double() for s in fields(state)) if len(fields(state)) > 1
                    else state.double(), lengths)  # fmt: skip
        pairs = [(got[0], python[0], exact[0], 1e-5)]
        pairs += [(a, b, c, 1e-5) for a, b, c in zip(got[1], python[1], exact[1], strict=True)]
        pairs += [(got[2][k], python[2][k], exact[2][k], 1e-4) for k in exact[2]]
        for ours, theirs, truth_value, bound in pairs:
            scale = max(1.0, truth_value.abs().max().item())
            err = (ours.double() - truth_value).abs().max().item()
            err_python = (theirs.double() - truth_value).abs().max().item()
            assert err <= max(bound * scale, 8 * err_python), (err, err_python, scale)


@needs_build
@pytest.mark.parametrize("name", list(FUSED_CELLS))
def test_compiled_gradcheck(built, name):
    """Each compiled backward against finite differences: reverse direction, lengths, initial state."""
    torch.manual_seed(0)
    model = Recurrent(FUSED_CELLS[name], input_size=2, bidirectional=True, impl="fused").double()
    params = dict(model.named_parameters())
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = tuple(s.requires_grad_() for s in fields(state_like(model, 2, 2, torch.Generator().manual_seed(0))))
    n = len(h0)
    lengths = torch.tensor([3, 2])

    def g(x, *rest):  # gradcheck wants flat tensor arguments and outputs
        values = dict(zip(params, rest[n:], strict=True))
        y, final = torch.func.functional_call(
            model, values, (x, rest[:n] if n > 1 else rest[0]), {"lengths": lengths}
        )
        return (y, *fields(final))

    values = [p.detach().clone().requires_grad_() for p in params.values()]
    before = compiled.PATHS[kernel_of(name), "compiled"]
    assert torch.autograd.gradcheck(g, (x, *h0, *values))
    assert took(kernel_of(name), "compiled", before)


@needs_build
def test_no_grad_path_matches(built):
    ref, fast = pair(FUSED_CELLS["lstm_layernorm_all"], num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    before = compiled.PATHS["lstm", "compiled"]
    with torch.no_grad():
        y_f, (h_f, c_f) = fast(x, lengths=torch.tensor([5, 3]))
    assert took("lstm", "compiled", before) and y_f.grad_fn is None
    y_r, (h_r, c_r) = ref(x, lengths=torch.tensor([5, 3]))
    for a, b in ((y_f, y_r), (h_f, h_r), (c_f, c_r)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-10, atol=1e-10)


def test_switched_off_and_other_dtypes_take_the_python_loops(monkeypatch):
    torch.manual_seed(0)
    model = Recurrent(GRUCell(3, 4, reset_after=False), impl="fused")
    monkeypatch.setenv(compiled.ENV_OFF, "1")
    before = compiled.PATHS["gru", "python"]
    model(torch.randn(5, 2, 3))
    assert took("gru", "python", before) and not compiled.available()
    monkeypatch.delenv(compiled.ENV_OFF)
    assert not compiled.usable(torch.zeros(2, dtype=torch.bfloat16), "gru")
    assert compiled.PATHS["gru", "python"] == before + 2


def test_build_failure_falls_back_with_one_warning(monkeypatch):
    def broken():
        raise RuntimeError("Error building extension 'rnnkit_scan'")

    monkeypatch.setattr(compiled, "_build", broken)
    monkeypatch.setattr(compiled, "_ops", None)
    monkeypatch.setattr(compiled, "_failure", None)
    torch.manual_seed(0)
    ref, fast = pair(FUSED_CELLS["jordan"], num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="compiled kernels are unavailable .*Error building extension"):
        y_f, _ = fast(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only one warning: the failure is remembered
        y_f2, _ = fast(x)
    assert "Error building" in compiled.failure()
    torch.testing.assert_close(y_f, ref(x)[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_f2, y_f)


@needs_build
@pytest.mark.parametrize("kernel", ["elman", "gru", "jordan", "lstm"])
def test_rows_split_over_threads_match(built, monkeypatch, kernel):
    """A step's rows are split over threads once it holds > 32768 numbers: a wide batch of tiny cells
    (every row split off in a chunk of its own) against the Python loops."""
    names = {"elman": "elman_sigmoid", "gru": "gru_before", "jordan": "jordan", "lstm": "lstm_layernorm_all"}
    torch.manual_seed(0)
    _, fast = pair(FUSED_CELLS[names[kernel]], dtype=torch.float64)
    x = torch.randn(3, 20000, 3, dtype=torch.float64)
    lengths = torch.randint(1, 4, (20000,))
    got = run(fast, x, None, lengths)
    monkeypatch.setenv(compiled.ENV_OFF, "1")
    want = run(fast, x, None, lengths)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-10)
    for key in want[2]:
        torch.testing.assert_close(got[2][key], want[2][key], rtol=1e-9, atol=1e-9, msg=f"grad {key}")


@needs_build
@pytest.mark.parametrize(
    "cell,batch,hidden,grad",
    [
        (lambda h: GRUCell(8, h), 1, 128, True),  # GRU trains faster fused from tiny steps on
        (lambda h: GRUCell(8, h), 8, 128, False),
        (lambda h: ElmanCell(8, h), 4, 128, True),
    ],
)
def test_auto_takes_the_compiled_kernel_earlier(built, monkeypatch, cell, batch, hidden, grad):
    """Between dispatch.FUSED_WINS_COMPILED's and FUSED_WINS's thresholds "auto" runs the fused
    kernel only when its compiled loops run; switched off, torch's own op."""
    model = Recurrent(cell(hidden))
    x = torch.randn(3, batch, 8)
    with torch.set_grad_enabled(grad):
        assert dispatch.plan(model.cells, "concat", "auto", None, x).native_op is None
        monkeypatch.setenv(compiled.ENV_OFF, "1")
        assert dispatch.plan(model.cells, "concat", "auto", None, x).native_op is not None


# -- state dropout and zoneout in the compiled loops ---------------------------------------

REGULARISED = {
    "elman": lambda n: ElmanCell(n, 4),
    "elman_readout": lambda n: ElmanCell(n, 4, "relu", readout_size=3),
    "jordan": lambda n: JordanCell(n, 5, 4, "tanh", "sigmoid"),
    "gru_after": lambda n: GRUCell(n, 4),
    "gru_before": lambda n: GRUCell(n, 4, reset_after=False),
    "lstm": lambda n: LSTMCell(n, 4),
    "lstm_all": lambda n: LSTMCell(n, 4, proj_size=3, peephole=True, layer_norm=True),
}
REG_OPTIONS = {
    "zoneout": {"zoneout": 0.3},
    "zoneout_h_only": {"zoneout": (0.3, 0.0)},
    "zoneout_c_only": {"zoneout": (0.0, 0.4)},
    "state_dropout": {"state_dropout": 0.4},
    "both": {"state_dropout": 0.3, "zoneout": 0.2},
}


ONE_FIELD = ("elman", "jordan", "gru_after", "gru_before")
REG_CASES = [(n, o, True) for n in ONE_FIELD for o in ("zoneout", "state_dropout", "both")]
REG_CASES += [("elman_readout", "state_dropout", True)]  # zoneout with a readout: reference loop only
REG_CASES += [("lstm", o, True) for o in REG_OPTIONS] + [("lstm_all", "both", True)]  # lstm_all: ~4 s
REG_CASES += [(n, "zoneout", False) for n in (*ONE_FIELD, "lstm")]  # the rate at evaluation


@needs_build
@pytest.mark.parametrize("name,option,training", REG_CASES)
def test_compiled_regularised_equals_python_loops_and_reference(built, monkeypatch, name, option, training):
    """State dropout and zoneout (training masks, or zoneout's rate at evaluation) run in the compiled
    loops and agree with the Python loops and the reference loop under the same masks (drawn from one
    seed): 2 bidirectional layers, padded lengths, initial state, float64, values and all gradients."""
    opts = REG_OPTIONS[option]
    ref, fast = reg_pair(REGULARISED[name], num_layers=2, bidirectional=True, **opts)
    ref.train(training), fast.train(training)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 3, generator=gen, dtype=torch.float64)
    state = reg_state(ref, 3, gen)
    lengths = torch.tensor([6, 2, 5])
    kernel = kernel_of(name)
    before = compiled.PATHS[kernel, "compiled"]
    got = reg_run(fast, x, state, seed=7, lengths=lengths)
    assert compiled.PATHS[kernel, "compiled"] == before + 4  # 2 layers x 2 directions
    want = reg_run(ref, x, state, seed=7, lengths=lengths)
    assert_same(got, want, rtol=1e-10, atol=1e-10)
    monkeypatch.setenv(compiled.ENV_OFF, "1")
    before = compiled.PATHS[kernel, "python"]
    python = reg_run(fast, x, state, seed=7, lengths=lengths)
    assert took(kernel, "python", before)
    assert_same(got, python, rtol=1e-10, atol=1e-10)
    # and the option did something
    plain = Recurrent(REGULARISED[name], input_size=3, num_layers=2, bidirectional=True, impl="fused")
    plain.load_state_dict(ref.state_dict())
    assert not torch.allclose(reg_run(plain.double(), x, state, seed=7, lengths=lengths)[0], want[0])


@needs_build
@pytest.mark.parametrize("option", ["zoneout", "state_dropout"])
@pytest.mark.parametrize("name", ["elman", "jordan", "gru_after", "gru_before", "lstm", "lstm_proj_peephole"])
def test_compiled_regularised_gradcheck(built, name, option):
    """The compiled backward with state dropout or zoneout against finite differences: both
    directions, lengths, initial state; the masks are redrawn from a fixed seed each call."""
    make = {**REGULARISED, "lstm_proj_peephole": lambda n: LSTMCell(n, 4, proj_size=3, peephole=True)}[name]
    zoneout = (0.3, 0.4) if "lstm" in name else 0.3
    opts = {"zoneout": {"zoneout": zoneout}, "state_dropout": {"state_dropout": 0.4}}
    torch.manual_seed(0)
    model = Recurrent(make, input_size=2, bidirectional=True, impl="fused", **opts[option]).double().train()
    params = dict(model.named_parameters())
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = tuple(s.requires_grad_() for s in fields(state_like(model, 2, 2, torch.Generator().manual_seed(0))))
    n = len(h0)
    lengths = torch.tensor([4, 2])

    def g(x, *rest):
        torch.manual_seed(3)  # the same masks every call
        values = dict(zip(params, rest[n:], strict=True))
        y, final = torch.func.functional_call(
            model, values, (x, rest[:n] if n > 1 else rest[0]), {"lengths": lengths}
        )
        return (y, *fields(final))

    values = [p.detach().clone().requires_grad_() for p in params.values()]
    before = compiled.PATHS[kernel_of(name), "compiled"]
    assert torch.autograd.gradcheck(g, (x, *h0, *values))
    assert took(kernel_of(name), "compiled", before)
