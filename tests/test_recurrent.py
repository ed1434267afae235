"""Recurrent: gradcheck, lengths vs per-sequence runs, packing, merges by hand, layouts, dropout, dtypes."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState, Recurrent

F64 = torch.float64

# name -> factory(input_size, dtype) of the first-layer cell; every cell family and form.
FAMILIES = {
    "elman": lambda n, dt=F64: ElmanCell(n, 3, dtype=dt),
    "elman-readout": lambda n, dt=F64: ElmanCell(n, 3, readout_size=2, dtype=dt),
    "jordan": lambda n, dt=F64: JordanCell(n, 3, 2, dtype=dt),
    "lstm": lambda n, dt=F64: LSTMCell(n, 3, dtype=dt),
    "lstm-proj-peephole": lambda n, dt=F64: LSTMCell(n, 3, proj_size=2, peephole=True, dtype=dt),
    "lstm-layernorm": lambda n, dt=F64: LSTMCell(n, 3, layer_norm=True, dtype=dt),
    "gru": lambda n, dt=F64: GRUCell(n, 3, dtype=dt),
    "gru-textbook": lambda n, dt=F64: GRUCell(n, 3, reset_after=False, dtype=dt),
}
GRADCHECK_FAMILIES = ["elman", "jordan", "lstm", "lstm-proj-peephole", "gru", "gru-textbook"]


def fields(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


def rebuild(model: Recurrent, flat):
    """A state in the model's structure from a tuple of field tensors."""
    size = model.cells[0].state_size
    return type(size)(*flat) if isinstance(size, tuple) else flat[0]


def random_state(model: Recurrent, batch: int | None, generator=None, dtype=F64):
    """Initial state (K, B, n) per field ((K, n) when batch is None)."""
    K = model.num_layers * model.num_directions
    size = model.cells[0].state_size
    lead = (K,) if batch is None else (K, batch)
    flat = tuple(torch.randn(*lead, n, generator=generator, dtype=dtype) * 0.5 for n in fields(size))
    return rebuild(model, flat)


def select(state, index):
    """state[:, index] field by field (keeps the batch dim for a slice)."""
    return type(state)(*(s[:, index] for s in state)) if isinstance(state, tuple) else state[:, index]


def entry(state, k):
    """The state of layer-and-direction k: state[k] field by field."""
    return type(state)(*(s[k] for s in state)) if isinstance(state, tuple) else state[k]


def assert_state_close(a, b, **kw):
    assert type(a) is type(b)
    for x, y in zip(fields(a), fields(b), strict=True):
        torch.testing.assert_close(x, y, **kw)


# -- gradcheck ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", GRADCHECK_FAMILIES)
def test_gradcheck_two_layers_bidirectional_lengths_state(family):
    torch.manual_seed(0)
    model = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in model.named_parameters())
    x = torch.randn(4, 3, 2, dtype=F64, requires_grad=True)
    state = tuple(s.requires_grad_() for s in fields(random_state(model, 3)))
    lengths = torch.tensor([3, 4, 1])
    n_state = len(state)

    def fn(x, *rest):
        s0 = rebuild(model, rest[:n_state])
        out, final = functional_call(
            model, dict(zip(names, rest[n_state:], strict=True)), (x,), {"state": s0, "lengths": lengths}
        )
        return (out, *fields(final))

    assert torch.autograd.gradcheck(fn, (x, *state, *params), fast_mode=False)


# -- lengths: padded batch == each sequence alone ----------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_padded_with_lengths_equals_each_sequence_alone(family, bidirectional):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(1)
    model = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=bidirectional)
    T, B = 5, 4
    lengths = torch.tensor([3, 5, 1, 4])
    x = torch.randn(T, B, 2, generator=g, dtype=F64)
    x[torch.arange(T)[:, None] >= lengths] = 7.0  # junk in the padding must not leak anywhere
    x.requires_grad_()
    s0 = random_state(model, B, g)
    for s in fields(s0):
        s.requires_grad_()
    out, final = model(x, s0, lengths)
    O = model.output_size
    assert out.shape == (T, B, O)
    w_out = torch.randn(T, B, O, generator=g, dtype=F64) * (torch.arange(T)[:, None] < lengths)[..., None]
    w_state = [torch.randn(s.shape, generator=g, dtype=F64) for s in fields(final)]

    def loss_of(out, final, w_out, w_state):
        return (out * w_out).sum() + sum((s * w).sum() for s, w in zip(fields(final), w_state, strict=True))

    params = list(model.parameters())
    batch_grads = torch.autograd.grad(loss_of(out, final, w_out, w_state), [x, *fields(s0), *params])

    param_sum = [torch.zeros_like(p) for p in params]
    for b in range(B):
        L = int(lengths[b])
        xb = x.detach()[:L, b : b + 1].clone().requires_grad_()
        sb = select(s0, slice(b, b + 1))
        sb = rebuild(model, tuple(s.detach().clone().requires_grad_() for s in fields(sb)))
        out_b, final_b = model(xb, sb)
        # outputs at valid steps, zeros at padded steps, final state per sequence
        torch.testing.assert_close(out[:L, b : b + 1], out_b, rtol=0, atol=1e-12)
        assert torch.all(out[L:, b] == 0)
        assert_state_close(select(final, slice(b, b + 1)), final_b, rtol=0, atol=1e-12)
        # gradients of the same loss restricted to this sequence
        w_state_b = [w[:, b : b + 1] for w in w_state]
        grads = torch.autograd.grad(
            loss_of(out_b, final_b, w_out[:L, b : b + 1], w_state_b), [xb, *fields(sb), *params]
        )
        gx, gs, gp = grads[0], grads[1 : 1 + len(fields(sb))], grads[1 + len(fields(sb)) :]
        torch.testing.assert_close(batch_grads[0][:L, b : b + 1], gx, rtol=0, atol=1e-12)
        assert torch.all(batch_grads[0][L:, b] == 0)
        for got, want in zip(batch_grads[1 : 1 + len(gs)], gs, strict=True):
            torch.testing.assert_close(got[:, b : b + 1], want, rtol=0, atol=1e-12)
        for acc, gpb in zip(param_sum, gp, strict=True):
            acc += gpb
    for got, want in zip(batch_grads[1 + len(fields(s0)) :], param_sum, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-11)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("family", ["elman", "jordan", "lstm-proj-peephole", "gru-textbook"])
def test_packed_sequence_equals_lengths(family, batch_first):
    g = torch.Generator().manual_seed(0)
    model = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True, batch_first=batch_first)
    T, B = 5, 4
    lengths = torch.tensor([2, 5, 1, 4])  # unsorted
    x = torch.randn(T, B, 2, generator=g, dtype=F64)
    xin = x.transpose(0, 1) if batch_first else x
    s0 = random_state(model, B, g)
    out, final = model(xin, s0, lengths)
    packed = pack_padded_sequence(xin, lengths, batch_first=batch_first, enforce_sorted=False)
    out_p, final_p = model(packed, s0)
    assert isinstance(out_p, torch.nn.utils.rnn.PackedSequence)
    padded, lens = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)
    assert torch.equal(lens, lengths)
    torch.testing.assert_close(padded, out, rtol=0, atol=1e-12)
    assert_state_close(final_p, final, rtol=0, atol=1e-12)
    # gradients flow through the packed path too
    (padded.sum() + sum(s.sum() for s in fields(final_p))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lengths_all_full_equals_no_lengths():
    torch.manual_seed(0)
    model = Recurrent(FAMILIES["lstm"](2), bidirectional=True)
    x = torch.randn(4, 3, 2, dtype=F64)
    a, sa = model(x)
    b, sb = model(x, lengths=[4, 4, 4])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert_state_close(sa, sb, rtol=0, atol=0)


# -- merge modes against the two directions computed by hand ----------------------------------------


def run_by_hand(cell, x, state):
    """cell.step over x (T, B, F) from state; returns (T, B, O) outputs and the final state."""
    ys = []
    for t in range(x.shape[0]):
        y, state = cell.step(x[t], state)
        ys.append(y)
    return torch.stack(ys), state


MERGE_BY_HAND = {
    "concat": lambda a, b: torch.cat([a, b], -1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: 0.5 * (a + b),
    "mul": lambda a, b: a * b,
}


@pytest.mark.parametrize("merge", sorted(MERGE_BY_HAND))
@pytest.mark.parametrize("family", ["elman-readout", "lstm-proj-peephole", "gru"])
def test_merge_modes_by_hand(family, merge):
    torch.manual_seed(0)
    model = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True, merge=merge)
    O = model.cells[0].output_size
    assert model.output_size == (2 * O if merge == "concat" else O)
    assert model.cells[2].input_size == model.output_size
    x = torch.randn(4, 3, 2, dtype=F64)
    s0 = random_state(model, 3)
    out, final = model(x, s0)
    assert out.shape == (4, 3, model.output_size)

    layer_in, finals = x, []
    for layer in range(2):
        fwd_cell, rev_cell = model.cells[2 * layer], model.cells[2 * layer + 1]
        y_f, s_f = run_by_hand(fwd_cell, layer_in, entry(s0, 2 * layer))
        y_r_flipped, s_r = run_by_hand(rev_cell, layer_in.flip(0), entry(s0, 2 * layer + 1))
        y_r = y_r_flipped.flip(0)
        # the reverse direction is a unidirectional layer on the flipped sequence with the reverse cell
        uni = Recurrent(rev_cell)
        y_uni, s_uni = uni(
            layer_in.flip(0), rebuild(uni, tuple(s[None] for s in fields(entry(s0, 2 * layer + 1))))
        )
        torch.testing.assert_close(y_uni.flip(0), y_r, rtol=0, atol=1e-12)
        assert_state_close(entry(s_uni, 0), s_r, rtol=0, atol=1e-12)
        finals += [s_f, s_r]
        layer_in = MERGE_BY_HAND[merge](y_f, y_r)
    torch.testing.assert_close(out, layer_in, rtol=0, atol=1e-12)
    for k, s in enumerate(finals):
        assert_state_close(entry(final, k), s, rtol=0, atol=1e-12)


def test_reverse_direction_with_lengths_by_hand():
    """The reverse direction starts at each sequence's own last step."""
    torch.manual_seed(0)
    model = Recurrent(FAMILIES["gru"](2), bidirectional=True, merge="sum")
    x = torch.randn(4, 2, 2, dtype=F64)
    lengths = torch.tensor([4, 2])
    out, final = model(x, lengths=lengths)
    for b in range(2):
        L = int(lengths[b])
        xb = x[:L, b : b + 1]
        h0 = torch.zeros(1, 3, dtype=F64)
        y_f, s_f = run_by_hand(model.cells[0], xb, h0)
        y_r, s_r = run_by_hand(model.cells[1], xb.flip(0), h0)
        torch.testing.assert_close(out[:L, b : b + 1], y_f + y_r.flip(0), rtol=0, atol=1e-12)
        torch.testing.assert_close(final[0, b : b + 1], s_f, rtol=0, atol=1e-12)
        torch.testing.assert_close(final[1, b : b + 1], s_r, rtol=0, atol=1e-12)


# -- layouts, sizes, construction -----------------------------------------------------------------


@pytest.mark.parametrize("family", ["elman", "lstm-proj-peephole"])
def test_batch_first_equals_time_first(family):
    torch.manual_seed(0)
    tf = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True)
    bf = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True, batch_first=True)
    bf.load_state_dict(tf.state_dict())
    x = torch.randn(5, 3, 2, dtype=F64)
    s0 = random_state(tf, 3)
    lengths = torch.tensor([5, 2, 3])
    for kw in ({}, {"lengths": lengths}):
        out, final = tf(x, s0, **kw)
        out_bf, final_bf = bf(x.transpose(0, 1).contiguous(), s0, **kw)
        assert out_bf.shape == (3, 5, tf.output_size)
        torch.testing.assert_close(out_bf, out.transpose(0, 1), rtol=0, atol=0)
        assert_state_close(final_bf, final, rtol=0, atol=0)  # the state stays (K, B, n)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("family", ["gru", "lstm-proj-peephole", "jordan"])
def test_unbatched_equals_batch_of_one(family, batch_first):
    torch.manual_seed(0)
    model = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True, batch_first=batch_first)
    x = torch.randn(4, 2, dtype=F64)
    s0 = random_state(model, None)
    out, final = model(x, s0)
    s0_batched = rebuild(model, tuple(s[:, None] for s in fields(s0)))
    xb = x[None] if batch_first else x[:, None]
    out_b, final_b = model(xb, s0_batched)
    assert out.shape == (4, model.output_size)
    torch.testing.assert_close(out, out_b[0] if batch_first else out_b[:, 0], rtol=0, atol=0)
    assert_state_close(final, select(final_b, 0), rtol=0, atol=0)
    # default state too
    out0, final0 = model(x)
    assert all(s.shape[:1] == (4,) and s.dim() == 2 for s in fields(final0))
    torch.testing.assert_close(out0, model(xb)[0].squeeze(0 if batch_first else 1), rtol=0, atol=0)


@pytest.mark.parametrize(
    "make,num_layers,bidirectional,merge,out_size,state_sizes",
    [
        (lambda: ElmanCell(3, 4), 1, False, "concat", 4, (4,)),
        (lambda: ElmanCell(3, 4, readout_size=6), 2, True, "concat", 12, (4,)),
        (lambda: ElmanCell(3, 4, readout_size=6), 2, True, "sum", 6, (4,)),
        (lambda: JordanCell(3, 4, 5), 3, True, "mean", 5, (5,)),
        (lambda: LSTMCell(3, 4), 2, True, "concat", 8, (4, 4)),
        (lambda: LSTMCell(3, 4, proj_size=2), 2, True, "concat", 4, (2, 4)),
        (lambda: LSTMCell(3, 4, proj_size=2), 2, True, "mul", 2, (2, 4)),
        (lambda: GRUCell(3, 4), 3, False, "concat", 4, (4,)),
    ],
)
def test_output_sizes(make, num_layers, bidirectional, merge, out_size, state_sizes):
    model = Recurrent(make(), num_layers=num_layers, bidirectional=bidirectional, merge=merge)
    K = num_layers * (2 if bidirectional else 1)
    assert model.output_size == out_size and model.input_size == 3
    assert len(model.cells) == K
    out, final = model(torch.randn(6, 2, 3))
    assert out.shape == (6, 2, out_size)
    assert tuple(s.shape for s in fields(final)) == tuple((K, 2, n) for n in state_sizes)
    if isinstance(model.cells[0], LSTMCell):
        assert isinstance(final, LSTMState)


def test_factory_form():
    torch.manual_seed(0)
    model = Recurrent(lambda n: GRUCell(n, 4), input_size=3, num_layers=2)
    assert [c.input_size for c in model.cells] == [3, 4]
    assert all(isinstance(c, GRUCell) and c.hidden_size == 4 for c in model.cells)
    out, h = model(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 4) and h.shape == (2, 2, 4)
    bi = Recurrent(lambda n: GRUCell(n, 4, reset_after=False), input_size=3, num_layers=2, bidirectional=True)
    assert [c.input_size for c in bi.cells] == [3, 3, 8, 8]
    assert all(not c.reset_after for c in bi.cells)
    with pytest.raises(ValueError):
        Recurrent(lambda n: GRUCell(n, 4))  # a factory needs input_size
    with pytest.raises(ValueError):
        Recurrent(GRUCell(3, 4), input_size=5)  # mismatch with the cell


def test_instance_form_copies_options():
    cell = LSTMCell(3, 5, proj_size=2, peephole=True, layer_norm=True, forget_bias=1.5)
    model = Recurrent(cell, num_layers=2, bidirectional=True)
    assert model.cells[0] is cell
    assert [c.input_size for c in model.cells] == [3, 3, 4, 4]
    for c in model.cells:
        assert type(c) is LSTMCell
        assert (c.hidden_size, c.proj_size, c.peephole, c.layer_norm, c.forget_bias) == (
            5,
            2,
            True,
            True,
            1.5,
        )
        assert torch.all(c.bias_ih[5:10] == 1.5)
    # distinct parameters in every layer and direction
    ptrs = {c.weight_hh.data_ptr() for c in model.cells}
    assert len(ptrs) == 4
    assert not torch.equal(model.cells[0].weight_hh, model.cells[1].weight_hh)
    elman = Recurrent(ElmanCell(3, 4, nonlinearity="relu", readout_size=2, bias=False), num_layers=2)
    c1 = elman.cells[1]
    assert (c1.input_size, c1.nonlinearity, c1.readout_size, c1.bias_ih) == (2, "relu", 2, None)


# -- dropout -----------------------------------------------------------------------------------------


def test_dropout_only_in_training_between_layers():
    torch.manual_seed(0)
    model = Recurrent(ElmanCell(3, 8), num_layers=2, dropout=0.5)
    plain = Recurrent(ElmanCell(3, 8), num_layers=2)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(5, 4, 3)
    model.eval()
    a, _ = model(x)
    b, _ = model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, plain(x)[0], rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    c, _ = model(x)
    torch.manual_seed(2)
    d, _ = model(x)
    assert not torch.allclose(c, a) and not torch.allclose(c, d)


@pytest.mark.filterwarnings("ignore:dropout option adds dropout")  # torch warns here too
def test_dropout_no_effect_with_one_layer():
    torch.manual_seed(0)
    model = Recurrent(LSTMCell(3, 4), num_layers=1, bidirectional=True, dropout=0.9).train()
    x = torch.randn(5, 2, 3)
    a, sa = model(x)
    b, sb = model.eval()(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert_state_close(sa, sb, rtol=0, atol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_one_zeroes_layer_two_input(bidirectional):
    torch.manual_seed(0)
    model = Recurrent(GRUCell(3, 4), num_layers=2, bidirectional=bidirectional, dropout=1.0).train()
    x = torch.randn(5, 2, 3)
    out, final = model(x)
    D = 2 if bidirectional else 1
    zeros = torch.zeros(5, 2, model.cells[D].input_size)
    h0 = torch.zeros(2, 4)
    y_f, s_f = run_by_hand(model.cells[D], zeros, h0)
    want = y_f
    if bidirectional:
        y_r, _ = run_by_hand(model.cells[D + 1], zeros, h0)
        want = torch.cat([y_f, y_r.flip(0)], -1)
    # auto runs torch's fused GRU here; it rounds differently from the loop by hand
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(final[D], s_f, rtol=1e-6, atol=1e-6)
    # layer 1 itself is not dropped: its final state is the eval one
    torch.testing.assert_close(final[0], model.eval()(x)[1][0], rtol=0, atol=0)


# -- dtypes and empty batches ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_float32_and_float64(family, dtype):
    torch.manual_seed(0)
    model = Recurrent(FAMILIES[family](2, dtype), num_layers=2, bidirectional=True)
    x = torch.randn(4, 3, 2, dtype=dtype, requires_grad=True)
    out, final = model(x, lengths=[4, 1, 2])
    assert out.dtype == dtype and all(s.dtype == dtype for s in fields(final))
    out.sum().backward()
    assert x.grad.dtype == dtype
    assert all(p.grad is not None and p.grad.dtype == dtype for p in model.parameters())
    if dtype == torch.float32:  # and a float32 model agrees with its float64 copy
        model64 = Recurrent(FAMILIES[family](2, F64), num_layers=2, bidirectional=True)
        model64.load_state_dict(model.state_dict())
        torch.testing.assert_close(model64(x.detach().double(), lengths=[4, 1, 2])[0].float(), out)


def test_recurrent_double_conversion():
    model = Recurrent(ElmanCell(3, 4), num_layers=2, bidirectional=True).double()
    out, h = model(torch.randn(5, 2, 3, dtype=F64))
    assert out.dtype == F64 and h.dtype == F64


@pytest.mark.parametrize("family", ["elman", "jordan", "lstm-proj-peephole", "lstm-layernorm", "gru"])
def test_batch_of_size_zero(family):
    model = Recurrent(FAMILIES[family](2), num_layers=2, bidirectional=True)
    x = torch.randn(4, 0, 2, dtype=F64, requires_grad=True)
    out, final = model(x)
    K = 4
    assert out.shape == (4, 0, model.output_size)
    assert tuple(s.shape for s in fields(final)) == tuple(
        (K, 0, n) for n in fields(model.cells[0].state_size)
    )
    out2, final2 = model(x, random_state(model, 0), lengths=torch.zeros(0, dtype=torch.long))
    assert out2.shape == out.shape
    (out.sum() + out2.sum()).backward()
    assert x.grad.shape == x.shape
