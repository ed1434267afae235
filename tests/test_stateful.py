"""Stateful: a sequence fed in chunks (each stream taking its own number of steps per chunk) gives what
one pass over the whole sequence gives, for every cell, with and without gradients."""

import pytest
import torch

from rnnkit import ElmanCell, GRUCell, InputError, JordanCell, LSTMCell, Recurrent, Stateful
from rnnkit import nn as rnn
from rnnkit.cells.base import state_fields
from rnnkit.layers import streaming

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only contend

F, H = 3, 5
CELLS = {
    "elman-tanh": lambda: ElmanCell(F, H, "tanh"),
    "elman-relu": lambda: ElmanCell(F, H, "relu"),
    "jordan": lambda: JordanCell(F, H, 4),
    "gru": lambda: GRUCell(F, H),
    "gru-textbook": lambda: GRUCell(F, H, reset_after=False),
    "lstm": lambda: LSTMCell(F, H),
    "lstm-peephole": lambda: LSTMCell(F, H, peephole=True),
    "lstm-layer-norm": lambda: LSTMCell(F, H, layer_norm=True),
    "lstm-projection": lambda: LSTMCell(F, H, proj_size=2),
    "lstm-all": lambda: LSTMCell(F, H, proj_size=3, peephole=True, layer_norm=True),
}
TOTAL = [9, 4, 7]  # each stream's whole length


def schedule(seed: int) -> list[list[int]]:
    """Per chunk, each stream's number of new steps (0 included, some chunks of one step), until every
    stream has had all of its steps."""
    g = torch.Generator().manual_seed(seed)
    done, chunks = [0] * len(TOTAL), []
    while done != TOTAL:
        if len(chunks) % 3 == 2:
            new = [min(1, t - d) for t, d in zip(TOTAL, done, strict=True)]
        else:
            new = [
                min(int(torch.randint(0, 4, (1,), generator=g)), t - d)
                for t, d in zip(TOTAL, done, strict=True)
            ]
        if any(new):
            chunks.append(new)
            done = [d + n for d, n in zip(done, new, strict=True)]
    return chunks


def stream_in_chunks(wrapper: Stateful, x: torch.Tensor, chunks: list[list[int]]) -> torch.Tensor:
    """Feed x (T, B, F) time-first in the given chunks; return the outputs laid back on the whole time
    axis (T, B, O), zeros where a stream has no step."""
    batch_first = wrapper.layer.batch_first
    pieces: list[list[torch.Tensor]] = [[] for _ in TOTAL]
    done = [0] * len(TOTAL)
    for new in chunks:
        T = max(new)
        chunk = x.new_zeros(T, x.shape[1], x.shape[2])
        for b, n in enumerate(new):
            chunk[:n, b] = x[done[b] : done[b] + n, b]
        y = wrapper(chunk.transpose(0, 1) if batch_first else chunk, lengths=new)
        y = y.transpose(0, 1) if batch_first else y
        for b, n in enumerate(new):
            assert bool((y[n:, b] == 0).all())  # padded steps output zeros
            pieces[b].append(y[:n, b])
            done[b] += n
    out = torch.zeros(x.shape[0], x.shape[1], y.shape[-1], dtype=x.dtype)
    for b, parts in enumerate(pieces):
        out[: TOTAL[b], b] = torch.cat(parts)
    return out


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_chunks_equal_one_pass_for_every_cell(name, grad):
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name](), num_layers=2).double()
    x = torch.randn(max(TOTAL), len(TOTAL), F, dtype=torch.float64)
    lengths = torch.tensor(TOTAL)
    y_ref, state_ref = layer(x, lengths=lengths)  # one pass over the whole sequences
    wrapper = Stateful(layer)
    with torch.set_grad_enabled(grad):
        y = stream_in_chunks(wrapper, x, schedule(seed=len(name)))
    torch.testing.assert_close(y, y_ref.detach(), rtol=0, atol=1e-10)
    for got, want in zip(state_fields(wrapper.state), state_fields(state_ref), strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-10)
    if grad:  # the state carries the graph: one backward reaches every chunk, as through one pass
        weight = layer.cells[0].weight_ih
        (g_chunks,) = torch.autograd.grad(y.sum() + sum(s.sum() for s in state_fields(wrapper.state)), weight)
        (g_pass,) = torch.autograd.grad(y_ref.sum() + sum(s.sum() for s in state_fields(state_ref)), weight)
        torch.testing.assert_close(g_chunks, g_pass, rtol=0, atol=1e-10)


@pytest.mark.parametrize("batch_first", [False, True])
def test_drop_in_float32_batch_first_and_fast_paths(batch_first):
    """A drop-in LSTM in float32: under no_grad, one-step chunks take the cached streaming path (its
    per-layer plan appears) and the results still equal one pass."""
    torch.manual_seed(1)
    layer = rnn.LSTM(F, H, num_layers=2, batch_first=batch_first)
    streaming.clear_cache(layer)
    x = torch.randn(max(TOTAL), len(TOTAL), F)
    with torch.no_grad():
        y_ref, _ = layer(x.transpose(0, 1) if batch_first else x, lengths=torch.tensor(TOTAL))
        y_ref = y_ref.transpose(0, 1) if batch_first else y_ref
        y = stream_in_chunks(Stateful(layer), x, schedule(seed=3))
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-5)
    assert layer in streaming._PLANS


def test_one_stream_per_call_and_plain_chunks():
    """Without lengths every stream takes the whole chunk; splitting 10 steps as 1 + 4 + 5 = one pass."""
    torch.manual_seed(2)
    layer = Recurrent(GRUCell(F, H)).double()
    x = torch.randn(10, 2, F, dtype=torch.float64)
    wrapper = Stateful(layer)
    y = torch.cat([wrapper(x[:1]), wrapper(x[1:5]), wrapper(x[5:])])
    y_ref, h_ref = layer(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(wrapper.state, h_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "streams", [[False, True, False], [1], torch.tensor([-2])], ids=["mask", "list", "tensor"]
)
def test_reset_some_streams(streams):
    """After reset, stream 1 continues as a fresh sequence; streams 0 and 2 are untouched."""
    torch.manual_seed(3)
    layer = Recurrent(LSTMCell(F, H, peephole=True)).double()
    first, second = torch.randn(4, 3, F, dtype=torch.float64), torch.randn(5, 3, F, dtype=torch.float64)
    wrapper = Stateful(layer)
    wrapper(first)
    wrapper.reset(streams)
    y = wrapper(second)
    whole, _ = layer(torch.cat([first, second]))
    fresh, _ = layer(second)
    torch.testing.assert_close(y[:, [0, 2]], whole[4:, [0, 2]], rtol=0, atol=1e-12)
    torch.testing.assert_close(y[:, 1], fresh[:, 1], rtol=0, atol=1e-12)


def test_reset_all_allows_a_new_batch_and_detach_cuts_the_graph():
    layer = Recurrent(ElmanCell(F, H))
    wrapper = Stateful(layer)
    x = torch.randn(3, 2, F, requires_grad=True)
    wrapper(x)
    wrapper.detach()
    assert all(not s.requires_grad for s in state_fields(wrapper.state))
    y = wrapper(torch.randn(2, 2, F))
    assert torch.autograd.grad(y.sum(), x, allow_unused=True) == (None,)  # nothing flows back past detach
    with pytest.raises(InputError, match="the state holds 2 streams but the chunk has 5; call reset"):
        wrapper(torch.randn(2, 5, F))
    wrapper.reset()
    assert wrapper.state is None
    assert wrapper(torch.randn(2, 5, F)).shape == (2, 5, H)


def test_bad_input_is_refused_clearly():
    with pytest.raises(InputError, match="Stateful needs a unidirectional layer"):
        Stateful(rnn.GRU(F, H, bidirectional=True))
    with pytest.raises(TypeError, match="Stateful wraps a Recurrent layer"):
        Stateful(torch.nn.LSTM(F, H))
    wrapper = Stateful(Recurrent(GRUCell(F, H), batch_first=True))
    with pytest.raises(InputError, match=r"expected a 3-D chunk \(B, T, F\), got 2-D"):
        wrapper(torch.randn(4, F))
    with pytest.raises(InputError, match=r"lengths must be in \[0, 4\]"):
        wrapper(torch.randn(2, 4, F), lengths=[5, 1])
    with pytest.raises(InputError, match=r"lengths must be a 1-D integer tensor of shape \(2,\)"):
        wrapper(torch.randn(2, 4, F), lengths=[1.0, 2.0])
    wrapper(torch.randn(2, 4, F))
    with pytest.raises(InputError, match=r"stream indices must be in \[-2, 1\]"):
        wrapper.reset([2])
    with pytest.raises(InputError, match=r"a mask needs one bool per stream, shape \(2,\)"):
        wrapper.reset([True, False, True])


@pytest.mark.parametrize("name", ["gru", "lstm-peephole", "jordan"])
def test_reset_marks_in_chunks_equal_one_pass_with_the_same_marks(name):
    """Per-step reset marks (document starts) passed chunk by chunk give the one pass's outputs; a
    stream with no new steps in a chunk ignores its marks; resets go to a learned initial state."""
    torch.manual_seed(5)
    layer = Recurrent(CELLS[name](), num_layers=2, learn_initial_state=True).double()
    with torch.no_grad():
        for p in (layer.initial_h, getattr(layer, "initial_c", layer.initial_h)):
            p.normal_()  # not zeros: a reset to zeros would be wrong
    x = torch.randn(9, 3, F, dtype=torch.float64)
    marks = torch.zeros(9, 3, dtype=torch.bool)
    marks[[3, 6], 0] = True
    marks[4, 2] = True
    whole, _ = layer(x, reset=marks)
    wrapper, outs = Stateful(layer), []
    for start, stop in [(0, 4), (4, 5), (5, 9)]:
        outs.append(wrapper(x[start:stop], reset=marks[start:stop]))
    torch.testing.assert_close(torch.cat(outs), whole, rtol=0, atol=1e-12)

    idle = Stateful(layer)
    idle(x[:4])
    before = [s.clone() for s in state_fields(idle.state)]
    idle(x[4:6], lengths=[0, 2, 2], reset=torch.ones(2, 3, dtype=torch.bool))
    for b, a in zip(before, state_fields(idle.state), strict=True):
        torch.testing.assert_close(a[:, 0], b[:, 0], rtol=0, atol=0)  # stream 0 took no step

    idle.reset([1])
    fresh = state_fields(layer.initial_state(3))
    for f, s in zip(fresh, state_fields(idle.state), strict=True):
        torch.testing.assert_close(s[:, 1], f[:, 1])  # back to the learned state, not zeros
