"""Recurrent.step: streaming one step at a time is forward over the whole sequence.

Stepping T times from a state gives forward's outputs and final state, for every cell family and the
torch.nn drop-ins, batched and unbatched, with and without an initial state (also one left by forward
over a prefix); bidirectional layers and bad input are refused with clear messages; the cached weights
of the fast path follow every change of the parameters; gradients through ``step`` are forward's.
"""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import torch
from torch import nn

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, InputError, JordanCell, LSTMCell, LSTMState, Recurrent
from rnnkit.cells.base import map_state
from rnnkit.kernels import steps
from rnnkit.layers import streaming

T, B, F, H = 6, 3, 4, 5  # sequence length, batch, input features, hidden units
F32, F64 = torch.float32, torch.float64
TOL = {F32: {"rtol": 0, "atol": 1e-5}, F64: {"rtol": 0, "atol": 1e-10}}

# name -> factory(input_size, dtype) of the first-layer cell: every family and form, fused or not
FAMILIES = {
    "elman": lambda n, dt: ElmanCell(n, H, dtype=dt),
    "elman-relu-readout": lambda n, dt: ElmanCell(n, H, "relu", readout_size=3, dtype=dt),
    "elman-sigmoid-nobias": lambda n, dt: ElmanCell(n, H, "sigmoid", bias=False, dtype=dt),
    "elman-callable": lambda n, dt: ElmanCell(n, H, torch.sin, dtype=dt),
    "jordan": lambda n, dt: JordanCell(n, H, 3, dtype=dt),
    "lstm": lambda n, dt: LSTMCell(n, H, dtype=dt),
    "lstm-proj": lambda n, dt: LSTMCell(n, H, proj_size=3, dtype=dt),
    "lstm-nobias": lambda n, dt: LSTMCell(n, H, bias=False, dtype=dt),
    "lstm-peephole": lambda n, dt: LSTMCell(n, H, peephole=True, dtype=dt),
    "lstm-layernorm": lambda n, dt: LSTMCell(n, H, layer_norm=True, dtype=dt),
    "gru": lambda n, dt: GRUCell(n, H, dtype=dt),
    "gru-textbook": lambda n, dt: GRUCell(n, H, reset_after=False, dtype=dt),
    "gru-textbook-nobias": lambda n, dt: GRUCell(n, H, bias=False, reset_after=False, dtype=dt),
}
# name -> (class, keyword arguments) of the torch.nn drop-ins
DROP_INS = {
    "LSTM": (rnn.LSTM, {}),
    "LSTM-proj": (rnn.LSTM, {"proj_size": 3}),
    "GRU": (rnn.GRU, {}),
    "RNN": (rnn.RNN, {}),
    "RNN-relu": (rnn.RNN, {"nonlinearity": "relu"}),
}


# models whose every cell has a fused step (float32), for the tests of the fast path and its cache
CACHED_NAMES = ["LSTM", "LSTM-proj", "GRU", "RNN", "recurrent-lstm-proj", "recurrent-gru-textbook"]
CACHED_NAMES += ["recurrent-elman-readout"]


# -- helpers -------------------------------------------------------------------------------------------


def fields(state) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def assert_state_close(a, b, **kw) -> None:
    assert type(a) is type(b)
    for x, y in zip(fields(a), fields(b), strict=True):
        torch.testing.assert_close(x, y, **kw)


def family(name: str, layers: int = 2, dtype: torch.dtype = F64, **kw) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(FAMILIES[name](F, dtype), num_layers=layers, **kw)


def drop_in(name: str, layers: int = 2, dtype: torch.dtype = F64, **kw) -> Recurrent:
    cls, args = DROP_INS[name]
    torch.manual_seed(0)
    return cls(F, H, layers, dtype=dtype, **args, **kw)


def random_state(model: Recurrent, *lead: int, dtype: torch.dtype = F64):
    """A random state (K, *lead, n) per field in the model's structure."""
    size = model.layer_cells()[0].state_size
    K = model.num_layers
    make = [torch.randn(K, *lead, n, dtype=dtype) * 0.5 for n in fields(size)]
    return type(size)(*make) if isinstance(size, tuple) else make[0]


def cached_model(name: str) -> Recurrent:
    if name.startswith("recurrent-"):
        return family(
            name.removeprefix("recurrent-").replace("elman-readout", "elman-relu-readout"), dtype=F32
        )
    return drop_in(name, dtype=F32)


CACHED_MAKERS = [lambda n=name: cached_model(n) for name in CACHED_NAMES]


def initial_state(model: Recurrent, start: str, dtype: torch.dtype):
    if start == "zeros":
        return None
    if start == "random":
        return random_state(model, B, dtype=dtype)
    with torch.no_grad():  # "primed": the state forward leaves after a prefix
        return model(torch.randn(4, B, F, dtype=dtype))[1]


def stream(model: Recurrent, x: torch.Tensor, state=None):
    """Step through x (T, ...) one step at a time: (stacked outputs, final state)."""
    ys = []
    for t in range(x.shape[0]):
        y, state = model.step(x[t], state)
        ys.append(y)
    return torch.stack(ys), state


def check_stream_equals_forward(model: Recurrent, dtype: torch.dtype, start: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(T, B, F, dtype=dtype)
    state = initial_state(model, start, dtype)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "LSTM with projections is not supported with oneDNN"
        y, final = model(x, state)
        ys, streamed = stream(model, x, state)
    torch.testing.assert_close(ys, y, **TOL[dtype])
    assert_state_close(streamed, final, **TOL[dtype])


# -- stepping equals forward ---------------------------------------------------------------------------

dtypes = pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
starts = pytest.mark.parametrize("start", ["zeros", "random", "primed"])
layer_counts = pytest.mark.parametrize("layers", [1, 2])


@pytest.mark.parametrize("name", list(FAMILIES))
@layer_counts
@dtypes
@starts
def test_step_equals_forward(name, layers, dtype, start):
    check_stream_equals_forward(family(name, layers, dtype), dtype, start)


@pytest.mark.parametrize("name", list(DROP_INS))
@layer_counts
@dtypes
@starts
def test_drop_in_step_equals_forward(name, layers, dtype, start):
    check_stream_equals_forward(drop_in(name, layers, dtype), dtype, start)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_drop_in_step_equals_torch_one_step_at_a_time(name):
    torch.manual_seed(0)
    ours = getattr(rnn, name)(F, H, 2)
    theirs = getattr(torch.nn, name)(F, H, 2)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, F)
    s_ours = s_theirs = None
    with torch.no_grad():
        for t in range(T):
            y_ours, s_ours = ours.step(x[t], s_ours)
            y_theirs, s_theirs = theirs(x[t : t + 1], s_theirs)
            torch.testing.assert_close(y_ours, y_theirs[0], **TOL[F32])
    for a, b in zip(fields(s_ours), fields(s_theirs), strict=True):
        torch.testing.assert_close(a, b, **TOL[F32])


@pytest.mark.parametrize("name", ["lstm", "gru", "elman-relu-readout", "jordan"])
def test_one_step_forward_without_grad_takes_the_streaming_step(monkeypatch, name):
    """forward on T = 1 under no_grad (generation) runs the cached streaming step, with the same values
    as the full forward; with grad enabled it does not (the step has no analytic backward)."""
    model = family(name, 2, F32)
    x, state = torch.randn(1, B, F), random_state(model, B, dtype=F32)
    y_grad, final_grad = model(x, state)
    calls = []
    real = streaming.step
    monkeypatch.setattr(streaming, "step", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        y, final = model(x, state)
    assert calls == [1]
    torch.testing.assert_close(y, y_grad.detach(), **TOL[F32])
    assert_state_close(final, map_state(lambda s: s.detach(), final_grad), **TOL[F32])
    model(x, state)
    assert calls == [1]


@pytest.mark.parametrize("name", ["lstm", "lstm-proj", "gru", "elman-relu-readout", "jordan"])
@dtypes
def test_step_under_grad_mode_equals_forward(name, dtype):
    """With grad enabled (the plain cell.step path) the values are the same too."""
    model = family(name, 2, dtype)
    x, state = torch.randn(T, B, F, dtype=dtype), random_state(model, B, dtype=dtype)
    y, final = model(x, state)
    ys, streamed = stream(model, x, state)
    assert ys.requires_grad
    torch.testing.assert_close(ys, y, **TOL[dtype])
    assert_state_close(streamed, final, **TOL[dtype])


def test_step_under_inference_mode():
    model = drop_in("LSTM", dtype=F32)
    x = torch.randn(T, B, F)
    with torch.inference_mode():
        ys, streamed = stream(model, x)
        y, final = model(x)
    torch.testing.assert_close(ys, y, **TOL[F32])
    assert_state_close(streamed, final, **TOL[F32])


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "jordan"])
def test_unbatched_step_equals_unbatched_forward(name):
    model = family(name)
    x, state = torch.randn(T, F, dtype=F64), random_state(model, dtype=F64)
    with torch.no_grad():
        y, final = model(x, state)
        ys, streamed = stream(model, x, state)
        y0, s0 = model.step(x[0])
    assert ys.shape == y.shape and y0.shape == y.shape[1:]
    torch.testing.assert_close(ys, y, **TOL[F64])
    assert_state_close(streamed, final, **TOL[F64])
    assert [tuple(s.shape) for s in fields(s0)] == [tuple(s.shape) for s in fields(final)]


def test_batch_size_may_change_between_steps():
    model = drop_in("GRU", dtype=F32)
    with torch.no_grad():
        for batch in (2, 3, 1, 2):
            x, state = torch.randn(1, batch, F), random_state(model, batch, dtype=F32)
            y, final = model(x, state)
            y1, state1 = model.step(x[0], state)
            torch.testing.assert_close(y1, y[0], **TOL[F32])
            torch.testing.assert_close(state1, final, **TOL[F32])


def test_empty_batch():
    model = drop_in("LSTM", dtype=F32)
    with torch.no_grad():
        y, state = model.step(torch.randn(0, F))
    assert y.shape == (0, H) and state.h.shape == (2, 0, H) and state.c.shape == (2, 0, H)


def test_state_may_be_a_list_or_non_contiguous():
    model = drop_in("LSTM", dtype=F32)
    x = torch.randn(B, F)
    h, c = (torch.randn(B, 2, H).transpose(0, 1) for _ in range(2))  # (2, B, H), not contiguous
    with torch.no_grad():
        expected = model(x[None], (h.contiguous(), c.contiguous()))
        for state in ([h, c], (h, c), LSTMState(h, c)):
            y, final = model.step(x, state)
            assert isinstance(final, LSTMState)
            torch.testing.assert_close(y, expected[0][0], **TOL[F32])
            assert_state_close(final, expected[1], **TOL[F32])


@pytest.mark.parametrize("small", [0, 10**12], ids=["packed", "addmm"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("make", [*CACHED_MAKERS], ids=[*CACHED_NAMES])
def test_both_products_equal_forward(monkeypatch, small, batch, make):
    """The fast path multiplies through oneDNN's packed weights or addmm (one row, small weights)."""
    monkeypatch.setattr(steps, "SMALL_GEMV", small)
    model = make()
    x, state = torch.randn(4, batch, F), random_state(model, batch, dtype=F32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, final = model(x, state)
        ys, streamed = stream(model, x, state)
    torch.testing.assert_close(ys, y, **TOL[F32])
    assert_state_close(streamed, final, **TOL[F32])


# -- dropout between layers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda **kw: family("lstm", dtype=F32, **kw), lambda **kw: drop_in("GRU", dtype=F32, **kw)]
)
def test_dropout_applies_in_training_only(make):
    x = torch.randn(B, F)
    with torch.no_grad():
        model = make(dropout=0.5)
        model.eval()
        torch.testing.assert_close(model.step(x)[0], model(x[None])[0][0], **TOL[F32])
        eval_y = model.step(x)[0]
        model.train()
        torch.manual_seed(3)
        train_y = model.step(x)[0]
        assert not torch.allclose(train_y, eval_y)
        # dropout=1 zeroes the input of layer 2: deterministic, and forward does the same
        all_dropped = make(dropout=1.0)
        all_dropped.train()
        torch.testing.assert_close(all_dropped.step(x)[0], all_dropped(x[None])[0][0], **TOL[F32])


# -- refused -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        lambda: Recurrent(LSTMCell(F, H), bidirectional=True),
        lambda: rnn.LSTM(F, H, 2, bidirectional=True),
        lambda: rnn.GRU(F, H, bidirectional=True),
    ],
    ids=["recurrent", "lstm", "gru"],
)
def test_bidirectional_is_refused(model):
    with pytest.raises(InputError, match=r"step needs a unidirectional layer.*reverse direction"):
        model().step(torch.randn(B, F))


MODELS = {
    "recurrent-lstm": lambda: family("lstm", dtype=F32),
    "recurrent-elman": lambda: family("elman", dtype=F32),
    "LSTM": lambda: drop_in("LSTM", dtype=F32),
    "GRU": lambda: drop_in("GRU", dtype=F32),
}
models = pytest.mark.parametrize("make", list(MODELS.values()), ids=list(MODELS))
HIDDEN = r"hidden(\[0\])?"


def n_state(model: Recurrent) -> int:
    return fields(model.layer_cells()[0].state_size)[0]


def state_like(model: Recurrent, *shape: int, extra: int = 0, dtype: torch.dtype = F32):
    size = model.layer_cells()[0].state_size
    made = [torch.zeros(*shape, n + extra, dtype=dtype) for n in fields(size)]
    return type(size)(*made) if isinstance(size, tuple) else made[0]


@models
def test_wrong_feature_size(make):
    with pytest.raises(
        InputError, match=rf"step: input.size\(-1\) must be equal to input_size. Expected {F}, got 7"
    ):
        make().step(torch.randn(B, 7))


@models
@pytest.mark.parametrize("shape", [(1, B, F), (), (1, 1, B, F)])
def test_wrong_number_of_dimensions(make, shape):
    with pytest.raises(
        InputError, match=rf"Expected input to be 1D .* or 2D .*got {len(shape)}D tensor.*forward"
    ):
        make().step(torch.randn(shape))


@models
def test_not_a_tensor(make):
    with pytest.raises(TypeError, match="input must be a Tensor, got list"):
        make().step([[0.0] * F])


@models
@pytest.mark.parametrize(
    ("dtype", "match"),
    [
        (F64, r"input dtype \(torch.float64\) does not match weight dtype \(torch.float32\).*input.to"),
        (torch.int64, r"input dtype \(torch.int64\).*floating-point"),
    ],
)
def test_wrong_dtype(make, dtype, match):
    with pytest.raises(InputError, match=match):
        make().step(torch.zeros(B, F, dtype=dtype))


@models
def test_wrong_device(make):
    with pytest.raises(InputError, match=r"input is on meta but the weights are on cpu"):
        make().step(torch.zeros(B, F, device="meta"))


@models
def test_state_wrong_batch(make):
    model = make()
    n = n_state(model)
    with pytest.raises(
        InputError,
        match=rf"Input batch size {B} doesn't match {HIDDEN} .*Expected {HIDDEN} size \(2, {B}, {n}\)",
    ):
        model.step(torch.randn(B, F), state_like(model, 2, B + 1))


@models
def test_state_wrong_layers(make):
    model = make()
    n = n_state(model)
    with pytest.raises(InputError, match=rf"Expected {HIDDEN} size \(2, {B}, {n}\), got \[1, {B}, {n}\]"):
        model.step(torch.randn(B, F), state_like(model, 1, B))


@models
def test_state_wrong_size(make):
    model = make()
    n = n_state(model)
    with pytest.raises(InputError, match=rf"Expected {HIDDEN} size \(2, {B}, {n}\), got \[2, {B}, {n + 1}\]"):
        model.step(torch.randn(B, F), state_like(model, 2, B, extra=1))


@models
def test_state_per_layer_instead_of_stacked(make):
    """A common slip: passing one layer's (B, n) state; the message says what step expects."""
    model = make()
    with pytest.raises(
        InputError, match=rf"step: for batched 2-D input, {HIDDEN} \(\w+\) should be 3-D .*got 2-D"
    ):
        model.step(torch.randn(B, F), state_like(model, B))


@models
def test_unbatched_state_wrong_dims(make):
    model = make()
    with pytest.raises(
        InputError, match=rf"step: for unbatched 1-D input, {HIDDEN} \(\w+\) should be 2-D .*got 3-D"
    ):
        model.step(torch.randn(F), state_like(model, 2, 1))


@models
def test_state_wrong_dtype(make):
    model = make()
    with pytest.raises(InputError, match=r"must have the input's dtype and device \(torch.float32, cpu\)"):
        model.step(torch.randn(B, F), state_like(model, 2, B, dtype=F64))


def test_lstm_state_structure():
    model = drop_in("LSTM", dtype=F32)
    h = torch.zeros(2, B, H)
    with pytest.raises(
        InputError, match=r"LSTM.step expects the state as a tuple \(h, c\) of tensors, got Tensor"
    ):
        model.step(torch.randn(B, F), h)
    with pytest.raises(
        InputError, match=r"expects the state as a tuple \(h, c\) of tensors, got a tuple of 3"
    ):
        model.step(torch.randn(B, F), (h, h, h))


def test_lstm_state_as_one_2d_tensor_asks_for_the_tuple():
    with pytest.raises(InputError, match=r"expects the state as a tuple \(h, c\) of tensors, got Tensor"):
        drop_in("LSTM", dtype=F32).step(torch.randn(B, F), torch.zeros(B, H))


def test_errors_are_runtime_errors_like_torch_and_leave_the_layer_usable():
    model = drop_in("LSTM", dtype=F32)
    with pytest.raises(RuntimeError):
        model.step(torch.randn(B, F + 1))
    x = torch.randn(B, F)
    with torch.no_grad():
        torch.testing.assert_close(model.step(x)[0], model(x[None])[0][0], **TOL[F32])


# -- the cache follows the parameters -------------------------------------------------------------------

cached = pytest.mark.parametrize("make", CACHED_MAKERS, ids=CACHED_NAMES)


def one_step_reference(model: Recurrent, x: torch.Tensor, state):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y, final = model(x[None], state)
    return y[0], final


def check_sees_change(model: Recurrent, change) -> None:
    """Step, change the parameters with ``change(model)``, step again from the same state: the second
    step uses the new weights."""
    x, state = torch.randn(B, F), random_state(model, B, dtype=F32)
    with torch.no_grad():
        before, _ = model.step(x, state)
    change(model)
    with torch.no_grad():
        after, after_state = model.step(x, state)
    expected, expected_state = one_step_reference(model, x, state)
    torch.testing.assert_close(after, expected, **TOL[F32])
    assert_state_close(after_state, expected_state, **TOL[F32])
    assert not torch.allclose(after, before)


@cached
def test_in_place_update_under_no_grad_is_seen(make):
    def update(model):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5).add_(0.1)

    check_sees_change(make(), update)


@cached
@pytest.mark.parametrize("optimizer", ["sgd", "adam-fused"])
def test_optimizer_step_is_seen(make, optimizer):
    """Including torch's fused optimizers, which update in place without bumping ``_version``."""

    def train(model):
        opt = (
            torch.optim.SGD(model.parameters(), lr=0.5)
            if optimizer == "sgd"
            else torch.optim.Adam(model.parameters(), lr=0.5, fused=True)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model(torch.randn(T, B, F))[0].square().sum().backward()
        opt.step()

    check_sees_change(make(), train)


def test_reassigned_and_loaded_parameters_are_seen():
    def reassign(model):
        model.weight_hh_l1 = nn.Parameter(torch.randn_like(model.weight_hh_l1))

    check_sees_change(drop_in("LSTM", dtype=F32), reassign)

    def reassign_in_cell(model):
        model.cells[0].weight_ih = nn.Parameter(torch.randn_like(model.cells[0].weight_ih))

    check_sees_change(family("gru", dtype=F32), reassign_in_cell)

    for assign in (False, True):
        other = drop_in("GRU", dtype=F32)
        with torch.no_grad():
            for p in other.parameters():
                p.normal_()
        check_sees_change(
            drop_in("GRU", dtype=F32),
            lambda m, o=other, a=assign: m.load_state_dict(o.state_dict(), assign=a),
        )

    def replace_cell(model):
        model.cells[1] = GRUCell(H, H)

    check_sees_change(family("gru", dtype=F32), replace_cell)


def test_conversion_to_float64_is_seen():
    model = drop_in("LSTM", dtype=F32)
    x = torch.randn(B, F, dtype=F64)
    with torch.no_grad():
        model.step(x.float())
        model.double()
        y, final = model.step(x)
    expected, expected_state = one_step_reference(model, x, None)
    torch.testing.assert_close(y, expected, **TOL[F64])
    assert_state_close(final, expected_state, **TOL[F64])


def test_clear_cache_after_a_change_through_data():
    model = drop_in("RNN", dtype=F32)

    def through_data(m):
        for p in m.parameters():
            p.data.mul_(-1.0)  # invisible to the version counter: the documented case for clear_cache
        streaming.clear_cache(m)

    check_sees_change(model, through_data)


def test_cache_is_reused_while_the_weights_stay_and_freed_with_the_layer():
    model = drop_in("LSTM", dtype=F32)
    x = torch.randn(B, F)
    with torch.no_grad():
        state = model.step(x)[1]
        plan = streaming._PLANS[model]
        model.step(x, state)
        assert streaming._PLANS[model] is plan
        model(x[None])  # forward re-binds the drop-in's cells; the weights are the same
        model.step(x, state)
        assert streaming._PLANS[model] is plan
    count, ref = len(streaming._PLANS), weakref.ref(model)
    del model, plan
    gc.collect()
    assert ref() is None  # the cache does not keep the layer alive
    assert len(streaming._PLANS) <= count - 1


def test_no_cache_for_parameters_made_under_inference_mode():
    """Inference tensors have no version counter: such a layer runs the plain steps, uncached."""
    with torch.inference_mode():
        model = drop_in("GRU", dtype=F32)
        x = torch.randn(T, B, F)
        ys, streamed = stream(model, x)
        y, final = model(x)
    assert model not in streaming._PLANS
    torch.testing.assert_close(ys, y, **TOL[F32])
    torch.testing.assert_close(streamed, final, **TOL[F32])


def test_no_cache_when_autograd_needs_the_step():
    model = drop_in("LSTM", dtype=F32)
    streaming.clear_cache(model)
    y, state = model.step(torch.randn(B, F))
    assert y.grad_fn is not None and state.c.grad_fn is not None
    assert model not in streaming._PLANS or not streaming._PLANS[model].steps


# -- gradients through step ----------------------------------------------------------------------------

GRAD_MODELS = {
    **{name: (lambda n=name: family(n)) for name in ["elman", "elman-relu-readout", "jordan", "lstm"]},
    **{name: (lambda n=name: family(n)) for name in ["lstm-proj", "lstm-peephole", "gru", "gru-textbook"]},
    **{name: (lambda n=name: drop_in(n)) for name in ["LSTM", "GRU", "RNN"]},
}


def loss_of(y: torch.Tensor, final, weights: torch.Tensor) -> torch.Tensor:
    loss = (y * weights[: y.shape[-1]]).sum()
    return loss + sum((s * s).sum() for s in fields(final))


@pytest.mark.parametrize("make", list(GRAD_MODELS.values()), ids=list(GRAD_MODELS))
def test_gradients_through_step_equal_forward(make):
    model = make()
    torch.manual_seed(2)
    x = torch.randn(T, B, F, dtype=F64, requires_grad=True)
    state = random_state(model, B, dtype=F64)
    for s in fields(state):
        s.requires_grad_(True)
    weights = torch.randn(H, dtype=F64)
    inputs = [x, *fields(state), *model.parameters()]
    y, final = model(x, state)
    expected = torch.autograd.grad(loss_of(y, final, weights), inputs)
    ys, streamed = stream(model, x, state)
    got = torch.autograd.grad(loss_of(ys, streamed, weights), inputs)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, **TOL[F64])


def test_gradient_to_the_input_of_a_frozen_model():
    model = drop_in("GRU").requires_grad_(False)
    x = torch.randn(T, B, F, dtype=F64, requires_grad=True)
    (expected,) = torch.autograd.grad(model(x)[0].sum(), x)
    (got,) = torch.autograd.grad(stream(model, x)[0].sum(), x)
    torch.testing.assert_close(got, expected, **TOL[F64])


# -- the benchmark rows --------------------------------------------------------------------------------


def test_stream_rows_time_step_against_torch():
    from rnnkit import bench

    rows = bench.stream_rows(repeats=1, steps=2, H=8)
    assert [r.name for r in rows] == ["LSTM", "GRU", "RNN"]
    for r in rows:
        assert r.config["stream"] and r.config["T"] == 1 and r.config["B"] == 1 and r.config["layers"] == 2
        assert r.peer == f"torch.nn.{r.name}" and r.rnnkit_ms > 0 and r.peer_ms > 0
    table = bench.table({"rows": [bench.asdict(r) for r in rows]})
    assert "| LSTM | 1 | 8 | 2 | uni | step |" in table
