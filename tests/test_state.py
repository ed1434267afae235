"""State control: every step's states and gates (forward_with_states), reset masks, the learned initial
state, and Recurrent.step with resets. Each is checked against an independent computation: a hand loop
over cell.step / cell.gates, or the pieces of a sequence run separately."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, LSTMState, Recurrent
from rnnkit.errors import InputError

F64 = torch.float64

CELLS = {
    "elman": lambda n: ElmanCell(n, 4, dtype=F64),
    "jordan": lambda n: JordanCell(n, 5, 4, dtype=F64),
    "gru": lambda n: GRUCell(n, 4, dtype=F64),
    "gru_textbook": lambda n: GRUCell(n, 4, reset_after=False, dtype=F64),
    "lstm": lambda n: LSTMCell(n, 4, dtype=F64),
    "lstm_proj_peephole": lambda n: LSTMCell(n, 4, proj_size=3, peephole=True, dtype=F64),
}


def fields(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


def entry(state, k):
    return type(state)(*(s[k] for s in state)) if isinstance(state, tuple) else state[k]


def column(state, b):
    """state[:, b:b+1] field by field."""
    return type(state)(*(s[:, b : b + 1] for s in state)) if isinstance(state, tuple) else state[:, b : b + 1]


def hand_loop(model: Recurrent, x, state=None):
    """Independent of the runners: per layer and direction, a loop over cell.step (the reverse
    direction over the flipped sequence), recording each step's state and cell.gates. Returns the
    output, and states / gates stacked as (T, K, B, n)."""
    cells = model.layer_cells()
    T, B = x.shape[:2]
    states, gates = [], []
    for layer in range(model.num_layers):
        outs = []
        for d in range(model.num_directions):
            k = layer * model.num_directions + d
            cell = cells[k]
            s = cell.init_state(B, dtype=x.dtype) if state is None else entry(state, k)
            seq = x.flip(0) if d else x
            ys, ss, gs = [], [], []
            for t in range(T):
                if hasattr(cell, "gates"):
                    gs.append(cell.gates(seq[t], s))
                y, s = cell.step(seq[t], s)
                ys.append(y)
                ss.append(s)
            flip = (lambda v: v.flip(0)) if d else (lambda v: v)
            outs.append(flip(torch.stack(ys)))
            if isinstance(s, tuple):
                states.append(type(s)(*(flip(torch.stack(f)) for f in zip(*ss, strict=True))))
            else:
                states.append(flip(torch.stack(ss)))
            gates.append({n: flip(torch.stack([g[n] for g in gs])) for n in (gs[0] if gs else {})})
        x = torch.cat(outs, -1)
    stacked = type(states[0])(*(torch.stack(f, 1) for f in zip(*states, strict=True))) if isinstance(
        states[0], tuple) else torch.stack(states, 1)  # fmt: skip
    names = gates[0].keys()
    return x, stacked, {n: torch.stack([g[n] for g in gates], 1) for n in names}


def assert_state_close(a, b, **kw):
    assert type(a) is type(b)
    for u, v in zip(fields(a), fields(b), strict=True):
        torch.testing.assert_close(u, v, **kw)


# -- forward_with_states -------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["reference", "fused", "auto"])
@pytest.mark.parametrize("name", list(CELLS))
def test_states_and_gates_equal_a_hand_loop(name, impl):
    torch.manual_seed(0)
    model = Recurrent(CELLS[name](3), num_layers=2, bidirectional=True, impl=impl)
    x = torch.randn(5, 2, 3, dtype=F64)
    size = model.cells[0].state_size
    state = type(size)(*(torch.randn(4, 2, n, dtype=F64) for n in size)) if isinstance(size, tuple) else (
        torch.randn(4, 2, size, dtype=F64))  # fmt: skip
    out = model.forward_with_states(x, state)
    y, final = model(x, state)
    y_h, states_h, gates_h = hand_loop(model, x, state)
    torch.testing.assert_close(out.output, y_h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.output, y, rtol=1e-12, atol=1e-12)
    assert_state_close(out.state, final, rtol=1e-12, atol=1e-12)
    assert_state_close(out.states, states_h, rtol=1e-12, atol=1e-12)
    assert out.gates.keys() == gates_h.keys()
    assert bool(out.gates) == name.startswith(("lstm", "gru"))
    for n in gates_h:
        assert out.gates[n].shape == (5, 4, 2, 4)
        torch.testing.assert_close(out.gates[n], gates_h[n], rtol=1e-12, atol=1e-12)


def test_native_lstm_states_run_fused_and_match_the_reference():
    """The drop-in LSTM (torch's op under auto) returns every step's h and c through the fused kernel,
    with the reference loop's values and gradients (including gradients through the states)."""
    torch.manual_seed(0)
    auto = rnn.LSTM(3, 4, num_layers=2, batch_first=True).double()
    ref = rnn.LSTM(3, 4, num_layers=2, batch_first=True, impl="reference").double()
    ref.load_state_dict(auto.state_dict())
    x = torch.randn(2, 6, 3, dtype=F64)
    lengths = torch.tensor([6, 3])
    results = []
    for model in (auto, ref):
        xx = x.clone().requires_grad_()
        out = model.forward_with_states(xx, lengths=lengths)
        assert out.states.h.shape == (2, 6, 2, 4) and out.states.c.shape == (2, 6, 2, 4)  # (B, T, K, n)
        loss = out.output.sum() + (out.states.c**2).sum() + out.gates["forget"].sum()
        loss.backward()
        results.append((out.states, xx.grad, [p.grad.clone() for p in model.parameters()]))
    (s_a, gx_a, gp_a), (s_r, gx_r, gp_r) = results
    assert_state_close(s_a, s_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx_a, gx_r, rtol=1e-10, atol=1e-10)
    for a, b in zip(gp_a, gp_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # past a sequence's end the state is frozen at its last step, and it is the final state
    torch.testing.assert_close(s_a.c[1, 3:], s_a.c[1, 2:3].expand(3, 2, 4))


class StatesOf(torch.nn.Module):
    """forward = the wrapped layer's forward_with_states (output and every step's c), so functional_call
    can swap its parameters for gradcheck."""

    def __init__(self, layer: Recurrent) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x, lengths):
        out = self.layer.forward_with_states(x, lengths=lengths)
        return out.output, out.states.c


@pytest.mark.parametrize("training", [False, True])
def test_fused_lstm_gradcheck_through_every_steps_c(training):
    """The fused LSTM's backward for gradients arriving through every step's c (zoneout on c, so the
    states differ from the outputs' path)."""
    torch.manual_seed(0)
    layer = Recurrent(LSTMCell(2, 3, peephole=True), bidirectional=True, impl="fused", zoneout=0.3)
    model = StatesOf(layer.double().train(training))
    params = dict(model.named_parameters())
    lengths = torch.tensor([4, 2])

    def g(x, *values):
        torch.manual_seed(2)
        return functional_call(model, dict(zip(params, values, strict=True)), (x, lengths))

    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    values = [p.detach().clone().requires_grad_() for p in params.values()]
    assert torch.autograd.gradcheck(g, (x, *values))


def test_states_layouts_unbatched_and_packed():
    torch.manual_seed(0)
    model = Recurrent(GRUCell(3, 4), num_layers=2).double()
    x = torch.randn(5, 3, dtype=F64)
    out = model.forward_with_states(x)
    assert out.states.shape == (5, 2, 4) and out.gates["update"].shape == (5, 2, 4)
    torch.testing.assert_close(out.states[-1], out.state)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(5, 2, 3, dtype=F64), [5, 3])
    out = model.forward_with_states(packed)
    assert isinstance(out.output, torch.nn.utils.rnn.PackedSequence) and out.states.shape == (5, 2, 2, 4)


# -- reset masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("name", list(CELLS))
def test_reset_equals_running_the_documents_separately(name, impl):
    """Two documents in one stream, the second starting at t=3: with reset[3] the layer (2 layers,
    bidirectional, learned initial state) gives what each document gives alone, values and gradients
    (the learned initial state's gradient is the sum over both documents)."""
    torch.manual_seed(0)
    model = Recurrent(CELLS[name](3), num_layers=2, bidirectional=True, impl=impl, learn_initial_state=True)
    with torch.no_grad():
        for n in model._initial_names:
            getattr(model, n).normal_()
    x = torch.randn(7, 1, 3, dtype=F64)
    reset = torch.zeros(7, 1, dtype=torch.bool)
    reset[3] = True

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    y, final = model(x, reset=reset)
    g_joint = grads((y * torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)).sum())
    y1, f1 = model(x[:3])
    y2, f2 = model(x[3:])
    y_sep = torch.cat([y1, y2])
    torch.testing.assert_close(y, y_sep, rtol=1e-12, atol=1e-12)
    for a, b1, b2 in zip(fields(final), fields(f1), fields(f2), strict=True):  # fwd ends in doc 2, rev in 1
        torch.testing.assert_close(a[0::2], b2[0::2], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a[1::2], b1[1::2], rtol=1e-12, atol=1e-12)
    g_sep = grads((y_sep * torch.linspace(-1, 1, y.numel(), dtype=F64).view_as(y)).sum())
    for n in g_joint:
        torch.testing.assert_close(g_joint[n], g_sep[n], rtol=1e-10, atol=1e-10, msg=n)
    assert g_joint["initial_h"].abs().sum() > 0


@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_reset_per_stream_with_lengths_and_a_given_state(impl):
    """A batch of streams, each with its own boundaries and length, a given (carried) state, batch_first:
    each stream equals running its pieces: the first from the given state, later ones from zeros."""
    torch.manual_seed(0)
    model = rnn.GRU(3, 4, num_layers=2, batch_first=True, impl=impl).double()
    B, T = 3, 8
    x = torch.randn(B, T, 3, dtype=F64)
    h0 = torch.randn(2, B, 4, dtype=F64)
    lengths = torch.tensor([8, 6, 5])
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, [2, 5]] = True
    reset[1, 4] = True
    reset[2, 6] = True  # past the end: ignored
    y, h_n = model(x, h0, lengths=lengths, reset=reset)
    for b in range(B):
        cuts = [0, *reset[b, : lengths[b]].nonzero().flatten().tolist(), int(lengths[b])]
        cuts = sorted(set(cuts))
        state, pieces = h0[:, b : b + 1], []
        for start, end in zip(cuts[:-1], cuts[1:], strict=True):
            out, state = model(x[b : b + 1, start:end], state if start == 0 else None)
            pieces.append(out)
        torch.testing.assert_close(y[b : b + 1, : lengths[b]], torch.cat(pieces, 1), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h_n[:, b : b + 1], state, rtol=1e-12, atol=1e-12)
        assert (y[b, lengths[b] :] == 0).all()


def test_step_with_reset_continues_forward_with_reset():
    torch.manual_seed(0)
    model = Recurrent(LSTMCell(3, 4), num_layers=2, learn_initial_state=True).double()
    with torch.no_grad():
        model.initial_h.normal_()
        model.initial_c.normal_()
    x = torch.randn(6, 2, 3, dtype=F64)
    reset = torch.zeros(6, 2, dtype=torch.bool)
    reset[2, 0] = reset[4, 1] = True
    y, final = model(x, reset=reset)
    state, ys = None, []
    for t in range(6):
        out, state = model.step(x[t], state, reset=reset[t])
        ys.append(out)
    torch.testing.assert_close(torch.stack(ys), y, rtol=1e-12, atol=1e-12)
    assert_state_close(state, final, rtol=1e-12, atol=1e-12)
    # unbatched
    out, s = model.step(x[0, 0], entry_unbatched(final), reset=torch.tensor(True))
    out_ref, _ = model.step(x[0, 0])
    torch.testing.assert_close(out, out_ref)


def entry_unbatched(state):
    return LSTMState(state.h[:, 0], state.c[:, 0])


def test_step_applies_zoneout_expected_value_at_evaluation():
    """Recurrent.step with zoneout in eval mode mixes the state as forward does."""
    torch.manual_seed(0)
    model = Recurrent(GRUCell(3, 4), zoneout=0.4).double().eval()
    x = torch.randn(5, 2, 3, dtype=F64)
    y, _ = model(x)
    state, ys = None, []
    for t in range(5):
        out, state = model.step(x[t], state)
        ys.append(out)
    torch.testing.assert_close(torch.stack(ys), y, rtol=1e-12, atol=1e-12)


def test_bad_reset_masks_are_refused():
    model = Recurrent(GRUCell(3, 4))
    x = torch.randn(5, 2, 3)
    with pytest.raises(InputError, match=r"reset must be a bool tensor .*got torch.int64"):
        model(x, reset=torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(InputError, match=r"reset must have shape \(5, 2\) \(T, B\), got \(2, 5\)"):
        model(x, reset=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(InputError, match=r"reset must have shape \(2, 5\) \(B, T\) with batch_first"):
        Recurrent(GRUCell(3, 4), batch_first=True)(
            x.transpose(0, 1), reset=torch.zeros(5, 2, dtype=torch.bool)
        )
    with pytest.raises(InputError, match=r"reset must have shape \(5,\) \(T,\) for unbatched input"):
        model(x[:, 0], reset=torch.zeros(5, 1, dtype=torch.bool))
    with pytest.raises(InputError, match=r"reset must be a bool tensor .*got list"):
        model(x, reset=[[True]])
    with pytest.raises(InputError, match=r"step: reset must be a bool tensor of shape \(2,\)"):
        model.step(x[0], torch.zeros(1, 2, 4), reset=torch.zeros(2, 1, dtype=torch.bool))


# -- the learned initial state -----------------------------------------------------------------------


def test_learned_initial_state_is_a_parameter_used_when_no_state_is_given():
    torch.manual_seed(0)
    model = rnn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, learn_initial_state=True).double()
    sd = model.state_dict()
    assert sd["initial_h"].shape == (4, 1, 2) and sd["initial_c"].shape == (4, 1, 4)
    assert (sd["initial_h"] == 0).all() and (sd["initial_c"] == 0).all()  # starts at zero
    with torch.no_grad():
        model.initial_h.normal_()
        model.initial_c.normal_()
    x = torch.randn(5, 3, 3, dtype=F64)
    y, _ = model(x)
    given = (model.initial_h.expand(4, 3, 2), model.initial_c.expand(4, 3, 4))
    torch.testing.assert_close(y, model(x, tuple(s.detach() for s in given))[0])
    y.sum().backward()
    assert model.initial_h.grad.abs().sum() > 0 and model.initial_c.grad.abs().sum() > 0
    # the torch weights keep torch's initialisation; the state_dict loads back
    torch.manual_seed(1)
    again = rnn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, learn_initial_state=True)
    torch.manual_seed(1)
    plain = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    assert torch.equal(again.weight_hh_l1_reverse, plain.weight_hh_l1_reverse)
    again.double().load_state_dict(sd)
    assert torch.equal(again.initial_c, sd["initial_c"])


def test_initial_state_method_and_default_off():
    model = Recurrent(JordanCell(3, 5, 4))
    assert not any(n.startswith("initial_") for n, _ in model.named_parameters())
    assert torch.equal(model.initial_state(2), torch.zeros(1, 2, 4))
    learned = Recurrent(JordanCell(3, 5, 4), learn_initial_state=True)
    assert learned.initial_state(2).shape == (1, 2, 4) and learned.initial_h.requires_grad


# -- truncated BPTT across document boundaries -------------------------------------------------------


def test_lm_task_resets_the_carried_state_at_document_starts():
    """LMTask(reset_on=sep): the loss of a chunk equals the language model run on each document alone
    (a document starts where the stream reads ``sep``); without reset_on it differs."""
    import torch.nn.functional as F

    from rnnkit.apps.lm.model import LanguageModel, LMConfig
    from rnnkit.apps.lm.task import LMTask

    torch.manual_seed(0)
    ids = torch.randint(1, 6, (41,))
    ids[[0, 7, 15, 16, 33]] = 0  # document starts
    model = LanguageModel(LMConfig(vocab_size=6, cell="lstm", hidden=8, layers=2))
    task = LMTask(ids, ids, batch_size=1, seq_len=20, reset_on=0)
    loss, _ = task.train_step(model, 1.0)
    x, y = task.train[0]  # (T, 1)
    cuts = [*(x[:, 0] == 0).nonzero().flatten().tolist(), x.shape[0]]
    logits = torch.cat([model(x[a:b])[0] for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    torch.testing.assert_close(loss, F.cross_entropy(logits.flatten(0, 1), y.flatten()))
    plain = LMTask(ids, ids, batch_size=1, seq_len=20)
    assert not torch.allclose(plain.train_step(model, 1.0)[0], loss)
    with pytest.raises(ValueError, match="reset_on must be >= 0"):
        LMTask(ids, ids, batch_size=1, seq_len=20, reset_on=-1)
