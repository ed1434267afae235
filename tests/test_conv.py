"""ConvLSTM and ConvGRU: against torch.nn and rnnkit's vector cells (1x1 kernels on 1x1 frames), against
an im2col reference for real kernels, gradcheck through a deep bidirectional Recurrent with lengths and
an initial state, padded == each sequence alone, and the shape errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit import ConvGRUCell, ConvLSTMCell, GRUCell, InputError, LSTMCell, LSTMState, Recurrent

F64 = torch.float64


def fields(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


def rebuild(cell, flat):
    return type(cell.state_size)(*flat) if isinstance(cell.state_size, tuple) else flat[0]


def copy_to_torch(layer: Recurrent, module: torch.nn.RNNBase) -> None:
    """Weights of a 1x1-kernel conv stack into torch's vector layer of the same shape."""
    suffixes = ["", "_reverse"]
    with torch.no_grad():
        for k, cell in enumerate(layer.cells):
            tag = f"l{k // layer.num_directions}{suffixes[k % layer.num_directions]}"
            getattr(module, f"weight_ih_{tag}").copy_(cell.weight_ih.flatten(1))
            getattr(module, f"weight_hh_{tag}").copy_(cell.weight_hh.flatten(1))
            getattr(module, f"bias_ih_{tag}").copy_(cell.bias_ih)
            getattr(module, f"bias_hh_{tag}").copy_(cell.bias_hh)


def pixels(t):
    """(..., C, 1, 1) -> (..., C)."""
    return t.squeeze(-1).squeeze(-1)


# -- 1x1 kernels on 1x1 frames: the vector cells ----------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_one_by_one_stack_equals_torch_nn(kind):
    """A 2-layer bidirectional stack with lengths, against torch.nn.LSTM / GRU (reset-after: torch's form)
    through a PackedSequence: outputs, final states and the input gradient."""
    torch.manual_seed(0)
    cell = (
        ConvLSTMCell(3, 5, 1, dtype=F64)
        if kind == "lstm"
        else ConvGRUCell(3, 5, 1, reset_after=True, dtype=F64)
    )
    layer = Recurrent(cell, num_layers=2, bidirectional=True)
    ref = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(3, 5, 2, bidirectional=True, dtype=F64)
    copy_to_torch(layer, ref)
    T, B = 6, 4
    lengths = torch.tensor([6, 2, 5, 1])
    x = torch.randn(T, B, 3, dtype=F64, requires_grad=True)
    s0 = tuple(torch.randn(4, B, 5, dtype=F64) for _ in fields(cell.state_size))

    out, final = layer(x[..., None, None], rebuild(cell, tuple(s[..., None, None] for s in s0)), lengths)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    ref_out, ref_final = ref(packed, s0 if kind == "lstm" else s0[0])
    ref_out, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_out, total_length=T)

    assert out.shape == (T, B, 10, 1, 1)
    torch.testing.assert_close(pixels(out), ref_out, rtol=0, atol=1e-12)
    for mine, theirs in zip(fields(final), fields(ref_final), strict=True):
        torch.testing.assert_close(pixels(mine), theirs, rtol=0, atol=1e-12)
    w = torch.randn(T, B, 10, dtype=F64)
    (g,) = torch.autograd.grad((pixels(out) * w).sum(), x)
    (g_ref,) = torch.autograd.grad((ref_out * w).sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "conv, vector",
    [
        (lambda: ConvLSTMCell(3, 4, 1, dtype=F64), lambda: LSTMCell(3, 4, dtype=F64)),
        (lambda: ConvGRUCell(3, 4, 1, dtype=F64), lambda: GRUCell(3, 4, reset_after=False, dtype=F64)),
        (lambda: ConvGRUCell(3, 4, 1, reset_after=True, dtype=F64), lambda: GRUCell(3, 4, dtype=F64)),
    ],
    ids=["lstm", "gru-textbook", "gru-reset-after"],
)
def test_one_by_one_kernel_is_the_vector_cell_at_every_pixel(conv, vector):
    """With a 1x1 kernel every pixel is an independent vector cell (here on 5x7 frames)."""
    torch.manual_seed(0)
    cell, ref = conv(), vector()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ref, name).copy_(getattr(cell, name).reshape(getattr(ref, name).shape))
    B, H, W = 2, 5, 7
    x = torch.randn(B, 3, H, W, dtype=F64)
    state = rebuild(cell, tuple(torch.randn(B, 4, H, W, dtype=F64) for _ in fields(cell.state_size)))
    y, new = cell(x, state)

    def per_pixel(t):  # (B, C, H, W) -> (B*H*W, C)
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])

    y_ref, new_ref = ref(per_pixel(x), rebuild(ref, tuple(per_pixel(s) for s in fields(state))))
    torch.testing.assert_close(per_pixel(y), y_ref, rtol=0, atol=1e-12)
    for mine, theirs in zip(fields(new), fields(new_ref), strict=True):
        torch.testing.assert_close(per_pixel(mine), theirs, rtol=0, atol=1e-12)


# -- real kernels: against the equations with convolution written as im2col ---------------------------


def im2col_conv(x, weight, bias):
    """'same' convolution as unfold + matrix product (odd kernels): an implementation apart from conv2d."""
    kh, kw = weight.shape[-2:]
    cols = F.unfold(x, (kh, kw), padding=(kh // 2, kw // 2))  # (B, C*kh*kw, H*W)
    out = weight.flatten(1) @ cols  # (B, rows, H*W)
    out = out + (bias[:, None] if bias is not None else 0)
    return out.view(x.shape[0], -1, *x.shape[2:])


def lstm_reference(cell, x, h, c):
    """Shi et al. (2015), eq. 3, term by term."""
    Wx, Wh = cell.weight_ih.chunk(4), cell.weight_hh.chunk(4)
    bx, bh = cell.bias_ih.chunk(4), cell.bias_hh.chunk(4)

    def pre(k):  # W_x* x + W_h * h + b for gate block k
        return im2col_conv(x, Wx[k], bx[k]) + im2col_conv(h, Wh[k], bh[k])

    peep = (cell.weight_ci, cell.weight_cf, cell.weight_co) if cell.peephole else (0, 0, 0)
    i = torch.sigmoid(pre(0) + peep[0] * c)
    f = torch.sigmoid(pre(1) + peep[1] * c)
    c_new = f * c + i * torch.tanh(pre(2))
    o = torch.sigmoid(pre(3) + peep[2] * c_new)
    return o * torch.tanh(c_new), c_new


def gru_reference(cell, x, h):
    """The textbook (Ballas et al.) form with torch's z, and the reset-after form."""
    Wx, Wh = cell.weight_ih.chunk(3), cell.weight_hh.chunk(3)
    bx, bh = cell.bias_ih.chunk(3), cell.bias_hh.chunk(3)
    r = torch.sigmoid(im2col_conv(x, Wx[0], bx[0]) + im2col_conv(h, Wh[0], bh[0]))
    z = torch.sigmoid(im2col_conv(x, Wx[1], bx[1]) + im2col_conv(h, Wh[1], bh[1]))
    if cell.reset_after:
        n = torch.tanh(im2col_conv(x, Wx[2], bx[2]) + r * im2col_conv(h, Wh[2], bh[2]))
    else:
        n = torch.tanh(im2col_conv(x, Wx[2], bx[2]) + im2col_conv(r * h, Wh[2], bh[2]))
    return (1 - z) * n + z * h


@pytest.mark.parametrize(
    "options",
    [{}, {"peephole": True}, {"peephole": True, "frame_size": (5, 6)}],
    ids=["plain", "peep", "peep-map"],
)
def test_conv_lstm_step_matches_the_equations(options):
    torch.manual_seed(0)
    cell = ConvLSTMCell(2, 3, (3, 5), dtype=F64, **options)
    x, h, c = (torch.randn(2, n, 5, 6, dtype=F64) for n in (2, 3, 3))
    y, (h_new, c_new) = cell(x, LSTMState(h, c))
    h_ref, c_ref = lstm_reference(cell, x, h, c)
    torch.testing.assert_close(h_new, h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(c_new, c_ref, rtol=0, atol=1e-12)
    assert y is h_new


@pytest.mark.parametrize("reset_after", [False, True], ids=["textbook", "reset-after"])
def test_conv_gru_step_matches_the_equations(reset_after):
    torch.manual_seed(0)
    cell = ConvGRUCell(2, 3, 3, reset_after=reset_after, dtype=F64)
    x, h = torch.randn(2, 2, 4, 6, dtype=F64), torch.randn(2, 3, 4, 6, dtype=F64)
    y, h_new = cell(x, h)
    torch.testing.assert_close(h_new, gru_reference(cell, x, h), rtol=0, atol=1e-12)


# -- through Recurrent ---------------------------------------------------------------------------------

CELLS = {
    "lstm-peephole": lambda: ConvLSTMCell(1, 2, 3, peephole=True, dtype=F64),
    "gru": lambda: ConvGRUCell(1, 2, 3, dtype=F64),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradcheck_two_layers_bidirectional_lengths_state(name):
    torch.manual_seed(0)
    cell = CELLS[name]()
    model = Recurrent(cell, num_layers=2, bidirectional=True, batch_first=True)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in model.named_parameters())
    x = torch.randn(2, 3, 1, 3, 3, dtype=F64, requires_grad=True)  # (B, T, C, H, W)
    state = tuple(torch.randn(4, 2, 2, 3, 3, dtype=F64, requires_grad=True) for _ in fields(cell.state_size))
    lengths = torch.tensor([3, 2])

    def fn(x, *rest):
        s0 = rebuild(cell, rest[: len(state)])
        weights = dict(zip(names, rest[len(state) :], strict=True))
        out, final = functional_call(model, weights, (x,), {"state": s0, "lengths": lengths})
        return (out, *fields(final))

    assert torch.autograd.gradcheck(fn, (x, *state, *params), fast_mode=True)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_padded_with_lengths_equals_each_sequence_alone(name):
    torch.manual_seed(0)
    cell = CELLS[name]()
    model = Recurrent(cell, num_layers=2, bidirectional=True)
    T, B = 4, 3
    lengths = torch.tensor([2, 4, 1])
    x = torch.randn(T, B, 1, 4, 5, dtype=F64)
    x[torch.arange(T)[:, None] >= lengths] = 9.0  # junk in the padding must not leak anywhere
    s0 = rebuild(cell, tuple(torch.randn(4, B, 2, 4, 5, dtype=F64) for _ in fields(cell.state_size)))
    out, final = model(x, s0, lengths)
    assert out.shape == (T, B, 4, 4, 5)
    for b in range(B):
        L = int(lengths[b])
        out_b, final_b = model(x[:L, b : b + 1], rebuild(cell, tuple(s[:, b : b + 1] for s in fields(s0))))
        torch.testing.assert_close(out[:L, b : b + 1], out_b, rtol=0, atol=1e-12)
        assert torch.all(out[L:, b] == 0)
        for mine, alone in zip(fields(final), fields(final_b), strict=True):
            torch.testing.assert_close(mine[:, b : b + 1], alone, rtol=0, atol=1e-12)
    # a PackedSequence of (C, H, W) frames runs the same way and packs the same
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_packed, final_packed = model(packed, s0)
    torch.testing.assert_close(out_packed.data, pack_padded_sequence(out, lengths, enforce_sorted=False).data)
    for a, b in zip(fields(final_packed), fields(final), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("kernel", [1, 3, (2, 4), 5])
def test_spatial_size_is_kept(kernel):
    """Any kernel, square or not, odd or even, keeps H x W (same padding), and batch_first is (B, T, ...)."""
    layer = Recurrent(ConvGRUCell(2, 3, kernel), num_layers=2, batch_first=True)
    y, h = layer(torch.randn(4, 3, 2, 7, 5))
    assert y.shape == (4, 3, 3, 7, 5) and h.shape == (2, 4, 3, 7, 5)
    time_first = Recurrent(ConvGRUCell(2, 3, kernel), num_layers=2)
    time_first.load_state_dict(layer.state_dict())
    x = torch.randn(4, 3, 2, 7, 5)
    torch.testing.assert_close(time_first(x.transpose(0, 1))[0].transpose(0, 1), layer(x)[0])


def test_dropout_between_layers_only_in_training():
    torch.manual_seed(0)
    layer = Recurrent(ConvLSTMCell(1, 2, 3), num_layers=2, dropout=0.5)
    x = torch.randn(3, 2, 1, 4, 4)
    eval_out = layer.eval()(x)[0]
    torch.testing.assert_close(layer(x)[0], eval_out)
    assert not torch.allclose(layer.train()(x)[0], eval_out)


# -- bad input -----------------------------------------------------------------------------------------


def test_shape_errors_name_what_was_expected():
    layer = Recurrent(ConvLSTMCell(2, 3, 3), num_layers=2)
    x = torch.randn(4, 2, 2, 6, 6)
    with pytest.raises(InputError, match=r"input.size\(-3\) must be equal to input_size. Expected 2, got 5"):
        layer(torch.randn(4, 2, 5, 6, 6))
    with pytest.raises(
        InputError, match=r"expects 5D input \(T, B, C, \*S\).*got 3D tensor of shape \(4, 2, 2\)"
    ):
        layer(torch.randn(4, 2, 2))
    with pytest.raises(InputError, match="unbatched input is not supported"):
        layer(torch.randn(4, 2, 6, 6))
    h = torch.zeros(2, 2, 3, 5, 6)
    with pytest.raises(
        InputError, match=r"hidden\[0\] \(h\) has spatial size \(5, 6\) but the input's is \(6, 6\)"
    ):
        layer(x, (h, torch.zeros(2, 2, 3, 6, 6)))
    with pytest.raises(
        InputError, match=r"Expected hidden\[1\] size \(2, 2, 3, 6, 6\), got \[2, 2, 4, 6, 6\]"
    ):
        layer(x, (torch.zeros(2, 2, 3, 6, 6), torch.zeros(2, 2, 4, 6, 6)))
    with pytest.raises(InputError, match="Input batch size 2 doesn't match hidden"):
        layer(x, (torch.zeros(2, 3, 3, 6, 6), torch.zeros(2, 3, 3, 6, 6)))
    with pytest.raises(InputError, match="should also be 5-D but got 3-D"):
        layer(x, (torch.zeros(2, 2, 3), torch.zeros(2, 2, 3)))
    with pytest.raises(InputError, match=r"step takes vector cells only; for ConvLSTMCell"):
        layer.step(x[0])
    with pytest.raises(InputError, match="impl='native' needs a stack torch implements"):
        Recurrent(ConvLSTMCell(2, 3, 3), impl="native")(x)
    with pytest.raises(InputError, match="impl='fused' has no fused kernel for ConvLSTMCell"):
        Recurrent(ConvLSTMCell(2, 3, 3), impl="fused")(x)


def test_frame_size_and_cell_errors():
    cell = ConvLSTMCell(1, 2, 3, peephole=True, frame_size=(4, 4))
    with pytest.raises(InputError, match=r"built for frames of size \(4, 4\), got input frames \(5, 4\)"):
        Recurrent(cell)(torch.randn(2, 1, 1, 5, 4))
    with pytest.raises(
        InputError, match=r"input frames are \(5, 4\), the cell was built for frame_size=\(4, 4\)"
    ):
        cell(torch.randn(1, 1, 5, 4))
    with pytest.raises(InputError, match="ConvLSTMCell: Expected input to be 4D"):
        cell(torch.randn(1, 4, 4))
    with pytest.raises(InputError, match="inconsistent in_channels: got 3 expected 1"):
        cell(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="frame_size sizes the peephole weights"):
        ConvLSTMCell(1, 2, 3, frame_size=(4, 4))
    with pytest.raises(TypeError, match="kernel_size should be of type int"):
        ConvGRUCell(1, 2, 2.5)
    with pytest.raises(InputError, match=r"init_state needs the frames' size: spatial=\(H, W\), got \(\)"):
        ConvGRUCell(1, 2).init_state(3)
    assert cell.init_state(3).h.shape == (3, 2, 4, 4)  # frame_size is the default
    assert ConvGRUCell(1, 2).init_state(3, spatial=(5, 6)).shape == (3, 2, 5, 6)
    assert cell.weight_ci.shape == (2, 4, 4)
    assert ConvLSTMCell(1, 2, 3, peephole=True).weight_ci.shape == (2, 1, 1)  # per channel, any frame size


def test_recurrence_options_are_refused_for_conv_cells_not_ignored():
    x = torch.randn(3, 2, 1, 6, 6)
    for options, says in [({"zoneout": 0.1}, "zoneout"), ({"state_dropout": 0.2}, "state_dropout")]:
        with pytest.raises(InputError, match=f"{says} are not supported for convolutional cells"):
            Recurrent(ConvLSTMCell(1, 4), **options)(x)
    with pytest.raises(InputError, match="learn_initial_state is not supported for convolutional cells"):
        Recurrent(ConvLSTMCell(1, 4), learn_initial_state=True)
    with pytest.raises(InputError, match="reset masks are not supported"):
        Recurrent(ConvLSTMCell(1, 4))(x, reset=torch.zeros(3, 2, dtype=torch.bool))
