"""Cells checked against independent references: torch.nn cells, NumPy equations, gradcheck, BPTT by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState, MinGRUCell, MinLSTMCell, Recurrent

F64 = torch.float64


def softsign(x):
    return x / (1 + x.abs())


# name -> factory(input_size) of a float64 cell. Every cell and option combination.
CELLS = {
    "elman-tanh": lambda n: ElmanCell(n, 3, dtype=F64),
    "elman-relu": lambda n: ElmanCell(n, 3, nonlinearity="relu", dtype=F64),
    "elman-sigmoid": lambda n: ElmanCell(n, 3, nonlinearity="sigmoid", dtype=F64),
    "elman-identity": lambda n: ElmanCell(n, 3, nonlinearity="identity", dtype=F64),
    "elman-callable": lambda n: ElmanCell(n, 3, nonlinearity=softsign, dtype=F64),
    "elman-readout": lambda n: ElmanCell(n, 3, readout_size=2, readout_activation="tanh", dtype=F64),
    "elman-readout-identity": lambda n: ElmanCell(n, 3, readout_size=2, dtype=F64),
    "elman-nobias-readout": lambda n: ElmanCell(n, 3, bias=False, readout_size=2, dtype=F64),
    "jordan": lambda n: JordanCell(n, 3, 2, dtype=F64),
    "jordan-relu-identity": lambda n: JordanCell(
        n, 3, 2, nonlinearity="relu", output_activation="identity", dtype=F64
    ),
    "jordan-nobias": lambda n: JordanCell(n, 3, 2, bias=False, dtype=F64),
    "lstm": lambda n: LSTMCell(n, 3, dtype=F64),
    "lstm-proj": lambda n: LSTMCell(n, 3, proj_size=2, dtype=F64),
    "lstm-peephole": lambda n: LSTMCell(n, 3, peephole=True, dtype=F64),
    "lstm-layernorm": lambda n: LSTMCell(n, 3, layer_norm=True, dtype=F64),
    "lstm-all": lambda n: LSTMCell(
        n, 3, proj_size=2, peephole=True, layer_norm=True, forget_bias=1.0, dtype=F64
    ),
    "lstm-nobias": lambda n: LSTMCell(n, 3, bias=False, dtype=F64),
    "lstm-nobias-all": lambda n: LSTMCell(
        n, 3, bias=False, proj_size=2, peephole=True, layer_norm=True, dtype=F64
    ),
    "gru": lambda n: GRUCell(n, 3, dtype=F64),
    "gru-textbook": lambda n: GRUCell(n, 3, reset_after=False, dtype=F64),
    "gru-nobias": lambda n: GRUCell(n, 3, bias=False, dtype=F64),
    "gru-textbook-nobias": lambda n: GRUCell(n, 3, bias=False, reset_after=False, dtype=F64),
    "mingru": lambda n: MinGRUCell(n, 3, dtype=F64),
    "mingru-linear-nobias": lambda n: MinGRUCell(n, 3, bias=False, candidate="linear", dtype=F64),
    "minlstm": lambda n: MinLSTMCell(n, 3, dtype=F64),
    "minlstm-linear-nobias": lambda n: MinLSTMCell(n, 3, bias=False, candidate="linear", dtype=F64),
}


def randomize(cell: torch.nn.Module, seed: int = 0, scale: float = 0.8) -> torch.nn.Module:
    """Give every parameter (layer-norm gains and biases included) random, non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return cell


def random_state(cell, batch: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    size = cell.state_size
    if isinstance(size, tuple):
        return type(size)(*(torch.randn(batch, n, generator=g, dtype=F64) * 0.5 for n in size))
    return torch.randn(batch, size, generator=g, dtype=F64) * 0.5


def as_tuple(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


# -- gradcheck ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradcheck_input_state_parameters(name):
    torch.manual_seed(0)
    cell = randomize(CELLS[name](2), seed=3, scale=0.5)
    names = [n for n, _ in cell.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in cell.named_parameters())
    x = torch.randn(2, 2, dtype=F64, requires_grad=True)
    fields = tuple(s.clone().requires_grad_() for s in as_tuple(random_state(cell, 2)))
    size = cell.state_size

    def fn(x, *rest):
        state_fields, ps = rest[: len(fields)], rest[len(fields) :]
        state = type(size)(*state_fields) if isinstance(size, tuple) else state_fields[0]
        y, new = functional_call(cell, dict(zip(names, ps, strict=True)), (x, state))
        return (y, *as_tuple(new))

    assert torch.autograd.gradcheck(fn, (x, *fields, *params))


# -- torch.nn references --------------------------------------------------------------------------


def steps(cell, xs, state):
    """Run ``cell.step`` over a list of inputs; return the outputs and states after each step."""
    out = []
    for x in xs:
        y, state = cell.step(x, state)
        out.append((y, state))
    return out


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_elman_matches_torch_rnncell(nonlinearity, bias):
    torch.manual_seed(0)
    cell = ElmanCell(3, 4, nonlinearity=nonlinearity, bias=bias, dtype=F64)
    ref = torch.nn.RNNCell(3, 4, nonlinearity=nonlinearity, bias=bias, dtype=F64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(getattr(cell, name))
    xs = list(torch.randn(4, 5, 3, dtype=F64))
    h = torch.randn(5, 4, dtype=F64)
    h_ref = h
    for (y, h_new), x in zip(steps(cell, xs, h), xs, strict=True):
        h_ref = ref(x, h_ref)
        torch.testing.assert_close(y, h_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(h_new, h_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_matches_torch_lstmcell(bias):
    torch.manual_seed(0)
    cell = LSTMCell(3, 4, bias=bias, dtype=F64)
    ref = torch.nn.LSTMCell(3, 4, bias=bias, dtype=F64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(getattr(cell, name))
    xs = list(torch.randn(4, 5, 3, dtype=F64))
    h, c = torch.randn(5, 4, dtype=F64), torch.randn(5, 4, dtype=F64)
    ref_state = (h, c)
    for (y, state), x in zip(steps(cell, xs, LSTMState(h, c)), xs, strict=True):
        ref_state = ref(x, ref_state)
        assert isinstance(state, LSTMState)
        torch.testing.assert_close(y, ref_state[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(state.h, ref_state[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(state.c, ref_state[1], rtol=0, atol=1e-12)


def test_lstm_proj_matches_torch_lstm():
    """A second independent reference for proj_size: torch.nn.LSTM(proj_size=...) run one layer."""
    torch.manual_seed(0)
    cell = LSTMCell(3, 4, proj_size=2, dtype=F64)
    ref = torch.nn.LSTM(3, 4, proj_size=2, dtype=F64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(getattr(cell, name.removesuffix("_l0")))
    x = torch.randn(4, 5, 3, dtype=F64)
    h0, c0 = torch.randn(5, 2, dtype=F64), torch.randn(5, 4, dtype=F64)
    out, (hn, cn) = ref(x, (h0[None], c0[None]))
    results = steps(cell, list(x), LSTMState(h0, c0))
    torch.testing.assert_close(torch.stack([y for y, _ in results]), out, rtol=0, atol=1e-12)
    torch.testing.assert_close(results[-1][1].h, hn[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(results[-1][1].c, cn[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_reset_after_matches_torch_grucell(bias):
    torch.manual_seed(0)
    cell = GRUCell(3, 4, bias=bias, dtype=F64)
    ref = torch.nn.GRUCell(3, 4, bias=bias, dtype=F64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(getattr(cell, name))
    xs = list(torch.randn(4, 5, 3, dtype=F64))
    h_ref = torch.randn(5, 4, dtype=F64)
    for (y, h), x in zip(steps(cell, xs, h_ref), xs, strict=True):
        h_ref = ref(x, h_ref)
        torch.testing.assert_close(y, h_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)


# -- NumPy references for the variants torch lacks --------------------------------------------------


def np_params(cell) -> dict[str, np.ndarray]:
    return {name: p.detach().numpy().copy() for name, p in cell.named_parameters()}


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def layer_norm(a, weight, bias=None, eps=1e-5):
    mu = a.mean(-1, keepdims=True)
    var = ((a - mu) ** 2).mean(-1, keepdims=True)  # biased variance, as LayerNorm
    out = (a - mu) / np.sqrt(var + eps) * weight
    return out if bias is None else out + bias


def np_elman_readout(P, x, h, phi=np.tanh, psi=sig):
    # h_t = phi(x W_xh + b_ih + h W_hh + b_hh);  y_t = psi(h_t W_hy + b_y)
    h = phi(x @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"])
    y = psi(h @ P["weight_hy"].T + P["bias_y"])
    return y, h


def np_jordan(P, x, y_prev):
    # h_t = tanh(x W_xh + y_{t-1} W_yh + b_h);  y_t = tanh(h_t W_hy + b_y); the state is y_t
    h = np.tanh(x @ P["weight_ih"].T + y_prev @ P["weight_yh"].T + P["bias_h"])
    y = np.tanh(h @ P["weight_hy"].T + P["bias_y"])
    return y, y


def np_gru_textbook(P, x, h):
    H = h.shape[-1]
    Wi, Wh, bi, bh = P["weight_ih"], P["weight_hh"], P["bias_ih"], P["bias_hh"]
    r = sig(x @ Wi[:H].T + bi[:H] + h @ Wh[:H].T + bh[:H])
    z = sig(x @ Wi[H : 2 * H].T + bi[H : 2 * H] + h @ Wh[H : 2 * H].T + bh[H : 2 * H])
    n = np.tanh(x @ Wi[2 * H :].T + bi[2 * H :] + (r * h) @ Wh[2 * H :].T + bh[2 * H :])
    h = z * h + (1 - z) * n
    return h, h


def np_lstm(P, x, state, *, peephole=False, norm=False, proj=False):
    """The LSTM equations written out gate by gate (blocks i, f, g, o)."""
    h, c = state
    H = c.shape[-1]
    ax = x @ P["weight_ih"].T
    ah = h @ P["weight_hh"].T
    if norm:  # each product layer-normalised over all 4H features (gain only, no shift)
        ax = layer_norm(ax, P["norm_x.weight"])
        ah = layer_norm(ah, P["norm_h.weight"])
    a = ax + ah
    if "bias_ih" in P:
        a = a + P["bias_ih"] + P["bias_hh"]
    ai, af, ag, ao = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    if peephole:
        ai = ai + P["weight_ci"] * c
        af = af + P["weight_cf"] * c
    i, f, g = sig(ai), sig(af), np.tanh(ag)
    c_new = f * c + i * g
    if peephole:
        ao = ao + P["weight_co"] * c_new  # the output gate peeks at the *new* cell
    o = sig(ao)
    cc = layer_norm(c_new, P["norm_c.weight"], P["norm_c.bias"]) if norm else c_new
    h_new = o * np.tanh(cc)
    if proj:
        h_new = h_new @ P["weight_hr"].T
    return h_new, (h_new, c_new)


def np_g(a):
    return np.where(a >= 0, a + 0.5, sig(a))  # Feng et al. 2024, Appendix B


def np_mingru(P, x, h, g=np_g):
    H = h.shape[-1]
    a = x @ P["weight_ih"].T + P["bias_ih"]
    z, h_tilde = sig(a[:, :H]), g(a[:, H:])
    h = (1 - z) * h + z * h_tilde
    return h, h


def np_minlstm(P, x, h, g=np_g):
    H = h.shape[-1]
    a = x @ P["weight_ih"].T + P["bias_ih"]
    f, i, h_tilde = sig(a[:, :H]), sig(a[:, H : 2 * H]), g(a[:, 2 * H :])
    h = f / (f + i) * h + i / (f + i) * h_tilde
    return h, h


NUMPY_CASES = {
    "mingru": (lambda: MinGRUCell(3, 4, dtype=F64), np_mingru),
    "mingru-linear": (
        lambda: MinGRUCell(3, 4, candidate="linear", dtype=F64),
        lambda P, x, h: np_mingru(P, x, h, g=lambda a: a),
    ),
    "minlstm": (lambda: MinLSTMCell(3, 4, dtype=F64), np_minlstm),
    "minlstm-linear": (
        lambda: MinLSTMCell(3, 4, candidate="linear", dtype=F64),
        lambda P, x, h: np_minlstm(P, x, h, g=lambda a: a),
    ),
    "elman-readout": (
        lambda: ElmanCell(3, 4, readout_size=2, readout_activation="sigmoid", dtype=F64),
        np_elman_readout,
    ),
    "elman-relu-readout-identity": (
        lambda: ElmanCell(3, 4, nonlinearity="relu", readout_size=2, dtype=F64),
        lambda P, x, h: np_elman_readout(P, x, h, phi=lambda a: np.maximum(a, 0), psi=lambda a: a),
    ),
    "jordan": (lambda: JordanCell(3, 4, 2, dtype=F64), np_jordan),
    "gru-textbook": (lambda: GRUCell(3, 4, reset_after=False, dtype=F64), np_gru_textbook),
    "lstm-peephole": (
        lambda: LSTMCell(3, 4, peephole=True, dtype=F64),
        lambda P, x, s: np_lstm(P, x, s, peephole=True),
    ),
    "lstm-layernorm": (
        lambda: LSTMCell(3, 4, layer_norm=True, dtype=F64),
        lambda P, x, s: np_lstm(P, x, s, norm=True),
    ),
    "lstm-proj": (
        lambda: LSTMCell(3, 4, proj_size=2, dtype=F64),
        lambda P, x, s: np_lstm(P, x, s, proj=True),
    ),
    "lstm-all": (
        lambda: LSTMCell(3, 4, proj_size=2, peephole=True, layer_norm=True, dtype=F64),
        lambda P, x, s: np_lstm(P, x, s, peephole=True, norm=True, proj=True),
    ),
    "lstm-plain": (lambda: LSTMCell(3, 4, dtype=F64), np_lstm),
}


@pytest.mark.parametrize("name", sorted(NUMPY_CASES))
def test_cell_matches_numpy_equations(name):
    make, ref_step = NUMPY_CASES[name]
    cell = randomize(make(), seed=7, scale=0.7)
    P = np_params(cell)
    xs = torch.randn(4, 5, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    state = random_state(cell, 5)
    ref_state = tuple(s.numpy() for s in state) if isinstance(state, tuple) else state.numpy()
    for (y, new), x in zip(steps(cell, list(xs), state), xs, strict=True):
        y_ref, ref_state = ref_step(P, x.numpy(), ref_state)
        np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=0, atol=1e-10)
        for got, want in zip(as_tuple(new), as_tuple(ref_state), strict=True):
            np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-10)


def test_layer_norm_gains_matter_in_numpy_check():
    """Guard for the NumPy check: randomised layer-norm gains really change the output."""
    cell = randomize(LSTMCell(3, 4, layer_norm=True, dtype=F64), seed=7)
    x, state = torch.randn(2, 3, dtype=F64), random_state(cell, 2)
    y1, _ = cell.step(x, state)
    with torch.no_grad():
        cell.norm_c.weight.fill_(1.0)
    y2, _ = cell.step(x, state)
    assert (y1 - y2).abs().max() > 1e-3


# -- backprop through time by hand ------------------------------------------------------------------


def scalar_elman(nonlinearity: str) -> Recurrent:
    cell = ElmanCell(1, 1, nonlinearity=nonlinearity, bias=False, dtype=F64)
    with torch.no_grad():
        cell.weight_ih.fill_(0.5)  # w_x
        cell.weight_hh.fill_(0.8)  # w_h
    return Recurrent(cell)


X_BPTT = torch.tensor([1.0, -1.0, 2.0], dtype=F64).view(3, 1, 1)  # x_1, x_2, x_3; h_0 = 0


def bptt_grads(model: Recurrent, loss_kind: str) -> tuple[float, float]:
    out, _ = model(X_BPTT)
    loss = out[-1].sum() if loss_kind == "last" else out.sum()
    cell = model.cells[0]
    g_wh, g_wx = torch.autograd.grad(loss, [cell.weight_hh, cell.weight_ih])
    return g_wh.item(), g_wx.item()


def test_bptt_by_hand_identity_last_step():
    # h_t = w_x x_t + w_h h_{t-1}, w_x = 0.5, w_h = 0.8, h_0 = 0, x = (1, -1, 2):
    #   h_1 = 0.5*1              = 0.5
    #   h_2 = 0.5*(-1) + 0.8*0.5 = -0.1
    #   h_3 = 0.5*2 + 0.8*(-0.1) = 0.92
    # L = h_3. Step k contributes dL/dh_k * dh_k/dw_h(direct) = w_h^(3-k) * h_{k-1}:
    #   k=1: 0.8^2 * h_0 = 0.64 * 0    = 0
    #   k=2: 0.8^1 * h_1 = 0.8  * 0.5  = 0.4
    #   k=3: 0.8^0 * h_2 = 1    * -0.1 = -0.1
    #   dL/dw_h = 0 + 0.4 - 0.1 = 0.3
    # and for w_x the direct term is x_k:
    #   k=1: 0.64 * 1 = 0.64;  k=2: 0.8 * (-1) = -0.8;  k=3: 1 * 2 = 2
    #   dL/dw_x = 0.64 - 0.8 + 2 = 1.84
    g_wh, g_wx = bptt_grads(scalar_elman("identity"), "last")
    contributions_wh = [0.64 * 0.0, 0.8 * 0.5, 1.0 * -0.1]
    contributions_wx = [0.64 * 1.0, 0.8 * -1.0, 1.0 * 2.0]
    assert g_wh == pytest.approx(sum(contributions_wh), abs=1e-14) and sum(contributions_wh) == pytest.approx(
        0.3
    )
    assert g_wx == pytest.approx(sum(contributions_wx), abs=1e-14) and sum(contributions_wx) == pytest.approx(
        1.84
    )


def test_bptt_by_hand_identity_sum_of_steps():
    # Same net, L = h_1 + h_2 + h_3. dL/dh_k = sum_{t>=k} w_h^(t-k):
    #   dL/dh_3 = 1;  dL/dh_2 = 1 + 0.8 = 1.8;  dL/dh_1 = 1 + 0.8 + 0.64 = 2.44
    # dL/dw_h = sum_k dL/dh_k * h_{k-1} = 2.44*0 + 1.8*0.5 + 1*(-0.1) = 0 + 0.9 - 0.1 = 0.8
    # dL/dw_x = sum_k dL/dh_k * x_k     = 2.44*1 + 1.8*(-1) + 1*2     = 2.44 - 1.8 + 2 = 2.64
    g_wh, g_wx = bptt_grads(scalar_elman("identity"), "sum")
    assert g_wh == pytest.approx(2.44 * 0.0 + 1.8 * 0.5 + 1.0 * -0.1, abs=1e-14)
    assert g_wx == pytest.approx(2.44 * 1.0 + 1.8 * -1.0 + 1.0 * 2.0, abs=1e-14)
    assert g_wh == pytest.approx(0.8, abs=1e-14) and g_wx == pytest.approx(2.64, abs=1e-14)


def test_bptt_by_hand_tanh_sum_of_steps():
    # h_t = tanh(a_t), a_t = 0.5 x_t + 0.8 h_{t-1}, h_0 = 0, x = (1, -1, 2), L = h_1 + h_2 + h_3.
    #   a_1 = 0.5                      h_1 = tanh(0.5)      = 0.46211715726
    #   a_2 = -0.5 + 0.8*h_1 = -0.13031  h_2 = tanh(-0.13031) = -0.12957373
    #   a_3 = 1.0 + 0.8*h_2  =  0.89634  h_3 = tanh(0.89634)  =  0.71451157
    # delta_t = dL/da_t, back from the last step (tanh' = 1 - h^2):
    #   delta_3 = (1 - h_3^2) * 1
    #   delta_2 = (1 - h_2^2) * (1 + 0.8 * delta_3)
    #   delta_1 = (1 - h_1^2) * (1 + 0.8 * delta_2)
    #   delta_3 = 1 - 0.71451157^2                      = 0.48947321
    #   delta_2 = (1 - 0.12957373^2) * (1 + 0.8*0.48947321) = 1.36821487
    #   delta_1 = (1 - 0.46211716^2) * (1 + 0.8*1.36821487) = 1.64727132
    # dL/dw_h = delta_1*h_0 + delta_2*h_1 + delta_3*h_2
    #         = 1.64727132*0 + 1.36821487*0.46211716 + 0.48947321*(-0.12957373)
    #         = 0 + 0.63227556 - 0.06342287 = 0.56885270
    # dL/dw_x = delta_1*x_1 + delta_2*x_2 + delta_3*x_3
    #         = 1.64727132*1 + 1.36821487*(-1) + 0.48947321*2
    #         = 1.64727132 - 1.36821487 + 0.97894642 = 1.25800287
    w_x, w_h, x = 0.5, 0.8, [1.0, -1.0, 2.0]
    h = [0.0]
    for x_t in x:
        h.append(math.tanh(w_x * x_t + w_h * h[-1]))
    d3 = 1 - h[3] ** 2
    d2 = (1 - h[2] ** 2) * (1 + w_h * d3)
    d1 = (1 - h[1] ** 2) * (1 + w_h * d2)
    want_wh = d1 * h[0] + d2 * h[1] + d3 * h[2]
    want_wx = d1 * x[0] + d2 * x[1] + d3 * x[2]
    g_wh, g_wx = bptt_grads(scalar_elman("tanh"), "sum")
    assert g_wh == pytest.approx(want_wh, rel=1e-13, abs=1e-15)
    assert g_wx == pytest.approx(want_wx, rel=1e-13, abs=1e-15)
    assert g_wh == pytest.approx(0.56885270, abs=1e-8) and g_wx == pytest.approx(1.25800287, abs=1e-8)
    # and the forward values in the comment above
    assert h[1:] == pytest.approx([0.46211716, -0.12957373, 0.71451157], abs=1e-8)


# -- initialisation, options, state ----------------------------------------------------------------


@pytest.mark.parametrize("value", [1.0, 2.5, -0.5])
def test_forget_bias_init(value):
    H = 5
    for cell in (
        LSTMCell(3, H, forget_bias=value),
        LSTMCell(3, H, forget_bias=value, proj_size=2, peephole=True, layer_norm=True),
    ):
        assert torch.all(cell.bias_ih[H : 2 * H] == value)
        assert torch.all(cell.bias_hh[H : 2 * H] == 0)
        bound = 1 / math.sqrt(H)
        others = torch.cat([cell.bias_ih[:H], cell.bias_ih[2 * H :], cell.bias_hh[:H], cell.bias_hh[2 * H :]])
        assert others.abs().max() <= bound and others.abs().max() > 0
        with torch.no_grad():
            cell.bias_ih.zero_()
            cell.bias_hh.fill_(3.0)
        cell.reset_parameters()
        assert torch.all(cell.bias_ih[H : 2 * H] == value)
        assert torch.all(cell.bias_hh[H : 2 * H] == 0)
        copy = cell.with_input_size(7)
        assert copy.forget_bias == value and torch.all(copy.bias_ih[H : 2 * H] == value)


def test_forget_bias_needs_bias():
    with pytest.raises(ValueError):
        LSTMCell(3, 4, bias=False, forget_bias=1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ElmanCell(40, 64, readout_size=30),
        lambda: JordanCell(40, 64, 30),
        lambda: LSTMCell(40, 64, proj_size=30, peephole=True, layer_norm=True),
        lambda: GRUCell(40, 64),
        lambda: GRUCell(40, 64, reset_after=False),
    ],
)
def test_default_init_uniform(make):
    torch.manual_seed(0)
    cell = make()
    bound = 1 / math.sqrt(64)
    direct = dict(cell.named_parameters(recurse=False))
    assert direct
    for name, p in direct.items():
        p = p.detach()
        assert p.abs().max() <= bound, name
        assert p.numel() < 30 or (p.max() > 0.8 * bound and p.min() < -0.8 * bound), name
        if p.numel() >= 1000:  # U(-b, b): mean 0, std b/sqrt(3)
            assert abs(p.mean().item()) < 0.05 * bound, name
            assert p.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), name
    if isinstance(cell, LSTMCell):  # the layer norms start as the identity map
        assert torch.all(cell.norm_x.weight == 1) and torch.all(cell.norm_h.weight == 1)
        assert torch.all(cell.norm_c.weight == 1) and torch.all(cell.norm_c.bias == 0)
    # two cells get different draws
    other = make()
    assert not torch.equal(cell.weight_ih, other.weight_ih)


WITH_INPUT = [
    (
        lambda: ElmanCell(
            3, 4, nonlinearity="relu", bias=False, readout_size=2, readout_activation="sigmoid"
        ),
        ("hidden_size", "nonlinearity", "readout_size", "output_size"),
    ),
    (lambda: ElmanCell(3, 4, nonlinearity=softsign), ("hidden_size", "phi")),
    (
        lambda: JordanCell(3, 4, 2, nonlinearity="relu", output_activation="identity", bias=False),
        ("hidden_size", "output_size", "nonlinearity", "output_activation"),
    ),
    (
        lambda: LSTMCell(3, 4, proj_size=2, peephole=True, layer_norm=True, forget_bias=1.0),
        ("hidden_size", "proj_size", "peephole", "layer_norm", "forget_bias", "output_size"),
    ),
    (lambda: LSTMCell(3, 4, bias=False), ("hidden_size", "proj_size", "peephole", "layer_norm")),
    (lambda: GRUCell(3, 4, reset_after=False, bias=False), ("hidden_size", "reset_after")),
]


@pytest.mark.parametrize("make,options", WITH_INPUT)
def test_with_input_size(make, options):
    cell = make()
    new = cell.with_input_size(7)
    assert type(new) is type(cell) and new is not cell
    assert new.input_size == 7 and cell.input_size == 3
    for option in options:
        assert getattr(new, option) == getattr(cell, option), option
    assert new.state_size == cell.state_size
    shapes = {n: p.shape for n, p in cell.named_parameters()}
    new_shapes = {n: p.shape for n, p in new.named_parameters()}
    assert new_shapes.keys() == shapes.keys()
    for n, shape in shapes.items():
        if n == "weight_ih":
            assert new_shapes[n] == (shape[0], 7)
        else:
            assert new_shapes[n] == shape, n
    # freshly initialised, not sharing the original's parameters
    recurrent = "weight_yh" if isinstance(cell, JordanCell) else "weight_hh"
    assert not torch.equal(getattr(new, recurrent), getattr(cell, recurrent))
    y, _ = new(torch.randn(2, 7))
    assert y.shape == (2, cell.output_size)


def test_with_input_size_keeps_constructor_dtype():
    cell = GRUCell(3, 4, dtype=F64)
    assert all(p.dtype == F64 for p in cell.with_input_size(5).parameters())


def test_with_input_size_keeps_converted_dtype():
    cell = ElmanCell(3, 4).double()
    assert all(p.dtype == F64 for p in cell.with_input_size(5).parameters())


def test_recurrent_of_converted_cell_runs():
    model = Recurrent(ElmanCell(3, 4).double(), num_layers=2, bidirectional=True)
    out, _ = model(torch.randn(5, 2, 3, dtype=F64))
    assert out.dtype == F64


@pytest.mark.parametrize("proj", [0, 2])
def test_lstm_state_namedtuple(proj):
    cell = LSTMCell(3, 5, proj_size=proj)
    R = proj or 5
    assert cell.state_size == LSTMState(h=R, c=5) and isinstance(cell.state_size, LSTMState)
    assert LSTMState._fields == ("h", "c")
    s0 = cell.init_state(4)
    assert isinstance(s0, LSTMState)
    assert s0.h.shape == (4, R) and s0.c.shape == (4, 5)
    assert torch.all(s0.h == 0) and torch.all(s0.c == 0)
    y, s = cell(torch.randn(4, 3))
    assert isinstance(s, LSTMState)
    assert y.shape == (4, R) and s.h.shape == (4, R) and s.c.shape == (4, 5)
    assert torch.equal(y, s.h)
    assert cell.output_size == R
    # a plain tuple is accepted as the state too
    y2, s2 = cell.step(torch.randn(4, 3), (s.h, s.c))
    assert isinstance(s2, LSTMState)


def test_state_sizes_and_forward_default_state():
    torch.manual_seed(0)
    x = torch.randn(2, 3)
    for cell, out, state in [
        (ElmanCell(3, 4), 4, 4),
        (ElmanCell(3, 4, readout_size=6), 6, 4),
        (JordanCell(3, 4, 5), 5, 5),
        (GRUCell(3, 4), 4, 4),
    ]:
        assert cell.output_size == out and cell.state_size == state
        y, s = cell(x)
        assert y.shape == (2, out) and s.shape == (2, state)
        y0, s0 = cell.step(x, torch.zeros(2, state))
        assert torch.equal(y, y0) and torch.equal(s, s0)


def test_unknown_activation():
    with pytest.raises(ValueError):
        ElmanCell(3, 4, nonlinearity="swish")
