"""minGRU / minLSTM (Feng et al. 2024) and the parallel scan that runs them: the cells against hand-worked
steps, the scan against the reference loop over ``cell.step`` (values, gradients, gradcheck), long
sequences, the Recurrent layer's features, streaming, and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit import InputError, MinGRUCell, MinLSTMCell, Recurrent
from rnnkit.kernels.dispatch import plan
from rnnkit.kernels.scan import linear_scan, run_scan
from rnnkit.layers.recurrent import run_cell

CELLS = {
    "mingru": lambda n: MinGRUCell(n, 4),
    "mingru_linear_nobias": lambda n: MinGRUCell(n, 4, bias=False, candidate="linear"),
    "minlstm": lambda n: MinLSTMCell(n, 4),
    "minlstm_linear": lambda n: MinLSTMCell(n, 4, candidate="linear"),
}


def loop(a, b, h0):
    """h_t = a_t h_{t-1} + b_t, one step at a time: the recurrence the scan solves."""
    hs, h = [], h0
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        hs.append(h)
    return torch.stack(hs)


def pair(make, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    ref = Recurrent(make, input_size=3, impl="reference", **kw).to(dtype)
    fast = Recurrent(make, input_size=3, impl="auto", **kw).to(dtype)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def run(model, x, state, **kw):
    """Forward and backward of a fixed loss; returns (output, final state, gradients by name)."""
    x = x.clone().requires_grad_()
    state = state.clone().requires_grad_() if state is not None else None
    model.zero_grad()
    y, final = model(x, state, **kw)
    upstream = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    ((y * upstream).sum() + (final * final).sum()).backward()
    grads = {"x": x.grad, **{n: p.grad for n, p in model.named_parameters()}}
    if state is not None:
        grads["state"] = state.grad
    return y, final, grads


def close(actual, expected, rtol):
    """Equal up to ``rtol`` of the reference's largest magnitude (element-wise relative error means
    nothing where a value crosses zero)."""
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * float(expected.detach().abs().max()))


# -- the cells, worked by hand ---------------------------------------------------------------------


def set_weights(cell, weight, bias):
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor(weight, dtype=torch.float64))
        cell.bias_ih.copy_(torch.tensor(bias, dtype=torch.float64))


def test_mingru_step_by_hand():
    # two units, one input x = 2, h = (0.5, 0.5). Unit 0: k_z = 0 (z = 1/2), k_h = 2 + 0.25 = 2.25 >= 0,
    # so g = 2.75 and h = 0.5 * 0.5 + 0.5 * 2.75 = 1.625. Unit 1: k_z = ln 3 * 2 / 2 (z = 3/4), k_h = -2,
    # g = sigmoid(-2), h = 0.25 * 0.5 + 0.75 * sigmoid(-2).
    cell = MinGRUCell(1, 2, dtype=torch.float64)
    set_weights(cell, [[0.0], [math.log(3) / 2], [1.0], [-1.0]], [0.0, 0.0, 0.25, 0.0])
    x, h = torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    y, new = cell.step(x, h)
    sig = 1 / (1 + math.exp(2))
    expected = torch.tensor([[1.625, 0.125 + 0.75 * sig]], dtype=torch.float64)
    torch.testing.assert_close(new, expected)
    assert y is new
    # the plain form: the candidate is the pre-activation itself
    cell.candidate = "linear"
    torch.testing.assert_close(cell.step(x, h)[1], torch.tensor([[0.25 + 0.5 * 2.25, 0.125 - 1.5]],
                                                                  dtype=torch.float64))  # fmt: skip
    torch.testing.assert_close(cell.gates(x, h)["update"], torch.tensor([[0.5, 0.75]], dtype=torch.float64))


def test_minlstm_step_by_hand():
    # x = 1, h = 0.5. f = sigmoid(ln 3) = 3/4, i = sigmoid(0) = 1/2, so f' = 0.75 / 1.25 = 0.6, i' = 0.4;
    # k_h = 1.5, g = 2. h = 0.6 * 0.5 + 0.4 * 2 = 1.1.
    cell = MinLSTMCell(1, 1, dtype=torch.float64)
    set_weights(cell, [[math.log(3)], [0.0], [1.0]], [0.0, 0.0, 0.5])
    x, h = torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64)
    y, new = cell.step(x, h)
    torch.testing.assert_close(new, torch.tensor([[1.1]], dtype=torch.float64))
    gates = cell.gates(x, h)
    torch.testing.assert_close(gates["forget"], torch.tensor([[0.6]], dtype=torch.float64))
    torch.testing.assert_close(gates["input"], torch.tensor([[0.4]], dtype=torch.float64))
    cell.candidate = "linear"  # h~ = 1.5: h = 0.3 + 0.6
    torch.testing.assert_close(cell.step(x, h)[1], torch.tensor([[0.9]], dtype=torch.float64))


def test_g_is_the_papers_activation():
    from rnnkit.cells.minimal import g

    v = torch.tensor([-3.0, -1e-3, 0.0, 1e-3, 2.0], dtype=torch.float64)
    torch.testing.assert_close(g(v), torch.tensor([1 / (1 + math.exp(3)), 1 / (1 + math.exp(1e-3)), 0.5,
                                                   0.501, 2.5], dtype=torch.float64))  # fmt: skip
    assert bool((g(torch.randn(1000) * 10) > 0).all())  # positive: what the paper's log-space scan needs


# -- the scan ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 13, 64, 100])
def test_linear_scan_equals_the_loop(T):
    gen = torch.Generator().manual_seed(T)
    a = torch.rand(T, 3, 5, generator=gen, dtype=torch.float64) * 1.2  # some |a| > 1 too
    b = torch.randn(T, 3, 5, generator=gen, dtype=torch.float64)
    h0 = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    args = [v.clone().requires_grad_() for v in (a, b, h0)]
    h = linear_scan(*args)
    expected_args = [v.clone().requires_grad_() for v in (a, b, h0)]
    expected = loop(*expected_args)
    torch.testing.assert_close(h, expected)
    upstream = torch.randn(h.shape, generator=gen, dtype=torch.float64)
    (h * upstream).sum().backward()
    (expected * upstream).sum().backward()
    for got, want in zip(args, expected_args, strict=True):
        torch.testing.assert_close(got.grad, want.grad)


def test_linear_scan_gradcheck():
    gen = torch.Generator().manual_seed(0)
    for T in (1, 6, 11):
        a = torch.rand(T, 2, 3, generator=gen, dtype=torch.float64).requires_grad_()
        b = torch.randn(T, 2, 3, generator=gen, dtype=torch.float64).requires_grad_()
        h0 = torch.randn(2, 3, generator=gen, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(linear_scan, (a, b, h0))
        assert torch.autograd.gradgradcheck(linear_scan, (a, b, h0))


# -- the scan against the reference loop through Recurrent ---------------------------------------------


@pytest.mark.parametrize(
    "name,layers,bidirectional,with_lengths,with_state",
    [(name, *stack, *extra) for name, stack, extra in itertools.product(
        CELLS, [(1, False), (1, True), (3, False), (3, True)], [(False, False), (True, False), (True, True)])
    ],
)  # fmt: skip
def test_scan_equals_reference_float32(name, layers, bidirectional, with_lengths, with_state):
    ref, fast = pair(CELLS[name], num_layers=layers, bidirectional=bidirectional)
    T, B = 21, 4
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 3, generator=gen)
    lengths = torch.tensor([21, 5, 1, 20]) if with_lengths else None
    K = layers * (2 if bidirectional else 1)
    state = torch.randn(K, B, 4, generator=gen) if with_state else None
    y_ref, h_ref, g_ref = run(ref, x, state, lengths=lengths)
    y, h, g = run(fast, x, state, lengths=lengths)
    close(y, y_ref, 1e-5)
    close(h, h_ref, 1e-5)
    assert g.keys() == g_ref.keys()
    for key in g_ref:
        close(g[key], g_ref[key], 1e-4)
    if with_lengths:  # padded steps output zeros
        assert bool((y[5:, 1] == 0).all()) and bool((y[1:, 2] == 0).all())


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_scan_in_blocks_equals_reference(steps, monkeypatch):
    # long sequences run in blocks of steps, each starting from the last one's state: blocks of 1, 3
    # and 8 steps (of 21; the last block short), with lengths ending inside blocks, both directions
    from rnnkit.kernels import scan

    monkeypatch.setattr(scan, "BLOCK_ELEMENTS", steps * 4 * 4)  # B * H = 4 * 4
    ref, fast = pair(CELLS["minlstm"], num_layers=2, bidirectional=True)
    gen = torch.Generator().manual_seed(2)
    x, state = torch.randn(21, 4, 3, generator=gen), torch.randn(4, 4, 4, generator=gen)
    lengths = torch.tensor([21, 5, 1, 17])
    y_ref, h_ref, g_ref = run(ref, x, state, lengths=lengths)
    y, h, g = run(fast, x, state, lengths=lengths)
    close(y, y_ref, 1e-5)
    close(h, h_ref, 1e-5)
    for key in g_ref:
        close(g[key], g_ref[key], 1e-4)


@pytest.mark.parametrize("Cell", [MinGRUCell, MinLSTMCell])
@pytest.mark.parametrize("candidate", ["g", "linear"])
def test_scan_gradcheck_float64(Cell, candidate):
    # two layers, both directions, lengths and an initial state: every input, state and weight
    torch.manual_seed(0)
    model = Recurrent(Cell(2, 2, candidate=candidate), num_layers=2, bidirectional=True).double()
    assert plan(model.cells, model.merge, model.impl, run_cell, torch.zeros(1, 1, 2)).runners[0] is run_scan
    x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    names, params = zip(*model.named_parameters(), strict=True)

    def f(x, h0, *weights):
        return torch.func.functional_call(model, dict(zip(names, weights, strict=True)), (x, h0),
                                          {"lengths": lengths})  # fmt: skip

    assert torch.autograd.gradcheck(f, (x, h0, *params))


@pytest.mark.parametrize("Cell", [MinGRUCell, MinLSTMCell])
def test_long_sequence_finite_and_equal(Cell):
    # T = 4096 with slow gates (z ~ 0.01 for minGRU, f' ~ 0.99 for minLSTM): the state remembers over
    # hundreds of steps, so long products of a matter. The float32 scan must stay finite and equal to
    # the reference loop run in float64 (the float32 loop itself is off by ~1e-4 in a bias gradient
    # here, a sum over 8192 steps; the scan is no worse).
    torch.manual_seed(0)
    truth = Recurrent(Cell(3, 4, dtype=torch.float64), impl="reference")
    with torch.no_grad():
        truth.cells[0].bias_ih[:4] = -4.6 if Cell is MinGRUCell else 4.6  # minGRU: z; minLSTM: f
    fast = Recurrent(Cell(3, 4), impl="auto")
    fast.load_state_dict(truth.state_dict())
    x, h0 = torch.randn(4096, 2, 3), torch.full((1, 2, 4), 3.0)
    y_ref, h_ref, g_ref = run(truth, x.double(), h0.double())
    y, h, g = run(fast, x, h0)
    assert bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(v).all()) for v in g.values())
    close(y.double(), y_ref, 1e-5)
    close(h.double(), h_ref, 1e-5)
    for key in g_ref:
        close(g[key].double(), g_ref[key], 1e-4)


def test_extreme_gates_stay_finite():
    # pre-activations of +-200: the gates are exactly 0 or 1 in float32 and minLSTM's f / (f + i) could
    # be 0 / 0; the scan's log form keeps every value and gradient finite
    for Cell in (MinGRUCell, MinLSTMCell):
        model = Recurrent(Cell(3, 4))
        with torch.no_grad():
            model.cells[0].weight_ih.mul_(300)
        x = torch.randn(500, 2, 3).requires_grad_()
        y, h = model(x)
        (y.sum() + h.sum()).backward()
        assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(x.grad).all())
        assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


# -- what the Recurrent layer adds -----------------------------------------------------------------------


@pytest.mark.parametrize("Cell", [MinGRUCell, MinLSTMCell])
def test_packed_equals_lengths(Cell):
    torch.manual_seed(0)
    model = Recurrent(Cell(3, 4), num_layers=2, bidirectional=True)
    x, lengths = torch.randn(7, 3, 3), torch.tensor([4, 7, 2])
    y, h = model(x, lengths=lengths)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    y_packed, h_packed = model(packed)
    torch.testing.assert_close(y_packed.data, pack_padded_sequence(y, lengths, enforce_sorted=False).data)
    torch.testing.assert_close(h_packed, h)


@pytest.mark.parametrize("Cell", [MinGRUCell, MinLSTMCell])
def test_padded_equals_each_sequence_alone(Cell):
    torch.manual_seed(0)
    model = Recurrent(Cell(3, 4), num_layers=2, bidirectional=True)
    x, lengths = torch.randn(6, 3, 3), [6, 2, 4]
    y, h = model(x, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        y_b, h_b = model(x[:n, b : b + 1])
        torch.testing.assert_close(y[:n, b : b + 1], y_b)
        torch.testing.assert_close(h[:, b : b + 1], h_b)


def test_dropout_between_layers_matches_reference():
    ref, fast = pair(lambda n: MinGRUCell(n, 4), num_layers=3, dropout=0.5)
    x = torch.randn(9, 2, 3)
    torch.manual_seed(5)
    y_ref, _ = ref(x)
    torch.manual_seed(5)
    y, _ = fast(x)
    torch.testing.assert_close(y, y_ref)
    ref.eval()
    assert not torch.equal(y_ref, ref(x)[0])  # the dropout did act in training mode


def test_dispatch_chooses_the_scan():
    model = Recurrent(MinLSTMCell(3, 4), num_layers=2)
    x = torch.zeros(5, 2, 3)
    for impl in ("auto", "fused"):
        assert plan(model.cells, "concat", impl, run_cell, x).runners == (run_scan, run_scan)
    assert plan(model.cells, "concat", "reference", run_cell, x).runners == (run_cell, run_cell)
    with pytest.raises(InputError, match="impl='native' needs a stack torch implements"):
        plan(model.cells, "concat", "native", run_cell, x)


def test_stacked_cells_keep_their_options():
    model = Recurrent(MinLSTMCell(3, 5, bias=False, candidate="linear"), num_layers=2, bidirectional=True)
    assert [c.input_size for c in model.cells] == [3, 3, 10, 10]
    assert all(c.candidate == "linear" and c.bias_ih is None for c in model.cells)
    assert model(torch.randn(4, 2, 3))[0].shape == (4, 2, 10)


def test_no_grad_scan_equals_reference():
    ref, fast = pair(CELLS["minlstm"], num_layers=2)
    x = torch.randn(50, 3, 3)
    with torch.no_grad():
        y_ref, h_ref = ref(x)
        y, h = fast(x)
    close(y, y_ref, 1e-5)
    close(h, h_ref, 1e-5)


# -- streaming: one step at a time continues a forward pass ----------------------------------------------


@pytest.mark.parametrize("Cell", [MinGRUCell, MinLSTMCell])
@pytest.mark.parametrize("grad", [False, True])
def test_streaming_step_continues_forward(Cell, grad):
    torch.manual_seed(0)
    model = Recurrent(Cell(3, 4), num_layers=2)
    x = torch.randn(9, 2, 3)
    y_all, h_all = model(x)  # the scan over all 9 steps
    with torch.set_grad_enabled(grad):
        _, state = model(x[:5])
        for t in range(5, 9):
            y, state = model.step(x[t], state)
            torch.testing.assert_close(y, y_all[t])
    torch.testing.assert_close(state, h_all)
    # unbatched
    y1, s1 = model.step(x[5, 0], model(x[:5, 0])[1])
    torch.testing.assert_close(y1, y_all[5, 0])


def test_cell_forward_checked_single_step():
    cell = MinGRUCell(3, 4)
    x = torch.randn(3)
    y, h = cell(x)
    assert y.shape == (4,) and h.shape == (4,)
    torch.testing.assert_close(y, cell.step(x[None], torch.zeros(1, 4))[0][0])


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("Cell", [MinGRUCell, MinLSTMCell])
def test_bad_construction(Cell):
    with pytest.raises(ValueError, match=r"candidate must be one of \('g', 'linear'\), got 'relu'"):
        Cell(3, 4, candidate="relu")
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        Cell(3, 0)
    with pytest.raises(TypeError, match="input_size should be of type int"):
        Cell(3.0, 4)


def test_bad_input_to_layer_and_cell():
    model = Recurrent(MinGRUCell(3, 4), num_layers=2)
    with pytest.raises(InputError, match="Expected 3, got 5"):
        model(torch.randn(6, 2, 5))
    with pytest.raises(InputError, match=r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"):
        model(torch.randn(6, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(InputError, match="lengths must be <= the sequence length 6, got 7"):
        model(torch.randn(6, 2, 3), lengths=torch.tensor([7, 2]))
    with pytest.raises(InputError, match="does not match weight dtype"):
        model(torch.randn(6, 2, 3, dtype=torch.float64))
    with pytest.raises(InputError, match="expects the state as one tensor"):
        model(torch.randn(6, 2, 3), (torch.zeros(2, 2, 4), torch.zeros(2, 2, 4)))
    with pytest.raises(InputError, match="input has inconsistent input_size: got 2 expected 3"):
        MinLSTMCell(3, 4)(torch.randn(2, 2))
    with pytest.raises(InputError, match="needs a unidirectional layer"):
        Recurrent(MinGRUCell(3, 4), bidirectional=True).step(torch.randn(2, 3))


def test_bad_input_to_linear_scan():
    a = torch.rand(5, 2, 3)
    with pytest.raises(InputError, match=r"same shape \(T, ...\) with T >= 1, got \(5, 2, 3\) and \(5, 2\)"):
        linear_scan(a, torch.rand(5, 2), torch.zeros(2, 3))
    with pytest.raises(InputError, match=r"h0 must be one step's shape \(2, 3\), got \(3,\)"):
        linear_scan(a, a, torch.zeros(3))
    with pytest.raises(InputError, match="T >= 1"):
        linear_scan(a[:0], a[:0], torch.zeros(2, 3))


# -- the language model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_train_lm_and_generate_with_a_minimal_cell(cell, tmp_path, capsys, one_thread):
    import json

    from rnnkit.cli import main

    corpus = tmp_path / "verse.txt"
    corpus.write_text("the king is dead, long live the king.\nmy lord, the queen is in the garden.\n" * 40)
    run = tmp_path / "run"
    argv = ["train", "lm", "--data", str(corpus), "--out", str(run), "--cell", cell, "--layers", "2",
            "--hidden", "24", "--steps", "30", "--batch", "4", "--seq-len", "16", "--lr", "1e-2",
            "--no-progress", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert json.loads((run / "config.json").read_text())["model"]["cell"] == cell
    assert report["valid_loss"] < math.log(report["vocab_size"]) - 0.5  # it learned something
    assert main(["generate", str(run), "--prime", "the ", "--length", "20", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)["text"]
    assert text.startswith("the ") and len(text) == 24
