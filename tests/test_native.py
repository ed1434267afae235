"""The torch-op fast path (impl="native", chosen by "auto") against the reference loop."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, Recurrent
from rnnkit.errors import InputError
from rnnkit.kernels.native import stack_is_native

NATIVE_CELLS = {
    "lstm": lambda n: LSTMCell(n, 4, forget_bias=1.0),
    "lstm_proj": lambda n: LSTMCell(n, 4, proj_size=3),
    "lstm_nobias": lambda n: LSTMCell(n, 4, bias=False),
    "gru": lambda n: GRUCell(n, 4),
    "rnn_tanh": lambda n: ElmanCell(n, 4, "tanh"),
    "rnn_relu": lambda n: ElmanCell(n, 4, "relu"),
}


def pair(make, **kw):
    torch.manual_seed(0)
    ref = Recurrent(make, input_size=3, impl="reference", **kw).double()
    fast = Recurrent(make, input_size=3, impl="native", **kw).double()
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize(
    "name,layers,bidirectional,with_lengths,with_state",
    list(itertools.product(NATIVE_CELLS, [1, 2], [False, True], [False, True], [False, True])),
)
def test_native_equals_reference(name, layers, bidirectional, with_lengths, with_state):
    ref, fast = pair(NATIVE_CELLS[name], num_layers=layers, bidirectional=bidirectional)
    T, B = 5, 3
    x = torch.randn(T, B, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 4]) if with_lengths else None
    state = None
    if with_state:
        cell = ref.cells[0]
        K = layers * (2 if bidirectional else 1)
        sizes = cell.state_size if isinstance(cell.state_size, tuple) else (cell.state_size,)
        fields = [torch.randn(K, B, n, dtype=torch.float64) for n in sizes]
        state = tuple(fields) if isinstance(cell.state_size, tuple) else fields[0]
    results = []
    for model in (ref, fast):
        xi = x.clone().requires_grad_()
        si = None
        if state is not None:
            si = (
                tuple(s.clone().requires_grad_() for s in state)
                if isinstance(state, tuple)
                else state.clone().requires_grad_()
            )
        y, final = model(xi, si, lengths=lengths)
        fields = final if isinstance(final, tuple) else (final,)
        upstream = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
        loss = (y * upstream).sum() + sum((f * f).sum() for f in fields)
        loss.backward()
        grads = [xi.grad] + [p.grad for p in model.parameters()]
        if si is not None:
            grads += [s.grad for s in (si if isinstance(si, tuple) else (si,))]
        results.append((y, fields, grads))
    (y_r, f_r, g_r), (y_f, f_f, g_f) = results
    torch.testing.assert_close(y_f, y_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(f_f, f_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_f, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    if with_lengths:  # padded steps are zero on the fast path too
        assert torch.all(y_f[2:, 1] == 0) and torch.all(y_f[4:, 2] == 0)


@pytest.mark.parametrize(
    "cells,merge,expected",
    [
        ([LSTMCell(3, 4)], "concat", "lstm"),
        ([LSTMCell(3, 4, proj_size=2)], "concat", "lstm"),
        ([GRUCell(3, 4)], "concat", "gru"),
        ([ElmanCell(3, 4, "relu")], "concat", "rnn_relu"),
        ([LSTMCell(3, 4, peephole=True)], "concat", None),
        ([LSTMCell(3, 4, layer_norm=True)], "concat", None),
        ([GRUCell(3, 4, reset_after=False)], "concat", None),
        ([ElmanCell(3, 4, "sigmoid")], "concat", None),
        ([ElmanCell(3, 4, torch.tanh)], "concat", None),
        ([ElmanCell(3, 4, readout_size=2)], "concat", None),
        ([JordanCell(3, 4, 2)], "concat", None),
        ([GRUCell(3, 4), GRUCell(3, 4)], "sum", None),
        ([GRUCell(3, 4), GRUCell(3, 4, bias=False)], "concat", None),
        ([GRUCell(3, 4), LSTMCell(3, 4)], "concat", None),
    ],
)
def test_dispatch_picks_torch_op_only_for_torch_models(cells, merge, expected):
    assert stack_is_native(cells, merge) == expected


def test_auto_uses_native_and_reference_is_forced(monkeypatch):
    calls = []
    import rnnkit.layers.recurrent as recurrent

    original = recurrent.run_native
    monkeypatch.setattr(recurrent, "run_native", lambda *a, **k: calls.append(1) or original(*a, **k))
    x = torch.randn(4, 2, 3)
    Recurrent(LSTMCell(3, 4))(x)
    assert calls == [1]
    Recurrent(LSTMCell(3, 4), impl="reference")(x)
    Recurrent(LSTMCell(3, 4, peephole=True))(x)  # auto falls back: torch has no peephole LSTM
    assert calls == [1]


def test_native_refuses_models_torch_lacks():
    model = Recurrent(GRUCell(3, 4, reset_after=False), impl="native")
    with pytest.raises(InputError, match=r"impl='native' needs .*got GRUCell"):
        model(torch.randn(4, 2, 3))
    with pytest.raises(ValueError, match=r"impl must be one of .*got 'fast'"):
        Recurrent(GRUCell(3, 4), impl="fast")


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_auto_dropin_matches_torch_bitwise_with_packed_dropout(kind):
    """With impl="auto" a drop-in calls torch's own op, so even dropout masks on packed input match."""
    kw = {"num_layers": 3, "dropout": 0.4, "bidirectional": True}
    torch.manual_seed(0)
    th = getattr(torch.nn, kind)(3, 4, **kw)
    torch.manual_seed(0)
    rk = getattr(rnn, kind)(3, 4, **kw)
    x = pack_padded_sequence(torch.randn(5, 3, 3), torch.tensor([5, 2, 4]), enforce_sorted=False)
    torch.manual_seed(42)
    a = th(x)
    torch.manual_seed(42)
    b = rk(x)
    assert torch.equal(a[0].data, b[0].data)


@pytest.mark.parametrize(
    "batch,hidden,dtype,grad,expected",
    [
        (64, 256, torch.float32, True, "fused"),  # big steps: oneDNN-packed fused kernel wins
        (1, 32, torch.float32, True, "native"),  # tiny steps: torch's C++ loop wins
        (4, 128, torch.float32, False, "native"),  # inference needs bigger steps to pay off
        (16, 512, torch.float32, False, "fused"),
        (64, 256, torch.float64, True, "native"),  # no packed float64 GEMM
    ],
)
def test_auto_prefers_fused_gru_only_where_measured_faster(batch, hidden, dtype, grad, expected, monkeypatch):
    import rnnkit.kernels.dispatch as dispatch

    if not dispatch.MKLDNN and expected == "fused":
        pytest.skip("this torch build has no oneDNN packed linear")
    model = Recurrent(GRUCell(8, hidden)).to(dtype)
    x = torch.randn(3, batch, 8, dtype=dtype)
    with torch.set_grad_enabled(grad):
        chosen = dispatch.plan(model.cells, "concat", "auto", None, x)
    assert ("native" if chosen.native_op else "fused") == expected
