"""Regularisation options of Recurrent and the drop-ins: variational dropout, state dropout, zoneout,
weight drop. Fused == reference under the same masks, gradcheck of every changed backward, each flag
changes training output and leaves evaluation deterministic, mask reuse over time, scaling, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, Recurrent
from rnnkit.errors import InputError

F64 = torch.float64

CELLS = {
    "elman": lambda n: ElmanCell(n, 4),
    "elman_readout": lambda n: ElmanCell(n, 4, "relu", readout_size=3),
    "jordan": lambda n: JordanCell(n, 5, 4),
    "gru": lambda n: GRUCell(n, 4),
    "gru_textbook": lambda n: GRUCell(n, 4, reset_after=False),
    "lstm": lambda n: LSTMCell(n, 4),
    "lstm_all": lambda n: LSTMCell(n, 4, proj_size=3, peephole=True, layer_norm=True),
}
OPTIONS = {
    "state_dropout": {"state_dropout": 0.4},
    "zoneout": {"zoneout": 0.3},
    "weight_drop": {"weight_drop": 0.4},
    "variational": {"input_dropout": 0.3, "dropout": 0.4, "variational": True},
    "everything": {"input_dropout": 0.2, "state_dropout": 0.3, "zoneout": 0.2, "weight_drop": 0.3},
}


def fields(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


def random_state(model, B, gen, dtype=F64):
    size = model.layer_cells()[0].state_size
    K = model.num_layers * model.num_directions
    flat = tuple(torch.randn(K, B, n, generator=gen, dtype=dtype) * 0.5 for n in fields(size))
    return type(size)(*flat) if isinstance(size, tuple) else flat[0]


def pair(make, dtype=F64, **kw):
    torch.manual_seed(0)
    ref = Recurrent(make, input_size=3, impl="reference", **kw).to(dtype)
    fast = Recurrent(make, input_size=3, impl="fused", **kw).to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref.train(), fast.train()


def run(model, x, state, seed, **kw):
    """Output, final state and every gradient, with the masks drawn from ``seed``."""
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in fields(state))
    torch.manual_seed(seed)
    y, final = model(x, state if len(state) > 1 else state[0], **kw)
    upstream = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    ((y * upstream).sum() + sum((f * f).sum() for f in fields(final))).backward()
    grads = {"x": x.grad, **{n: p.grad for n, p in model.named_parameters()}}
    grads.update({f"state{i}": s.grad for i, s in enumerate(state)})
    return y, fields(final), grads


def assert_same(a, b, rtol, atol):
    (y_a, f_a, g_a), (y_b, f_b, g_b) = a, b
    torch.testing.assert_close(y_a, y_b, rtol=rtol, atol=atol)
    for u, v in zip(f_a, f_b, strict=True):
        torch.testing.assert_close(u, v, rtol=rtol, atol=atol)
    assert g_a.keys() == g_b.keys()
    for key in g_b:
        torch.testing.assert_close(g_a[key], g_b[key], rtol=10 * rtol, atol=10 * atol, msg=f"grad {key}")


# -- fused == reference under the same masks -----------------------------------------------------------


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", list(CELLS))
def test_fused_equals_reference_with_option(name, option):
    """Training mode, 2 bidirectional layers, padded batch, initial state: outputs, final states and
    every gradient (inputs, state, parameters) agree to 1e-10 in float64."""
    opts = OPTIONS[option]
    if name == "elman_readout" and "zoneout" in opts:
        pytest.skip(
            "zoneout with a readout runs on the reference loop only (test_zoneout_readout_falls_back)"
        )
    ref, fast = pair(CELLS[name], num_layers=2, bidirectional=True, **opts)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 3, generator=gen, dtype=F64)
    state = random_state(ref, 3, gen)
    lengths = torch.tensor([6, 2, 5])
    out_r = run(ref, x, state, seed=7, lengths=lengths)
    out_f = run(fast, x, state, seed=7, lengths=lengths)
    assert_same(out_f, out_r, rtol=1e-10, atol=1e-10)
    # and the option did something: the same model with it off differs
    plain = Recurrent(CELLS[name], input_size=3, num_layers=2, bidirectional=True, impl="fused").double()
    plain.load_state_dict(ref.state_dict())
    assert not torch.allclose(run(plain, x, state, seed=7, lengths=lengths)[0], out_r[0])


@pytest.mark.parametrize("name", ["elman", "gru_textbook", "lstm"])
def test_fused_equals_reference_float32(name):
    """float32 (oneDNN's packed weights where available): 1e-5 outputs, 1e-4 gradients. (Layer norm over
    4 units is too ill-conditioned for fixed float32 bounds; test_fused.py holds it to float64.)"""
    opts = OPTIONS["everything"] | {"zoneout": (0.2, 0.1) if "lstm" in name else 0.2}
    ref, fast = pair(CELLS[name], dtype=torch.float32, num_layers=2, **opts)
    x = torch.randn(20, 8, 3)
    state = random_state(ref, 8, torch.Generator().manual_seed(0), dtype=torch.float32)
    assert_same(run(fast, x, state, seed=3), run(ref, x, state, seed=3), rtol=1e-5, atol=1e-5)


GRADCHECK = {n: CELLS[n] for n in CELLS if n not in ("elman_readout", "lstm_all")}
GRADCHECK["lstm_proj_peephole"] = lambda n: LSTMCell(n, 4, proj_size=3, peephole=True)


@pytest.mark.parametrize("name", list(GRADCHECK))
@pytest.mark.parametrize("training", [True, False])
def test_fused_gradcheck_with_state_dropout_zoneout_and_resets(name, training):
    """The analytic backward of every kernel, with state dropout and zoneout masks (training) or
    zoneout's expected value (evaluation), a reset mask, lengths, both directions and a learned
    initial state, against finite differences. The masks are redrawn from a fixed seed each call.
    (Layer norm's backward with these options is held to the autograd reference loop at 1e-10 in
    test_fused_equals_reference_with_option; its gradcheck alone takes a minute.)"""
    torch.manual_seed(0)
    zoneout = (0.3, 0.4) if name.startswith("lstm") else 0.3
    model = Recurrent(
        GRADCHECK[name], input_size=2, bidirectional=True, impl="fused", state_dropout=0.3, zoneout=zoneout,
        learn_initial_state=True,
    ).double().train(training)  # fmt: skip
    with torch.no_grad():
        for p in model._initial_names:
            getattr(model, p).normal_()
    params = dict(model.named_parameters())
    lengths = torch.tensor([5, 3])
    reset = torch.tensor([[0, 0], [0, 1], [1, 0], [0, 0], [0, 1]], dtype=torch.bool)  # (T, B)

    def g(x, *values):
        torch.manual_seed(5)
        y, final = functional_call(
            model, dict(zip(params, values, strict=True)), (x,), {"lengths": lengths, "reset": reset}
        )
        return (y, *fields(final))

    x = torch.randn(5, 2, 2, dtype=F64, requires_grad=True)
    values = [p.detach().clone().requires_grad_() for p in params.values()]
    assert torch.autograd.gradcheck(g, (x, *values))


# -- each flag: changes training output, leaves evaluation deterministic ----------------------------


FLAGS = {
    "input_dropout": {"input_dropout": 0.5},
    "variational_input": {"input_dropout": 0.5, "variational": True},
    "variational_between": {"dropout": 0.5, "variational": True},
    "state_dropout": {"state_dropout": 0.5},
    "zoneout": {"zoneout": 0.5},
    "zoneout_c_only": {"zoneout": (0.0, 0.5)},
    "weight_drop": {"weight_drop": 0.5},
}


@pytest.mark.parametrize("impl", ["auto", "reference"])
@pytest.mark.parametrize("flag", list(FLAGS))
def test_flag_changes_training_output_and_eval_is_deterministic(flag, impl):
    """A flag that silently does nothing fails here. At evaluation the dropout flags are identity (the
    flag-off layer's output exactly); zoneout's evaluation is its expected value, so it differs from
    the flag-off layer (its value is checked by hand in test_zoneout_eval_by_hand)."""
    torch.manual_seed(0)
    on = rnn.LSTM(3, 5, num_layers=2, impl=impl, **FLAGS[flag])
    off = rnn.LSTM(3, 5, num_layers=2, impl=impl)
    off.load_state_dict(on.state_dict())
    x = torch.randn(7, 4, 3)
    on.train(), off.eval()
    reference = off(x)[0]
    with torch.no_grad():
        first, second = on(x)[0], on(x)[0]
    assert not torch.allclose(first, reference, atol=1e-4)
    assert not torch.allclose(first, second, atol=1e-4)  # a fresh mask each forward
    on.eval()
    with torch.no_grad():
        a, b = on(x)[0], on(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    if flag.startswith("zoneout"):
        assert not torch.allclose(a, reference, atol=1e-4)
    else:
        torch.testing.assert_close(a, reference, rtol=1e-6, atol=1e-6)


# -- the masks: reuse across time, scaling ---------------------------------------------------------


def identity_elman(n: int, w_ih: float, w_hh: float) -> Recurrent:
    """h_t = w_ih x_t + w_hh h_{t-1}, elementwise (identity activation, diagonal weights, no bias)."""
    model = Recurrent(ElmanCell(n, n, "identity", bias=False), impl="reference").double()
    with torch.no_grad():
        model.cells[0].weight_ih.copy_(torch.eye(n) * w_ih)
        model.cells[0].weight_hh.copy_(torch.eye(n) * w_hh)
    return model


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("option", ["state_dropout", "weight_drop"])
def test_recurrent_mask_is_the_same_at_every_step_and_scaled(option, impl):
    """h_t = (m * h_{t-1}) with one mask m for the whole sequence (state dropout: per sequence; weight
    drop: per forward, on W_hh's diagonal): a unit dropped once stays at 0, a kept unit grows by
    exactly 1/(1-p) per step."""
    p, T = 0.25, 4
    model = identity_elman(64, 0.0, 1.0).train()
    model.impl = impl
    model.regularization = type(model.regularization)(**{option: p})
    h0 = torch.ones(1, 8, 64, dtype=F64)
    torch.manual_seed(0)
    y, _ = model(torch.zeros(T, 8, 64, dtype=F64), h0)  # (T, B, H)
    kept = y[0] != 0
    assert 0.6 < kept.double().mean() < 0.9
    for t in range(T):
        assert torch.equal(y[t] != 0, kept)  # the same units at every step
        torch.testing.assert_close(y[t][kept], torch.full_like(y[t][kept], (1 / (1 - p)) ** (t + 1)))
    if option == "weight_drop":  # one mask per forward: the same for every sequence of the batch
        assert (kept == kept[0]).all()
    else:  # one per sequence
        assert not (kept == kept[0]).all()


@pytest.mark.parametrize("variational", [True, False])
def test_input_dropout_mask_reuse_and_scale(variational):
    """h_t = x_t masked: variational input dropout zeroes the same features at every step (torch-style
    a fresh set each step); kept values are scaled by exactly 1/(1-p)."""
    p = 0.5
    model = identity_elman(32, 1.0, 0.0).train()
    model.regularization = type(model.regularization)(input_dropout=p, variational=variational)
    torch.manual_seed(0)
    y, _ = model(torch.ones(5, 6, 32, dtype=F64))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    same = all(torch.equal(y[t] != 0, y[0] != 0) for t in range(5))
    assert same == variational


def test_variational_dropout_between_layers_reuses_the_mask_on_native_and_reference():
    """Layer 0 outputs the same vector at every step (W_hh = 0, constant input); layer 1 = identity
    read of it. With variational dropout between them, layer 1 sees the same zeros at every step."""
    for impl in ("reference", "auto"):
        model = rnn.RNN(8, 8, num_layers=2, nonlinearity="relu", bias=False, dropout=0.5, variational=True,
                        impl=impl).double().train()  # fmt: skip
        with torch.no_grad():
            model.weight_ih_l0.copy_(torch.eye(8))
            model.weight_hh_l0.zero_()
            model.weight_ih_l1.copy_(torch.eye(8))
            model.weight_hh_l1.zero_()
        torch.manual_seed(0)
        y, _ = model(torch.ones(6, 5, 8, dtype=F64))
        assert set(y.unique().tolist()) == {0.0, 2.0}, impl
        assert all(torch.equal(y[t] != 0, y[0] != 0) for t in range(6)), impl
        assert not torch.equal(y[0, 0] != 0, y[0, 1] != 0)  # per sequence


def test_zoneout_training_keeps_previous_values_with_probability_p():
    """h_t = x_t unless zoned out, then h_{t-1} (x_t = t + 1): every entry is one of the two, a fresh
    mask each step, and about p of them keep the old value."""
    p = 0.3
    for impl in ("reference", "fused"):
        model = identity_elman(50, 1.0, 0.0).train()
        model.impl = impl
        model.regularization = type(model.regularization)(zoneout=(p,))
        x = torch.arange(1, 7, dtype=F64)[:, None, None].expand(6, 40, 50)
        torch.manual_seed(0)
        y, _ = model(x)
        prev = torch.cat([torch.zeros_like(y[:1]), y[:-1]])
        new, old = y == x, y == prev
        assert (new | old).all()
        frac = old.double().mean().item()
        assert abs(frac - p) < 0.02, frac
        assert not torch.equal(old[1], old[2])  # fresh per step


def test_zoneout_eval_by_hand():
    """LSTM evaluation with zoneout (p_h, p_c), worked by hand from the equations for 3 steps:
    c~ = f c + i g, c = p_c c_prev + (1 - p_c) c~, h = p_h h_prev + (1 - p_h) o tanh(c~)."""
    p_h, p_c = 0.3, 0.6
    torch.manual_seed(0)
    model = Recurrent(LSTMCell(2, 3), zoneout=(p_h, p_c)).double().eval()
    cell = model.cells[0]
    x = torch.randn(3, 1, 2, dtype=F64)
    h, c = torch.full((1, 3), 0.5, dtype=F64), torch.full((1, 3), -0.2, dtype=F64)
    for impl in ("reference", "fused"):
        model.impl = impl
        y, (h_n, c_n) = model(x, (h[None], c[None]))
        hh, cc = h, c
        for t in range(3):
            gates = x[t] @ cell.weight_ih.T + cell.bias_ih + hh @ cell.weight_hh.T + cell.bias_hh
            i, f, g, o = gates.chunk(4, -1)
            c_new = torch.sigmoid(f) * cc + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            cc = p_c * cc + (1 - p_c) * c_new
            hh = p_h * hh + (1 - p_h) * h_new
            torch.testing.assert_close(y[t], hh, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c_n[0], cc, rtol=1e-12, atol=1e-12)


def test_zoneout_readout_falls_back_to_the_reference_loop():
    """Elman with a readout has no fused zoneout: impl='auto' runs the reference loop (never drops
    the option), impl='fused' says so."""
    torch.manual_seed(0)
    auto = Recurrent(ElmanCell(3, 4, readout_size=2), zoneout=0.5).eval()
    plain = Recurrent(ElmanCell(3, 4, readout_size=2), impl="reference").eval()
    plain.load_state_dict(auto.state_dict())
    x = torch.randn(5, 2, 3)
    assert not torch.allclose(auto(x)[0], plain(x)[0])
    with pytest.raises(InputError, match="impl='fused' has no fused kernel for ElmanCell"):
        Recurrent(ElmanCell(3, 4, readout_size=2), zoneout=0.5, impl="fused")(x)


# -- weight drop ------------------------------------------------------------------------------------


def test_weight_drop_is_awd_lstm_weight_drop_and_leaves_the_parameter():
    """One DropConnect mask on weight_hh per forward: the output equals torch.nn.LSTM run with
    ``F.dropout(weight_hh_l0, p)`` drawn from the same seed (AWD-LSTM's WeightDrop); the parameter is
    the same object with the same values afterwards, and its gradient is zero where the mask was."""
    p = 0.5
    torch.manual_seed(0)
    ours = rnn.LSTM(3, 4, weight_drop=p).double().train()
    theirs = torch.nn.LSTM(3, 4).double()
    theirs.load_state_dict(ours.state_dict())
    before, values = ours.weight_hh_l0, ours.weight_hh_l0.detach().clone()
    x = torch.randn(5, 2, 3, dtype=F64)
    torch.manual_seed(3)
    y, _ = ours(x)
    y.sum().backward()
    torch.manual_seed(3)
    masked = F.dropout(theirs.weight_hh_l0.detach(), p, True)
    y_t, _ = torch.func.functional_call(theirs, {"weight_hh_l0": masked}, (x,))
    torch.testing.assert_close(y, y_t, rtol=1e-12, atol=1e-12)
    assert ours.weight_hh_l0 is before and torch.equal(ours.weight_hh_l0, values)
    assert isinstance(ours.weight_hh_l0, torch.nn.Parameter)
    dropped = masked == 0
    assert dropped.any() and (ours.weight_hh_l0.grad[dropped] == 0).all()
    assert (ours.weight_hh_l0.grad[~dropped] != 0).any()
    # another forward, another mask
    torch.manual_seed(4)
    assert not torch.allclose(ours(x)[0], y)


def test_weight_drop_on_jordan_masks_weight_yh():
    torch.manual_seed(0)
    model = Recurrent(JordanCell(3, 4, 2), weight_drop=0.5).train()
    weight = model.cells[0].weight_yh
    model(torch.randn(4, 2, 3))[0].sum().backward()
    assert model.cells[0].weight_yh is weight and (weight.grad == 0).any()


# -- the drop-ins keep torch's numbers with everything off, and take the options ------------------


def test_drop_ins_pass_options_and_repr():
    lstm = rnn.LSTM(3, 4, 2, dropout=0.1, zoneout=(0.1, 0.05), state_dropout=0.2, variational=True)
    assert "zoneout=(0.1, 0.05)" in repr(lstm) and "state_dropout=0.2" in repr(lstm)
    assert set(lstm.state_dict()) == set(torch.nn.LSTM(3, 4, 2).state_dict())
    gru = rnn.GRU(3, 4, weight_drop=0.3)
    y, h = gru(torch.randn(5, 2, 3))
    assert y.shape == (5, 2, 4) and h.shape == (1, 2, 4)
    with pytest.raises(TypeError, match=r"GRU got unexpected keyword arguments \['zonout'\]"):
        rnn.GRU(3, 4, zonout=0.1)
    with pytest.raises(TypeError, match=r"LSTM got unexpected keyword arguments"):
        rnn.LSTM(3, 4, bogus=1)


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["input_dropout", "state_dropout", "zoneout", "weight_drop"])
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_rates_outside_zero_one_are_refused(option, value):
    with pytest.raises(ValueError, match=rf"{option}.* should be a probability in \[0, 1\), got"):
        Recurrent(GRUCell(3, 4), **{option: value})


def test_bad_options_say_what_was_expected():
    with pytest.raises(ValueError, match=r"zoneout needs one rate per state field \('h', 'c'\) of LSTMCell"):
        Recurrent(LSTMCell(3, 4), zoneout=(0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match=r"zoneout\[1\] \(c\) should be a probability"):
        Recurrent(LSTMCell(3, 4), zoneout=(0.1, 2.0))
    with pytest.raises(TypeError, match="variational should be of type bool, got: int"):
        Recurrent(GRUCell(3, 4), variational=1)
    with pytest.raises(TypeError, match="learn_initial_state should be of type bool"):
        Recurrent(GRUCell(3, 4), learn_initial_state="yes")
    with pytest.raises(InputError, match="impl='native' .* cannot run state dropout, zoneout"):
        rnn.LSTM(3, 4, zoneout=0.1, impl="native")(torch.randn(2, 1, 3))


# -- the benchmark rows -----------------------------------------------------------------------------


def test_bench_option_rows_time_each_option_against_the_plain_layer():
    from rnnkit import bench

    rows = bench.option_rows(repeats=1, models=["GRU"], T=3, B=2, H=4)
    assert [r.name for r in rows] == [f"GRU {o}" for o in bench.OPTIONS]
    assert all(r.peer == "without" and r.rnnkit_ms > 0 and r.peer_ms > 0 for r in rows)
    table = bench.table({"rows": [bench.asdict(r) for r in rows]})
    assert "| GRU zoneout | 2 | 4 | 1 | uni | fwd+bwd |" in table
