"""rnnkit's fused kernels (analytic BPTT) against the reference loop over ``cell.step``: their Python
loops (the compiled loops, tests/test_compiled.py, are switched off here)."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, Recurrent
from rnnkit.errors import InputError
from rnnkit.kernels.compiled import ENV_OFF
from rnnkit.kernels.fused import fused_kernel

FUSED_CELLS = {
    "elman_tanh": lambda n: ElmanCell(n, 4, "tanh"),
    "elman_relu": lambda n: ElmanCell(n, 4, "relu"),
    "elman_sigmoid": lambda n: ElmanCell(n, 4, "sigmoid"),
    "elman_identity_nobias": lambda n: ElmanCell(n, 4, "identity", bias=False),
    "elman_readout": lambda n: ElmanCell(n, 4, "tanh", readout_size=3, readout_activation="sigmoid"),
    "gru_after": lambda n: GRUCell(n, 4),
    "gru_before": lambda n: GRUCell(n, 4, reset_after=False),
    "gru_before_nobias": lambda n: GRUCell(n, 4, bias=False, reset_after=False),
    "jordan": lambda n: JordanCell(n, 5, 4),
    "jordan_relu_identity_nobias": lambda n: JordanCell(n, 5, 4, "relu", "identity", bias=False),
    "jordan_sigmoid": lambda n: JordanCell(n, 3, 4, "sigmoid", "sigmoid"),
    "lstm": lambda n: LSTMCell(n, 4),
    "lstm_peephole": lambda n: LSTMCell(n, 4, peephole=True, forget_bias=1.0),
    "lstm_proj": lambda n: LSTMCell(n, 4, proj_size=2),
    "lstm_peephole_proj_nobias": lambda n: LSTMCell(n, 4, bias=False, proj_size=3, peephole=True),
    "lstm_layernorm": lambda n: LSTMCell(n, 4, layer_norm=True),
    "lstm_layernorm_all": lambda n: LSTMCell(
        n, 4, proj_size=2, peephole=True, layer_norm=True, forget_bias=1.0
    ),
}


@pytest.fixture(autouse=True)
def python_loops(monkeypatch):
    monkeypatch.setenv(ENV_OFF, "1")


def state_like(model, K, B, gen):
    size = model.cells[0].state_size
    if isinstance(size, tuple):
        return tuple(torch.randn(K, B, n, generator=gen, dtype=torch.float64) for n in size)
    return torch.randn(K, B, size, generator=gen, dtype=torch.float64)


def fields(state):
    return state if isinstance(state, tuple) else (state,)


def pair(make, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    ref = Recurrent(make, input_size=3, impl="reference", **kw).to(dtype)
    fast = Recurrent(make, input_size=3, impl="fused", **kw).to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def run(model, x, state, lengths):
    x = x.clone().requires_grad_()
    if state is not None:
        state = tuple(s.clone().requires_grad_() for s in fields(state))
        state = state if len(state) > 1 else state[0]
    y, final = model(x, state, lengths=lengths)
    upstream = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    ((y * upstream).sum() + sum((f * f).sum() for f in fields(final))).backward()
    grads = {"x": x.grad, **{n: p.grad for n, p in model.named_parameters()}}
    if state is not None:
        grads.update({f"state{i}": s.grad for i, s in enumerate(fields(state))})
    return y, fields(final), grads


@pytest.mark.parametrize(
    "name,layers,bidirectional,with_lengths,with_state",
    list(itertools.product(FUSED_CELLS, [1, 2], [False, True], [False, True], [False, True])),
)
def test_fused_equals_reference_float64(name, layers, bidirectional, with_lengths, with_state):
    ref, fast = pair(FUSED_CELLS[name], num_layers=layers, bidirectional=bidirectional)
    T, B = 6, 3
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 3, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 5]) if with_lengths else None
    K = layers * (2 if bidirectional else 1)
    state = state_like(ref, K, B, gen) if with_state else None
    y_r, f_r, g_r = run(ref, x, state, lengths)
    y_f, f_f, g_f = run(fast, x, state, lengths)
    torch.testing.assert_close(y_f, y_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(f_f, f_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert g_f.keys() == g_r.keys()
    for key in g_r:
        torch.testing.assert_close(g_f[key], g_r[key], rtol=1e-9, atol=1e-9, msg=f"grad {key}")


@pytest.mark.parametrize("name", list(FUSED_CELLS))
def test_fused_equals_reference_float32(name):
    """The float32 path uses oneDNN's packed weights where available: 1e-5 outputs, 1e-4 grads.

    Layer norm over a few units is ill-conditioned in float32 (the variance of 4 numbers can be tiny),
    so there both paths are held to the float64 truth instead: fused no worse than 8x the reference
    loop's own float32 error (or the 1e-5 / 1e-4 bounds relative to the values' scale)."""
    ref, fast = pair(FUSED_CELLS[name], dtype=torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(20, 8, 3)
    lengths = torch.randint(1, 21, (8,))
    y_r, f_r, g_r = run(ref, x, None, lengths)
    y_f, f_f, g_f = run(fast, x, None, lengths)
    if "layernorm" not in name:
        torch.testing.assert_close(y_f, y_r, rtol=1e-5, atol=1e-5)
        for a, b in zip(f_f, f_r, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for key in g_r:
            torch.testing.assert_close(g_f[key], g_r[key], rtol=1e-4, atol=1e-4, msg=f"grad {key}")
        return
    truth, _ = pair(FUSED_CELLS[name], dtype=torch.float64, num_layers=2, bidirectional=True)
    y_t, f_t, g_t = run(truth, x.double(), None, lengths)
    pairs = [(y_f, y_r, y_t, 1e-5)] + [(a, b, c, 1e-5) for a, b, c in zip(f_f, f_r, f_t, strict=True)]
    pairs += [(g_f[k], g_r[k], g_t[k], 1e-4) for k in g_r]
    for fused, reference, exact, bound in pairs:
        scale = max(1.0, exact.abs().max().item())
        err_fused = (fused.double() - exact).abs().max().item()
        err_reference = (reference.double() - exact).abs().max().item()
        assert err_fused <= max(bound * scale, 8 * err_reference), (err_fused, err_reference, scale)


@pytest.mark.parametrize("name", list(FUSED_CELLS))
def test_fused_gradcheck(name):
    """The analytic backward against finite differences, with lengths, reverse and an initial state."""
    torch.manual_seed(0)
    model = Recurrent(FUSED_CELLS[name], input_size=2, bidirectional=True, impl="fused").double()
    params = dict(model.named_parameters())
    lengths = torch.tensor([4, 2])

    def f(x, h0, *values):
        y, final = torch.func.functional_call(model, dict(zip(params, values, strict=True)), (x, h0))
        return y, final

    def f_len(x, h0, *values):
        out = torch.func.functional_call(
            model, dict(zip(params, values, strict=True)), (x, h0), {"lengths": lengths}
        )
        return out

    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = state_like(model, 2, 2, torch.Generator().manual_seed(0))
    h0 = tuple(s.requires_grad_() for s in fields(h0))
    n = len(h0)

    def g(x, *rest):  # gradcheck wants flat tensor arguments and outputs
        y, final = f(x, rest[:n] if n > 1 else rest[0], *rest[n:])
        return (y, *fields(final))

    def g_len(x, *rest):
        y, final = f_len(x, rest[:n] if n > 1 else rest[0], *rest[n:])
        return (y, *fields(final))

    values = [p.detach().clone().requires_grad_() for p in params.values()]
    assert torch.autograd.gradcheck(g, (x, *h0, *values))
    assert torch.autograd.gradcheck(g_len, (x, *h0, *values))


def test_no_grad_path_saves_nothing_and_matches():
    torch.manual_seed(0)
    ref, fast = pair(FUSED_CELLS["gru_before"], num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        y_f, f_f = fast(x)
    y_r, f_r = ref(x)
    assert y_f.grad_fn is None
    torch.testing.assert_close(y_f, y_r.detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(f_f, f_r.detach(), rtol=1e-10, atol=1e-10)


def test_fused_covers_and_refuses():
    assert fused_kernel(ElmanCell(3, 4, torch.tanh)) is None  # a callable activation: no derivative known
    assert fused_kernel(ElmanCell(3, 4, readout_activation=torch.sigmoid)) is not None  # readout is outside
    assert fused_kernel(JordanCell(3, 4, 2, output_activation=torch.tanh)) is None
    model = Recurrent(JordanCell(3, 4, 2, nonlinearity=torch.tanh), impl="fused")
    with pytest.raises(InputError, match=r"impl='fused' has no fused kernel for JordanCell"):
        model(torch.randn(4, 2, 3))
