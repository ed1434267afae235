"""The fused GPU kernels (kernels/gpu_fused.py, Triton) against the reference loop.

On a machine without CUDA the same kernels run on CPU tensors in Triton's interpreter (slow per
launch, so the sizes here are tiny); with CUDA the test also runs on the GPU. Skipped when Triton is
not installed (the optional extra ``gpu``)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (pip install 'rnnkit[gpu]')")

from rnnkit import ElmanCell, GRUCell, LSTMCell  # noqa: E402
from rnnkit.cells import LSTMState  # noqa: E402
from rnnkit.kernels import gpu_fused, gpu_graphs  # noqa: E402
from rnnkit.kernels.masks import Recurrence  # noqa: E402
from rnnkit.layers.recurrent import run_cell  # noqa: E402

# the interpreter (CPU tensors) only where no GPU is: tests/conftest.py turns it on there
DEVICES = ["cuda"] if torch.cuda.is_available() else ["cpu"]

CELLS = {
    "lstm": lambda: LSTMCell(3, 5),
    "lstm_peephole": lambda: LSTMCell(3, 5, peephole=True),
    "lstm_layer_norm": lambda: LSTMCell(3, 5, layer_norm=True),
    "lstm_ln_peephole": lambda: LSTMCell(3, 5, layer_norm=True, peephole=True),
    "gru_textbook": lambda: GRUCell(3, 5, reset_after=False),
    "gru": lambda: GRUCell(3, 5),
    "gru_textbook_nobias": lambda: GRUCell(3, 5, reset_after=False, bias=False),
    "elman_tanh": lambda: ElmanCell(3, 5),
    "elman_relu": lambda: ElmanCell(3, 5, nonlinearity="relu"),
    "elman_sigmoid": lambda: ElmanCell(3, 5, nonlinearity="sigmoid"),
    "elman_identity": lambda: ElmanCell(3, 5, nonlinearity="identity"),
    "elman_readout": lambda: ElmanCell(3, 5, readout_size=2, readout_activation="tanh"),
}


def _state(cell, B, dtype, device, gen):
    size = cell.state_size
    if isinstance(size, tuple):
        return LSTMState(*(torch.randn(B, n, generator=gen, dtype=dtype).to(device) for n in size))
    return torch.randn(B, size, generator=gen, dtype=dtype).to(device)


def _rec(cell, T, B, options, device, gen):
    """State dropout (a scaled 0/1 mask) and zoneout (0/1 masks per field), as the layer draws them."""
    fields = cell.state_size if isinstance(cell.state_size, tuple) else (cell.state_size,)
    mask = zone = None
    if "dropout" in options:
        mask = (torch.rand(B, fields[0], generator=gen) > 0.3).double().div(0.7).to(device)
    if "zoneout" in options:
        zone = tuple((torch.rand(T, B, n, generator=gen) < 0.4).double().to(device) for n in fields)
    return Recurrence(mask, zone) if (mask is not None or zone is not None) else None


def _run(runner, cell, x, state, rec, reverse):
    y, final = runner(cell, x, state, None, reverse, rec=rec)
    fin = tuple(final) if isinstance(final, tuple) else (final,)
    loss = (y * torch.linspace(-1, 1, y.shape[-1], device=y.device, dtype=y.dtype)).sum() + sum(
        (f * f).sum() for f in fin
    )
    leaves = [x, *fin_leaves(state), *cell.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [y, *fin], grads


def fin_leaves(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


def _slow_on_cpu(values, fast):
    """On the interpreter (no GPU) only ``fast`` runs in the normal suite; the rest is marked slow."""
    cpu = DEVICES == ["cpu"]
    return [pytest.param(v, marks=pytest.mark.slow) if cpu and v not in fast else v for v in values]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "options", _slow_on_cpu(["", "dropout", "zoneout", "dropout+zoneout"], ["dropout+zoneout"])
)
@pytest.mark.parametrize("name", list(CELLS))
def test_gpu_kernel_equals_reference(name, options, device):
    if name == "elman_readout":  # zoneout with a readout runs on the reference loop only
        options = options.replace("zoneout", "")
    gen = torch.Generator().manual_seed(hash((name, options)) % 2**31)
    torch.manual_seed(0)
    cell = CELLS[name]().double().to(device)
    if name.startswith("lstm_l"):  # non-trivial LN gains and bias
        with torch.no_grad():
            for p in (cell.norm_h.weight, cell.norm_c.weight, cell.norm_c.bias, cell.norm_x.weight):
                p.uniform_(0.5, 1.5)
    T, B = 4, 3
    x = torch.randn(T, B, 3, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    state = _state(cell, B, torch.float64, device, gen)
    state = (
        type(state)(*(s.requires_grad_() for s in state))
        if isinstance(state, tuple)
        else state.requires_grad_()
    )
    rec = _rec(cell, T, B, options, device, gen)
    reverse = "dropout" in options
    assert gpu_fused.supports(cell, rec, x.float())
    # the kernels run float32 (and bfloat16); the reference runs float64
    cell32 = CELLS[name]().to(device)
    cell32.load_state_dict(cell.state_dict())
    x32 = x.detach().float().requires_grad_()
    s32 = (
        type(state)(*(s.detach().float().requires_grad_() for s in state))
        if isinstance(state, tuple)
        else (state.detach().float().requires_grad_())
    )
    rec32 = (
        None
        if rec is None
        else Recurrence(
            None if rec.state_mask is None else rec.state_mask.float(),
            None if rec.zoneout is None else tuple(z.float() for z in rec.zoneout),
        )
    )
    outs, grads = _run(run_cell, cell, x, state, rec, reverse)
    fouts, fgrads = _run(gpu_fused.run_gpu, cell32, x32, s32, rec32, reverse)
    for a, b in zip(outs, fouts, strict=True):
        torch.testing.assert_close(b.double(), a, atol=2e-5, rtol=1e-4)
    for a, b in zip(grads, fgrads, strict=True):
        if a is None:
            assert b is None or not b.any()
            continue
        torch.testing.assert_close(b.double(), a, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name",
    _slow_on_cpu(["lstm_ln_peephole", "gru_textbook", "gru", "elman_relu"], ["lstm_ln_peephole", "gru"]),
)
def test_graph_replays_equal_eager_runs(name, device, monkeypatch):
    """Through CUDA graphs (on CPU: the same static-buffer bookkeeping, replayed by calling the loop):
    the first call runs eagerly, the second captures, the third replays; each, on fresh inputs of the
    same shapes, equals an eager run of the same inputs."""
    monkeypatch.setattr(gpu_graphs, "EMULATE", True)
    gpu_graphs.clear()
    torch.manual_seed(0)
    cell = CELLS[name]().to(device)
    T, B = 3, 2
    gen = torch.Generator().manual_seed(1)
    before = dict(gpu_graphs.STATS)
    for _ in range(3):
        x = torch.randn(T, B, 3, generator=gen).to(device).requires_grad_()
        state = _state(cell, B, torch.float32, device, gen)
        for s in fin_leaves(state):
            s.requires_grad_()
        rec = _rec(cell, T, B, "dropout+zoneout", device, gen)
        rec = Recurrence(rec.state_mask.float(), tuple(z.float() for z in rec.zoneout))
        outs, grads = _run(gpu_fused.run_gpu, cell, x, state, rec, False)
        monkeypatch.setenv(gpu_graphs.ENV_OFF, "0")
        eager_outs, eager_grads = _run(gpu_fused.run_gpu, cell, x, state, rec, False)
        monkeypatch.delenv(gpu_graphs.ENV_OFF)
        for a, b in zip([*outs, *grads], [*eager_outs, *eager_grads], strict=True):
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # forward and backward each: captured in the second call, replayed in the second and third
    assert gpu_graphs.STATS["captured"] - before["captured"] == 2
    assert gpu_graphs.STATS["replayed"] - before["replayed"] == 4
    gpu_graphs.clear()
