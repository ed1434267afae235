"""bfloat16: every path with bf16 parameters and inputs, and under torch.autocast, against float64.

Tolerances (T=16, |h| <= 1; the reference has the same bf16-rounded weights and input): outputs within
0.03 absolute, every parameter's and the input's gradient within 5% relative (2-norm). bf16 keeps 8
bits of mantissa (relative rounding 2^-9 = 0.002), so a step rounds at ~0.002-0.004 and errors grow
slowly with T; a wrong gate or a missed term costs 0.1+.
(Layer-norm LSTMs at random initialisation are chaotic on random input: there a 1e-3 perturbation of
the input grows to 0.8 by T=100 even in float64, so long sequences cannot be compared step by step.)
"""

import pytest
import torch

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, JordanCell, LSTMCell, MinGRUCell, Recurrent
from rnnkit.kernels import precision

T, B, F, H = 16, 4, 12, 24
OUT_ATOL, GRAD_RTOL = 0.03, 0.05
# the layer-norm LSTM amplifies any rounding (see above; reference loop and fused kernel alike), so
# its bound is wider
LOOSE = {"LSTM layernorm": (0.12, 0.15)}
# pure bf16 on the reference loop: autograd sums each weight's gradient over the steps in bf16
# (the fused kernels and autocast's fp32 master weights sum in float32)
REFERENCE_BF16_GRAD_RTOL = 0.1

MODELS = {
    "LSTM": lambda impl: rnn.LSTM(F, H, 2, impl=impl),
    "GRU": lambda impl: rnn.GRU(F, H, 2, bidirectional=True, impl=impl),
    "RNN": lambda impl: rnn.RNN(F, H, impl=impl),
    "LSTM proj": lambda impl: Recurrent(LSTMCell(F, H, proj_size=10), 2, impl=impl),
    "LSTM layernorm": lambda impl: Recurrent(LSTMCell(F, H, layer_norm=True), impl=impl),
    "LSTM peephole": lambda impl: Recurrent(LSTMCell(F, H, peephole=True), impl=impl),
    "GRU textbook": lambda impl: Recurrent(GRUCell(F, H, reset_after=False), impl=impl),
    "Elman relu": lambda impl: Recurrent(ElmanCell(F, H, "relu"), impl=impl),
    "Jordan": lambda impl: Recurrent(JordanCell(F, H, 10), impl=impl),
    "minGRU": lambda impl: Recurrent(MinGRUCell(F, H), 2, impl=impl),
}
NATIVE = {"LSTM", "GRU", "RNN", "LSTM proj"}


def cases():
    for name in MODELS:
        for impl in ("auto", "fused", "native", "reference"):
            if impl == "native" and name not in NATIVE:
                continue
            for mode in ("bf16", "autocast"):
                yield pytest.param(name, impl, mode, id=f"{name}-{impl}-{mode}")


def reference(name, model, x, g):
    """float64 reference loop with the same weights and input rounded to bf16 (what bf16 cannot even
    represent is not the kernels' error): output, and gradients (params, then input)."""
    ref = MODELS[name]("reference")
    ref.load_state_dict({k: v.bfloat16() for k, v in model.state_dict().items()})
    ref = ref.double()
    xr = x.bfloat16().double().requires_grad_()
    y = ref(xr)[0]
    y.backward(g.double())
    return y, [p.grad for p in ref.parameters()] + [xr.grad]


def rel(a, b):
    return ((a.double() - b).norm() / b.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("name,impl,mode", cases())
def test_bf16_against_float64(name, impl, mode):
    torch.manual_seed(0)
    model = MODELS[name](impl)
    x = torch.randn(T, B, F)
    y_shape = (T, B, model(x)[0].shape[-1])
    g = torch.randn(y_shape)
    y_ref, grads_ref = reference(name, model, x, g)
    model.zero_grad()
    if mode == "bf16":
        model = model.bfloat16()
        xs = x.bfloat16().requires_grad_()
        y = model(xs)[0]
    else:
        xs = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(xs)[0]
    y.backward(g.to(y.dtype))
    out_atol, grad_rtol = LOOSE.get(name, (OUT_ATOL, GRAD_RTOL))
    if impl == "reference" and mode == "bf16":
        grad_rtol = max(grad_rtol, REFERENCE_BF16_GRAD_RTOL)
    assert (y.double() - y_ref).abs().max().item() < out_atol
    params = list(model.parameters())
    for p, r in zip(params + [xs], grads_ref, strict=True):
        assert rel(p.grad, r) < grad_rtol
    want = torch.bfloat16 if mode == "bf16" else torch.float32  # autocast: fp32 master weights' grads
    assert all(p.grad.dtype == want for p in params)


def test_autocast_runs_the_fused_kernels_in_bf16():
    """Under autocast the fused kernels compute in bf16 (not silently in float32): their output is
    bf16 and equals the same kernel run on bf16 copies of the weights and input."""
    torch.manual_seed(0)
    layer = Recurrent(LSTMCell(F, H, layer_norm=True), impl="fused")
    x = torch.randn(T, B, F)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)[0]
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, layer.bfloat16()(x.bfloat16())[0], atol=0, rtol=0)


def test_a_wrong_result_fails_the_tolerance():
    """The tolerance can fail: a GRU whose reset and update gates are swapped (a layout slip)."""
    torch.manual_seed(0)
    model = MODELS["GRU"]("fused")
    x = torch.randn(T, B, F)
    y_ref = reference("GRU", model, x, torch.zeros(T, B, 2 * H))[0]
    with torch.no_grad():
        for w in (model.weight_ih_l0, model.weight_hh_l0, model.bias_ih_l0, model.bias_hh_l0):
            w[: 2 * H] = torch.cat([w[H : 2 * H], w[:H]]).clone()
    assert (model.bfloat16()(x.bfloat16())[0].double() - y_ref).abs().max().item() > OUT_ATOL


def test_precision_switch(monkeypatch):
    with precision.autocast("fp32"):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(precision, "bf16_fast", lambda device="cpu": True)
    with precision.autocast("bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(precision, "bf16_fast", lambda device="cpu": False)  # a CPU without bf16 units
    monkeypatch.setattr(precision, "_warned", set())
    with pytest.warns(RuntimeWarning, match="no bf16 hardware"), precision.autocast("bf16"):
        assert torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        precision.autocast("fp16")


def test_training_in_bf16_learns_like_fp32(tmp_path, one_thread):
    """TrainConfig(precision="bf16"): autocast over fp32 master weights; on a learnable pattern it
    ends close to fp32's loss, and the run records its precision."""
    import json
    import math

    from rnnkit.apps.lm.run import train_lm
    from rnnkit.models import LanguageModel, LMConfig
    from rnnkit.training.config import TrainConfig

    ids = torch.tensor([0, 1, 2, 3, 1, 2, 0, 3, 2, 1] * 150)
    valid = {}
    for prec in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = LanguageModel(LMConfig(4, "lstm", hidden=16, layers=1, dropout=0.0, tie_weights=False))
        cfg = TrainConfig(steps=60, batch_size=4, seq_len=16, lr=1e-2, eval_every=60, checkpoint_every=60,
                          plots=False, precision=prec)  # fmt: skip
        valid[prec] = train_lm(model, ids[:1300], ids[1300:], cfg, tmp_path / prec, progress=False)[
            "valid_loss"
        ]
        assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
        saved = json.loads((tmp_path / prec / "config.json").read_text())
        assert saved["train"]["precision"] == prec
    assert valid["fp32"] < math.log(4) - 0.3  # it learned something
    assert abs(valid["bf16"] - valid["fp32"]) < 0.05
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
