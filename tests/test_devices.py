"""rnnkit on every device this machine has: the CPU always, CUDA when a GPU is present (skipped
otherwise, with the reason). Drop-ins against torch.nn, every path (auto, fused, the scan) against the
reference loop, streaming and generation, on the same device. The GPU kernels' own equations are
checked in test_gpu_kernels.py."""

from __future__ import annotations

import pytest
import torch

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, LSTMCell, Recurrent
from rnnkit.cells.minimal import MinGRUCell, MinLSTMCell
from rnnkit.generate import sample_tokens
from rnnkit.kernels.gpu_native import is_flat
from rnnkit.models import LanguageModel, LMConfig

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@pytest.fixture(params=DEVICES)
def device(request):
    """The device under test, with TF32 off so that float32 means float32 on a GPU."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    cudnn = torch.backends.cudnn
    # the context manager, not assignment: torch's own test helpers (imported by test_nn_module_db)
    # call torch.backends.disable_global_flags(), after which setting cudnn flags directly raises
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                     allow_tf32=False):  # fmt: skip
        yield torch.device(request.param)
    torch.backends.cuda.matmul.allow_tf32 = old


def _grads(model, x, out):
    loss = sum((o.float() * torch.linspace(-1, 1, o.shape[-1], device=o.device)).sum() for o in out)
    return torch.autograd.grad(loss, [x, *model.parameters()])


def close_in_norm(got, want, rel):
    """|got - want| <= rel |want| in the 2-norm: float32 rounding scales with the whole tensor (layer
    norm's gradients reach 1e2 where others are 1e-1), which an elementwise tolerance does not see."""
    err, size = (got.double() - want.double()).norm().item(), want.double().norm().item()
    assert err <= rel * size + 1e-7, (
        f"|got - want| = {err:.3g}, |want| = {size:.3g}, allowed {rel:.0e} relative"
    )


def _flat(out):
    y, state = out
    return [y, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_drop_in_equals_torch_nn(kind, device):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(6, 16, num_layers=2, bidirectional=True).to(device)
    ours = getattr(rnn, kind)(6, 16, num_layers=2, bidirectional=True).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(7, 3, 6, device=device, requires_grad=True)
    a, b = _flat(theirs(x)), _flat(ours(x))
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(v, u, atol=1e-5, rtol=1e-5)
    for u, v in zip(_grads(theirs, x, a), _grads(ours, x, b), strict=True):
        torch.testing.assert_close(v, u, atol=1e-5, rtol=1e-5)
    if device.type == "cuda":  # the cells' parameters now live in one cuDNN buffer, as torch's do
        assert is_flat(list(ours.parameters()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_auto_on_the_triton_kernels_equals_torch_nn(kind, dtype, device):
    """At B=16, H=256 auto runs these through the Triton kernels on CUDA from a shape's second call
    (gpu_fused.GPU_WINS; on the CPU: torch's op). float32: 1e-5 in norm; bfloat16: within 2e-2 of
    torch.nn in bfloat16 (both round every step's state to 8 bits)."""
    if device.type == "cpu":
        pytest.skip("on the CPU auto runs torch's own op here: nothing to compare")
    torch.manual_seed(0)
    theirs = getattr(torch.nn, kind)(32, 256).to(device, dtype)
    ours = getattr(rnn, kind)(32, 256).to(device, dtype)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(20, 16, 32, device=device, dtype=dtype, requires_grad=True)
    rel = 1e-5 if dtype == torch.float32 else 2e-2
    for _ in range(3):  # cuDNN, the kernels eagerly, the kernels' CUDA graph
        a, b = _flat(theirs(x)), _flat(ours(x))
        for u, v in zip(a + list(_grads(theirs, x, a)), b + list(_grads(ours, x, b)), strict=True):
            close_in_norm(v, u, rel)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_drop_in_bfloat16_close_to_float32(kind, device):
    """bfloat16 (8 bits of mantissa): within 3e-2 of float32 after 7 steps, outputs in (-1, 1)."""
    torch.manual_seed(0)
    ours = getattr(rnn, kind)(6, 16).to(device)
    x = torch.randn(7, 3, 6, device=device)
    y32 = ours(x)[0]
    y16 = ours.to(torch.bfloat16)(x.bfloat16())[0]
    assert y16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, atol=3e-2, rtol=0)


CELLS = {
    "lstm_peephole": lambda: LSTMCell(6, 16, peephole=True),
    "lstm_layer_norm": lambda: LSTMCell(6, 16, layer_norm=True),
    "gru_textbook": lambda: GRUCell(6, 16, reset_after=False),
    "elman_sigmoid": lambda: ElmanCell(6, 16, nonlinearity="sigmoid"),
    "lstm": lambda: LSTMCell(6, 16),
}


@pytest.mark.parametrize("impl", ["auto", "fused"])
@pytest.mark.parametrize("options", [{}, {"zoneout": 0.2, "state_dropout": 0.3}])
@pytest.mark.parametrize("name", list(CELLS))
def test_paths_equal_reference(name, options, impl, device):
    """Training mode, so zoneout and state dropout draw masks: the same seed draws the same ones."""
    torch.manual_seed(0)
    ref = Recurrent(CELLS[name](), num_layers=2, impl="reference", **options).to(device)
    fast = Recurrent(CELLS[name](), num_layers=2, impl=impl, **options).to(device)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(9, 4, 6, device=device, requires_grad=True)
    torch.manual_seed(1)
    a = _flat(ref(x))
    torch.manual_seed(1)
    b = _flat(fast(x))
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(v, u, atol=2e-5, rtol=1e-4)
    for u, v in zip(_grads(ref, x, a), _grads(fast, x, b), strict=True):
        close_in_norm(v, u, 1e-5)


@pytest.mark.parametrize("make", [MinGRUCell, MinLSTMCell])
def test_scan_equals_step_loop(make, device):
    torch.manual_seed(0)
    ref = Recurrent(make(6, 16), impl="reference").to(device)
    fast = Recurrent(make(6, 16), impl="auto").to(device)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(150, 2, 6, device=device, requires_grad=True)
    a, b = _flat(ref(x)), _flat(fast(x))
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(v, u, atol=1e-5, rtol=1e-4)
    for u, v in zip(_grads(ref, x, a), _grads(fast, x, b), strict=True):
        torch.testing.assert_close(v, u, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["lstm", "gru_textbook", "lstm_layer_norm"])
def test_streaming_step_continues_forward(name, device):
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name](), num_layers=2).to(device).eval()
    x = torch.randn(6, 3, 6, device=device)
    with torch.no_grad():
        y_all, _ = layer(x)
        _, state = layer(x[:4])
        for t in (4, 5):
            y_t, state = layer.step(x[t], state)
            torch.testing.assert_close(y_t, y_all[t], atol=1e-5, rtol=1e-5)


def test_generation_on_device(device):
    """Greedy decoding carries the state (one step per token) = re-reading the whole prefix."""
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(11, cell="lstm", hidden=16, layers=2)).to(device).eval()
    prime = torch.tensor([1, 2, 3], device=device)
    got = sample_tokens(model, prime, 8, greedy=True)
    assert got.device.type == device.type
    seq = prime.clone()
    with torch.no_grad():
        for _ in range(8):
            logits, _ = model(seq.view(-1, 1))  # (len, 1, V)
            seq = torch.cat([seq, logits[-1, 0].argmax().view(1)])
    assert torch.equal(got, seq[3:])


def test_training_and_diagnostics_on_device(device, tmp_path):
    """The TBPTT trainer and the diagnostics run where the model lives (a few steps: not a quality test)."""
    import math

    from rnnkit.diagnostics.core import gate_statistics
    from rnnkit.training.trainer import TrainConfig, train_lm

    torch.manual_seed(0)
    model = LanguageModel(LMConfig(11, cell="gru", hidden=16)).to(device)
    ids = torch.randint(0, 11, (600,))
    config = TrainConfig(steps=3, batch_size=4, seq_len=8, eval_every=3, checkpoint_every=3, plots=False)
    report = train_lm(model, ids[:500], ids[500:], config, tmp_path, progress=False)
    assert math.isfinite(report["train_loss"]) and math.isfinite(report["valid_loss"])
    assert all(p.device.type == device.type for p in model.parameters())
    layer = Recurrent(LSTMCell(6, 16, layer_norm=True), impl="auto").to(device)
    stats = gate_statistics(layer, torch.randn(5, 3, 6, device=device))
    assert set(stats[0]) == {"input", "forget", "cell", "output"}
