"""rnnkit.nn against torch.nn on PyTorch's own test inputs (``common_modules.module_db``).

For each of torch's six recurrent ModuleInfo entries (RNN, GRU, LSTM, RNNCell, GRUCell, LSTMCell) the
test takes torch's inputs (``module_inputs_func``, with packed sequences for RNN and GRU) and builds
torch's module and rnnkit.nn's from the same seed: they must start with the same weights. rnnkit's
loads torch's state_dict anyway, both run on copies of the same inputs, and the outputs, final states
and gradients (w.r.t. every input tensor and every parameter, by name) must agree, for every ``impl``
of the layers, in float64 and float32, in training and eval mode. Every one of torch's error inputs
(``module_error_inputs_func``) must be refused with torch's exception type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

import rnnkit.nn
from rnnkit.kernels.dispatch import IMPLS

# module_db lives in torch's internal testing package, which needs expecttest (a dev dependency)
common_modules = pytest.importorskip("torch.testing._internal.common_modules", exc_type=ImportError)

NAMES = ("RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell")
INFOS = {
    info.module_cls.__name__: info for info in common_modules.module_db if info.module_cls.__name__ in NAMES
}
LAYER_IMPLS = tuple(i for i in IMPLS if i != "traced")  # traced is for torch.export only
DTYPES = (torch.float64, torch.float32)


def impls_of(name: str) -> tuple[str | None, ...]:
    return LAYER_IMPLS if not name.endswith("Cell") else (None,)  # a cell is one step: no impl


def cases(name: str, dtype: torch.dtype, training: bool) -> list[Any]:
    info = INFOS[name]
    return info.module_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=True, training=training, with_packed_sequence=True
    )


def build(lib: Any, name: str, impl: str | None, args: tuple, kwargs: dict, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    extra = {} if impl is None else {"impl": impl}
    return getattr(lib, name)(*args, **kwargs, **extra).to(dtype)


# -- structure helpers: inputs and outputs are tensors, PackedSequences or tuples of them -------------


def copy_leaves(value: Any) -> Any:
    """A fresh leaf copy of every tensor (keeping requires_grad), so each module gets its own grads."""
    if isinstance(value, PackedSequence):
        return value._replace(data=copy_leaves(value.data))
    if isinstance(value, Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, (tuple, list)):
        return type(value)(copy_leaves(v) for v in value)
    return value


def tensors(value: Any) -> Iterator[Tensor]:
    """The float tensors in ``value``, in order (a PackedSequence's data and its index tensors)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (tuple, list)):  # PackedSequence is a tuple too
        for v in value:
            yield from tensors(v)


def assert_same_structure(ours: Any, theirs: Any) -> None:
    assert isinstance(ours, PackedSequence) == isinstance(theirs, PackedSequence)
    if isinstance(theirs, Tensor):
        assert isinstance(ours, Tensor)
    elif isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            if a is not None or b is not None:
                assert_same_structure(a, b)


# -- the comparisons --------------------------------------------------------------------------------


def compare(name: str, impl: str | None, dtype: torch.dtype, training: bool, case: Any) -> None:
    """One of torch's ModuleInputs: same initial weights, outputs, states and gradients."""
    args, kwargs = case.constructor_input.args, case.constructor_input.kwargs
    theirs = build(nn, name, None, args, kwargs, dtype).train(training)
    ours = build(rnnkit.nn, name, impl, args, kwargs, dtype).train(training)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():  # the same seed gives the same weights
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0)
    ours.load_state_dict(theirs.state_dict())

    f_args, f_kwargs = case.forward_input.args, case.forward_input.kwargs
    their_in, our_in = copy_leaves(f_args), copy_leaves(f_args)
    out_theirs, out_ours = theirs(*their_in, **f_kwargs), ours(*our_in, **f_kwargs)
    assert_same_structure(out_ours, out_theirs)
    for a, b in zip(tensors(out_ours), tensors(out_theirs), strict=True):
        torch.testing.assert_close(a, b)

    # gradients of the same random projection of every float output
    outs = [
        (a, b) for a, b in zip(tensors(out_ours), tensors(out_theirs), strict=True) if b.is_floating_point()
    ]
    weights = [torch.randn_like(b) for _, b in outs]
    sum((a * w).sum() for (a, _), w in zip(outs, weights, strict=True)).backward()
    sum((b * w).sum() for (_, b), w in zip(outs, weights, strict=True)).backward()
    for a, b in zip(tensors(our_in), tensors(their_in), strict=True):
        if b.requires_grad:
            torch.testing.assert_close(a.grad, b.grad)
    grads = {n: p.grad for n, p in theirs.named_parameters()}
    assert [n for n, _ in ours.named_parameters()] == list(grads)
    for n, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=lambda m, n=n: f"grad of {n}: {m}")


def refuse(name: str, impl: str | None, error: Any) -> None:
    """One of torch's ErrorModuleInputs: refused with torch's exception type and torch's message, but
    that the layers' dtype message names the module ("LSTM input dtype", torch: "RNN input dtype")."""
    case, kind = error.module_error_input, common_modules.ModuleErrorEnum
    args, kwargs = case.constructor_input.args, case.constructor_input.kwargs
    extra = {} if impl is None else {"impl": impl}
    with pytest.raises(error.error_type, match=error.error_regex.replace("RNN input", f"{name} input")):
        module = getattr(rnnkit.nn, name)(*args, **kwargs, **extra)
        assert error.error_on == kind.FORWARD_ERROR, f"constructing {name}{args} {kwargs} did not fail"
        module(*case.forward_input.args, **case.forward_input.kwargs)  # as torch's test: no .to(dtype)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("name", "impl"), [(n, i) for n in NAMES for i in impls_of(n)], ids=lambda v: str(v) if v else "-"
)
def test_module_inputs_match_torch(name: str, impl: str | None, dtype: torch.dtype, training: bool) -> None:
    torch.manual_seed(1)
    inputs = cases(name, dtype, training)
    assert inputs, f"module_db has no inputs for {name}"
    for k, case in enumerate(inputs):
        try:
            compare(name, impl, dtype, training, case)
        except AssertionError as e:
            raise AssertionError(
                f"{name} impl={impl} case {k}: {case.constructor_input.kwargs or case.constructor_input.args}"
                f" on {[tuple(t.shape) for t in tensors(case.forward_input.args)]}: {e}"
            ) from e


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("name", "impl"), [(n, i) for n in NAMES for i in impls_of(n)], ids=lambda v: str(v) if v else "-"
)
def test_error_inputs_refused(name: str, impl: str | None, dtype: torch.dtype) -> None:
    info = INFOS[name]
    errors = info.module_error_inputs_func(
        info, device="cpu", dtype=dtype, requires_grad=False, training=True
    )
    assert errors, f"module_db has no error inputs for {name}"
    for error in errors:
        refuse(name, impl, error)
