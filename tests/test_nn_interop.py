"""rnnkit.nn as torch's own tooling sees it: packed sequences from torch.nn.utils.rnn, TorchScript and
torch.compile, copy.deepcopy, pickling, repr, flatten_parameters, dtype conversions. Each is checked
against what torch.nn's module of the same name does (tests/test_nn_module_db.py has torch's inputs)."""

from __future__ import annotations

import copy
import io
import pickle
import re
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import rnnkit
import rnnkit.nn as rnn

LAYERS = ("RNN", "GRU", "LSTM")
CELLS = ("RNNCell", "GRUCell", "LSTMCell")
IMPLS = ("auto", "native", "fused", "reference")
# constructor arguments of a small but complete model of each kind (input 3)
ARGS: dict[str, tuple[tuple, dict]] = {
    "RNN": ((3, 5), {"num_layers": 2, "nonlinearity": "relu", "bidirectional": True}),
    "GRU": ((3, 5), {"num_layers": 2, "bias": False, "batch_first": True}),
    "LSTM": ((3, 5), {"num_layers": 2, "proj_size": 2, "bidirectional": True}),
    "RNNCell": ((3, 5), {"nonlinearity": "relu"}),
    "GRUCell": ((3, 5), {}),
    "LSTMCell": ((3, 5), {"bias": False}),
}


def pair(name: str, dtype: torch.dtype = torch.float64, impl: str = "auto") -> tuple[nn.Module, nn.Module]:
    """torch.nn's module and rnnkit.nn's, from the same seed (hence the same weights)."""
    args, kwargs = ARGS[name]
    torch.manual_seed(0)
    theirs = getattr(nn, name)(*args, **kwargs, dtype=dtype)
    torch.manual_seed(0)
    extra = {} if name in CELLS else {"impl": impl}
    ours = getattr(rnn, name)(*args, **kwargs, **extra, dtype=dtype)
    return theirs, ours


def example(name: str, dtype: torch.dtype = torch.float64) -> tuple[Any, ...]:
    """An input (and a state) for the modules of ``pair(name)``."""
    g = torch.Generator().manual_seed(1)
    if name in CELLS:
        h = torch.randn(4, 5, generator=g, dtype=dtype)
        return (torch.randn(4, 3, generator=g, dtype=dtype), (h, h.flip(0)) if name == "LSTMCell" else h)
    return (torch.randn(4, 6, 3, generator=g, dtype=dtype),)  # (L, N, H_in) or batch_first (N, L, H_in)


def flat(value: Any) -> list[Tensor]:
    if isinstance(value, PackedSequence):
        return [value.data]
    if isinstance(value, Tensor):
        return [value]
    return [t for v in value for t in flat(v)]


def assert_same(a: Any, b: Any, **tol: float) -> None:
    assert type(a) is type(b) or (isinstance(a, tuple) and isinstance(b, tuple))
    for x, y in zip(flat(a), flat(b), strict=True):
        assert x.dtype == y.dtype
        torch.testing.assert_close(x, y, **tol)


# -- torch.nn.utils.rnn --------------------------------------------------------------------------


def packed(form: str, dtype: torch.dtype) -> PackedSequence:
    g = torch.Generator().manual_seed(2)
    lengths = [6, 4, 4, 1] if form == "padded_sorted" else [4, 6, 1, 4]
    seqs = [torch.randn(n, 3, generator=g, dtype=dtype) for n in lengths]
    if form == "pack_sequence":
        return pack_sequence(seqs, enforce_sorted=False)
    padded = nn.utils.rnn.pad_sequence(seqs)
    return pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=form == "padded_sorted")


@pytest.mark.parametrize("form", ["padded_sorted", "padded_unsorted", "pack_sequence"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", LAYERS)
def test_packed_sequences_as_torch(name: str, impl: str, form: str) -> None:
    theirs, ours = pair(name, impl=impl)
    x = packed(form, torch.float64)
    x_t, x_o = (x._replace(data=x.data.clone().requires_grad_()) for _ in range(2))
    y_t, y_o = theirs(x_t), ours(x_o)
    assert isinstance(y_o[0], PackedSequence)
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert (
            torch.equal(getattr(y_o[0], field), getattr(y_t[0], field))
            if getattr(y_t[0], field) is not None
            else True
        )
    assert_same(y_o, y_t)
    w = [torch.randn_like(t) for t in flat(y_t)]
    sum((t * v).sum() for t, v in zip(flat(y_t), w, strict=True)).backward()
    sum((t * v).sum() for t, v in zip(flat(y_o), w, strict=True)).backward()
    torch.testing.assert_close(x_o.data.grad, x_t.data.grad)
    for (n, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


# -- TorchScript and torch.compile -----------------------------------------------------------------


class Holder(nn.Module):
    """A user's model that holds a drop-in."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner, self.head = module, nn.LazyLinear(2)

    def forward(self, x: Tensor, hx: Any = None) -> Tensor:
        y = self.inner(x) if hx is None else self.inner(x, hx)
        return self.head(y[0] if isinstance(y, tuple) else y)


class FirstOutput(nn.Module):
    """Holds a torch.nn layer for TorchScript (which compiles a layer's overloaded forward only when
    a scripted caller uses it)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)[0]


@pytest.mark.filterwarnings("ignore:`torch.jit.script")  # deprecated in torch 2.13, still used
@pytest.mark.parametrize("name", LAYERS + CELLS)
def test_torchscript_refused_with_what_to_use(name: str) -> None:
    """torch.jit.script cannot compile rnnkit.nn; the error names torch.compile and the torch.nn
    module to script instead, and that module, given our state_dict, computes what ours does."""
    _, ours = pair(name)
    with pytest.raises(RuntimeError, match=r"torch\.compile") as caught:
        torch.jit.script(Holder(ours))
    suggested = re.search(rf"torch\.nn\.{name}\(.*?\)(?= in its place)", str(caught.value))
    assert suggested, str(caught.value)
    replacement = eval(suggested.group(0), {"torch": torch}).double()  # noqa: S307 - our own message
    replacement.load_state_dict(ours.state_dict())
    x = example(name)
    if name in LAYERS:
        torch.testing.assert_close(torch.jit.script(FirstOutput(replacement))(*x), ours(*x)[0])
    else:
        assert_same(torch.jit.script(replacement)(*x), ours(*x))


class Both(nn.Module):
    """A user's model with a drop-in layer and a drop-in cell."""

    def __init__(self) -> None:
        super().__init__()
        self.layer, self.cell = rnn.LSTM(3, 5, num_layers=2), rnn.GRUCell(5, 4)

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.layer(x)  # (L, N, 5)
        h = self.cell(y[0])
        for y_t in y[1:]:
            h = self.cell(y_t, h)
        return h  # (N, 4)


def test_torch_compile_of_a_model_holding_drop_ins() -> None:
    torch.manual_seed(0)
    model = Both().double()
    x = example("LSTM")[0]
    eager = model(x)
    torch._dynamo.reset()
    compiled = torch.compile(model)
    y = compiled(x)
    torch.testing.assert_close(y, eager)
    params = list(model.parameters())
    for g, g_eager in zip(
        torch.autograd.grad(y.square().sum(), params),
        torch.autograd.grad(eager.square().sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(g, g_eager)


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", LAYERS)
def test_torch_compile_every_impl(name: str, impl: str) -> None:
    theirs, ours = pair(name, impl=impl)
    torch._dynamo.reset()
    x = example(name)[0].requires_grad_()
    assert_same(torch.compile(ours)(x), theirs(x))


# -- copies, pickles, repr, flatten_parameters, dtypes -----------------------------------------------


@pytest.mark.parametrize("name", LAYERS + CELLS)
def test_deepcopy_is_independent_and_equal(name: str) -> None:
    _, ours = pair(name)
    twin = copy.deepcopy(ours)
    assert_same(twin(*example(name)), ours(*example(name)))
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(next(twin.parameters()), next(ours.parameters()))  # nothing shared
    assert all(
        p.data_ptr() != q.data_ptr() for p, q in zip(twin.parameters(), ours.parameters(), strict=True)
    )


@pytest.mark.parametrize("name", LAYERS + CELLS)
def test_pickle_and_torch_save_round_trip(name: str) -> None:
    theirs, ours = pair(name)
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    for copy_ in (pickle.loads(pickle.dumps(ours)), torch.load(buffer, weights_only=False)):
        assert type(copy_) is type(ours) and list(copy_.state_dict()) == list(theirs.state_dict())
        assert_same(copy_(*example(name)), theirs(*example(name)))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("RNN", {}),
        (
            "RNN",
            {"num_layers": 2, "nonlinearity": "relu", "bias": False, "batch_first": True, "dropout": 0.5},
        ),
        ("GRU", {"bidirectional": True}),
        ("LSTM", {"proj_size": 2, "num_layers": 3}),
        ("RNNCell", {"nonlinearity": "relu", "bias": False}),
        ("RNNCell", {}),
        ("GRUCell", {"bias": False}),
        ("LSTMCell", {}),
    ],
)
def test_repr_is_torchs(name: str, kwargs: dict) -> None:
    assert repr(getattr(rnn, name)(3, 5, **kwargs)) == repr(getattr(nn, name)(3, 5, **kwargs))


@pytest.mark.parametrize("name", LAYERS + CELLS)
def test_flatten_parameters_as_torch(name: str) -> None:
    theirs, ours = pair(name)
    assert hasattr(ours, "flatten_parameters") == hasattr(theirs, "flatten_parameters")
    if name in LAYERS:
        before = ours(*example(name))
        assert ours.flatten_parameters() is None
        assert_same(ours(*example(name)), before)


@pytest.mark.parametrize("convert", ["to_float64", "double", "half", "bfloat16"])
@pytest.mark.parametrize("name", LAYERS + CELLS)
def test_dtype_conversions_as_torch(name: str, convert: str) -> None:
    """After the same conversion both modules hold the same parameters and compute the same numbers
    in that dtype (torch's CPU modules run float16 and bfloat16 too)."""
    theirs, ours = pair(name, dtype=torch.float32)
    for module in (theirs, ours):
        if convert == "to_float64":
            module.to(torch.float64)
        else:
            getattr(module, convert)()
    dtype = next(theirs.parameters()).dtype
    assert all(p.dtype == dtype for p in ours.parameters())
    x = tuple(
        tuple(t.to(dtype) for t in v) if isinstance(v, tuple) else v.to(dtype)
        for v in example(name, torch.float32)
    )
    low = {"rtol": 0.0, "atol": 2e-2} if dtype in (torch.float16, torch.bfloat16) else {}
    assert_same(ours(*x), theirs(*x), **low)


def test_old_names_warn_and_point_to_rnnkit() -> None:
    for name in ("ElmanCell", "JordanCell", "Recurrent"):
        assert name not in rnn.__all__ and name not in dir(rnn)
        with pytest.warns(DeprecationWarning, match=rf"Use rnnkit\.{name}\."):
            assert getattr(rnn, name) is getattr(rnnkit, name)
    assert sorted(rnn.__all__) == sorted(dir(rnn)) == sorted(LAYERS + CELLS)
    for name in rnn.__all__:
        assert getattr(rnn, name).__name__ == getattr(nn, name).__name__
    with pytest.raises(AttributeError):
        rnn.MinGRUCell  # noqa: B018 - rnnkit's own cells are not here


@pytest.mark.parametrize("name", CELLS)
def test_cells_return_what_torch_returns(name: str) -> None:
    """The return value's structure (h, or (h, c)), batched, unbatched and without hx."""
    theirs, ours = pair(name)
    x, hx = example(name)
    for args in ((x, hx), (x,), (x[0], tuple(h[0] for h in hx) if isinstance(hx, tuple) else hx[0]), (x[0],)):
        assert_same(ours(*args), theirs(*args))
