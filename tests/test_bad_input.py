"""Bad input: every public entry point says what it expected and what came, before computing.

Each case checks the exception type and the key words of its message, including the expected and the
received value. For the torch.nn drop-ins, where torch raises on the same input, the case also checks
that torch raises a type that rnnkit's error is an instance of. Code written against torch
(``except RuntimeError`` / ``except ValueError``) then still catches rnnkit's error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.nn as rnn
from rnnkit import ElmanCell, GRUCell, InputError, JordanCell, LSTMCell, MinGRUCell, MinLSTMCell, Recurrent

T, B, F, H = 5, 2, 4, 6  # sequence length, batch, input features, hidden units
K = 4  # num_layers * num_directions of every layer built below (2 layers, bidirectional)

CELLS = {
    "elman": lambda n: ElmanCell(n, H),
    "jordan": lambda n: JordanCell(n, H, 3),
    "lstm": lambda n: LSTMCell(n, H),
    "gru": lambda n: GRUCell(n, H),
    "mingru": lambda n: MinGRUCell(n, H),
    "minlstm": lambda n: MinLSTMCell(n, H),
}
NAMES = ["RNN", "LSTM", "GRU"]

# A regex for the state's label in shape messages: "hidden" (one tensor) or "hidden[0]" (LSTM's h).
HIDDEN = r"hidden(\[0\])?"


# -- helpers -------------------------------------------------------------------------------------------


def x(*shape: int, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.Tensor:
    return torch.randn(*(shape or (T, B, F)), dtype=dtype, device=device)


def recurrent(name: str, **kw) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(CELLS[name](F), num_layers=2, bidirectional=True, **kw)


def n_state(cell) -> int:
    """Size of the cell's first state field (LSTM: h)."""
    size = cell.state_size
    return size[0] if isinstance(size, tuple) else size


def zeros_state(cell, *shape: int, extra: int = 0, dtype: torch.dtype = torch.float32):
    """Zeros in the cell's state structure, each field (*shape, n + extra)."""
    size = cell.state_size

    def make(n: int) -> torch.Tensor:
        return torch.zeros(*shape, n + extra, dtype=dtype)

    return type(size)(*(make(n) for n in size)) if isinstance(size, tuple) else make(size)


def fields(state) -> tuple[torch.Tensor, ...]:
    """A state's tensors: (h, c) for an LSTM, (h,) otherwise."""
    return tuple(state) if isinstance(state, tuple) else (state,)


def shapes(state) -> list[tuple[int, ...]]:
    return [tuple(f.shape) for f in fields(state)]


def pair(name: str, *args, **kw):
    """The rnnkit drop-in and torch.nn's layer, same arguments (default: 2 layers, bidirectional)."""
    if not args and not kw:
        args, kw = (F, H), {"num_layers": 2, "bidirectional": True}
    torch.manual_seed(0)
    ours = getattr(rnn, name)(*args, **kw)
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(*args, **kw)
    return ours, theirs


def torch_catches(err: BaseException, torch_call) -> None:
    """torch raises on the same input, and an ``except`` for torch's exception type catches ours."""
    with pytest.raises(Exception) as info:  # noqa: B017 - any type; compared below
        torch_call()
    assert isinstance(err, type(info.value)), (
        f"torch raises {type(info.value).__name__} ({info.value}); rnnkit's "
        f"{type(err).__name__} ({err}) is not an instance of it"
    )


def forward_like_torch(name: str, call, exc: type[BaseException], match: str) -> None:
    """``call(model)`` raises ``exc`` matching ``match`` on the drop-in, and torch agrees on the type."""
    ours, theirs = pair(name)
    with pytest.raises(exc, match=match) as info:
        call(ours)
    torch_catches(info.value, lambda: call(theirs))


def construct_like_torch(name: str, exc: type[BaseException], match: str, *args, **kw) -> None:
    """Building the drop-in raises ``exc`` matching ``match``, and torch agrees on the type."""
    with pytest.raises(exc, match=match) as info:
        getattr(rnn, name)(*args, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch may warn before it raises
        torch_catches(info.value, lambda: getattr(torch.nn, name)(*args, **kw))


cells = pytest.mark.parametrize("name", list(CELLS))
names = pytest.mark.parametrize("name", NAMES)


# -- Recurrent.forward: input --------------------------------------------------------------------------


@cells
def test_recurrent_wrong_feature_size(name):
    with pytest.raises(
        InputError, match=r"input\.size\(-1\) must be equal to input_size\. Expected 4, got 5"
    ):
        recurrent(name)(x(T, B, F + 1))


@cells
def test_recurrent_wrong_feature_size_batch_first_and_unbatched(name):
    with pytest.raises(InputError, match=r"Expected 4, got 3"):
        recurrent(name, batch_first=True)(x(B, T, 3))
    with pytest.raises(InputError, match=r"Expected 4, got 3"):
        recurrent(name)(x(T, 3))


@cells
@pytest.mark.parametrize("shape", [(F,), (T, B, F, 1), ()], ids=["1d", "4d", "0d"])
def test_recurrent_input_must_be_2d_or_3d(name, shape):
    with pytest.raises(
        InputError, match=rf"Recurrent: Expected input to be 2D.* or 3D.*got {len(shape)}D tensor"
    ):
        recurrent(name)(torch.randn(shape))


@cells
@pytest.mark.parametrize(
    "value, kind",
    [(np.zeros((T, B, F), dtype=np.float32), "ndarray"), ([[0.0] * F] * T, "list"), (None, "NoneType")],
    ids=["ndarray", "list", "None"],
)
def test_recurrent_non_tensor_input(name, value, kind):
    with pytest.raises(TypeError, match=rf"input must be a Tensor or PackedSequence, got {kind}"):
        recurrent(name)(value)


@cells
@pytest.mark.parametrize("shape", [(0, B, F), (0, F)], ids=["batched", "unbatched"])
def test_recurrent_sequence_length_zero(name, shape):
    with pytest.raises(InputError, match=r"Expected a sequence of length >= 1, got length 0"):
        recurrent(name)(x(*shape))


@cells
def test_recurrent_float64_input_into_float32_model_says_how_to_convert(name):
    match = (
        r"Recurrent input dtype \(torch\.float64\) does not match weight dtype \(torch\.float32\)\. "
        r"Convert input: input\.to\(torch\.float32\), or convert model: model\.to\(torch\.float64\)"
    )
    with pytest.raises(InputError, match=match):
        recurrent(name)(x(dtype=torch.float64))


@cells
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float16], ids=str)
def test_recurrent_integer_bool_half_input(name, dtype):
    bad = torch.ones(T, B, F, dtype=dtype)
    match = (
        rf"input dtype \({dtype}\) does not match weight dtype \(torch\.float32\)\. Convert input: input\.to"
    )
    with pytest.raises(InputError, match=match):
        recurrent(name)(bad)


@cells
def test_recurrent_input_on_another_device(name):
    with pytest.raises(InputError, match=r"input is on meta but the weights are on cpu"):
        recurrent(name)(x(device="meta"))


# -- Recurrent.forward: initial state ------------------------------------------------------------------


@cells
def test_recurrent_state_wrong_batch(name):
    m = recurrent(name)
    n = n_state(m.cells[0])
    with pytest.raises(
        InputError, match=rf"Expected {HIDDEN} size \({K}, {B}, {n}\), got \[{K}, {B + 1}, {n}\]"
    ):
        m(x(), zeros_state(m.cells[0], K, B + 1))


@cells
def test_recurrent_state_wrong_layers_times_directions(name):
    m = recurrent(name)
    n = n_state(m.cells[0])
    with pytest.raises(InputError, match=rf"Expected {HIDDEN} size \({K}, {B}, {n}\), got \[2, {B}, {n}\]"):
        m(x(), zeros_state(m.cells[0], 2, B))  # num_layers, forgetting the 2 directions


@cells
def test_recurrent_state_wrong_size(name):
    m = recurrent(name)
    n = n_state(m.cells[0])
    with pytest.raises(
        InputError, match=rf"Expected {HIDDEN} size \({K}, {B}, {n}\), got \[{K}, {B}, {n + 1}\]"
    ):
        m(x(), zeros_state(m.cells[0], K, B, extra=1))


@cells
def test_recurrent_unbatched_state_wrong_size(name):
    m = recurrent(name)
    n = n_state(m.cells[0])
    with pytest.raises(InputError, match=rf"Expected {HIDDEN} size \({K}, {n}\), got \[1, {n}\]"):
        m(x(T, F), zeros_state(m.cells[0], 1))


@cells
def test_recurrent_2d_state_for_batched_input(name):
    m = recurrent(name)
    match = rf"For batched 3-D input, {HIDDEN} \(\w+\) should also be 3-D but got 2-D tensor"
    with pytest.raises(InputError, match=match):
        m(x(), zeros_state(m.cells[0], K))


@cells
def test_recurrent_3d_state_for_unbatched_input(name):
    m = recurrent(name)
    match = rf"For unbatched 2-D input, {HIDDEN} \(\w+\) should also be 2-D but got 3-D tensor"
    with pytest.raises(InputError, match=match):
        m(x(T, F), zeros_state(m.cells[0], K, B))


@cells
@pytest.mark.parametrize("dtype", [torch.float64, torch.int64], ids=str)
def test_recurrent_state_wrong_dtype(name, dtype):
    m = recurrent(name)
    match = rf"state \w+ must have the input's dtype and device \(torch\.float32, cpu\), got \({dtype}, cpu\)"
    with pytest.raises(InputError, match=match):
        m(x(), zeros_state(m.cells[0], K, B, dtype=dtype))


def test_recurrent_lstm_c_wrong_dtype_is_named():
    m = recurrent("lstm")
    h, c = zeros_state(m.cells[0], K, B)
    with pytest.raises(InputError, match=r"state c must have the input's dtype.*got \(torch\.float64, cpu\)"):
        m(x(), (h, c.double()))


def test_recurrent_lstm_c_wrong_shape_is_named():
    m = recurrent("lstm")
    h, c = zeros_state(m.cells[0], K, B)
    with pytest.raises(
        InputError, match=rf"Expected hidden\[1\] size \({K}, {B}, {H}\), got \[{K}, 1, {H}\]"
    ):
        m(x(), (h, c[:, :1]))


def test_recurrent_lstm_bare_tensor_state():
    with pytest.raises(
        InputError, match=r"Recurrent expects the state as a tuple \(h, c\) of tensors, got Tensor"
    ):
        recurrent("lstm")(x(), torch.zeros(K, B, H))


@pytest.mark.parametrize("count", [1, 3])
def test_recurrent_lstm_state_tuple_of_wrong_length(count):
    state = (torch.zeros(K, B, H),) * count
    with pytest.raises(
        InputError, match=rf"expects the state as a tuple \(h, c\) of tensors, got a tuple of {count}"
    ):
        recurrent("lstm")(x(), state)


def test_recurrent_lstm_state_field_not_a_tensor():
    with pytest.raises(InputError, match=r"state h must be a tensor, got NoneType"):
        recurrent("lstm")(x(), (None, torch.zeros(K, B, H)))


@pytest.mark.parametrize("name", ["elman", "jordan", "gru"])
def test_recurrent_tuple_state_for_single_tensor_cell(name):
    m = recurrent(name)
    s = zeros_state(m.cells[0], K, B)
    with pytest.raises(InputError, match=r"Recurrent expects the state as one tensor, got tuple"):
        m(x(), (s, s))


# -- Recurrent.forward: lengths ------------------------------------------------------------------------


@cells
@pytest.mark.parametrize(
    "lengths, match",
    [
        ([T, 0], r"every length must be >= 1, got 0"),
        ([T, -1], r"every length must be >= 1, got -1"),
        ([T + 1, 2], rf"lengths must be <= the sequence length {T}, got {T + 1}"),
        ([T, 2, 1], rf"lengths must hold one length per sequence: expected {B}, got 3"),
        ([T], rf"lengths must hold one length per sequence: expected {B}, got 1"),
        (torch.tensor([5.0, 2.0]), r"lengths must be a 1-D integer tensor of shape \(2,\), got torch\.float32"),  # noqa: E501
        ([5.0, 2.0], r"1-D integer tensor of shape \(2,\), got torch\.float32"),
        (np.array([5.0, 2.0]), r"1-D integer tensor of shape \(2,\), got torch\.float64"),
        (torch.tensor([[5, 2]]), r"1-D integer tensor of shape \(2,\), got torch\.int64 of shape \(1, 2\)"),
        (torch.tensor(5), r"1-D integer tensor of shape \(2,\), got torch\.int64 of shape \(\)"),
        ("ab", r"lengths must be a 1-D tensor of 2 integers"),
        ([[5], [2, 3]], r"lengths must be a 1-D tensor of 2 integers"),
    ],
    ids=["zero", "negative", "too-long", "too-many", "too-few", "float-tensor", "float-list",
         "float-ndarray", "2d", "scalar", "str", "ragged"],
)  # fmt: skip
def test_recurrent_bad_lengths(name, lengths, match):
    with pytest.raises(InputError, match=match):
        recurrent(name)(x(), lengths=lengths)


@cells
def test_recurrent_bool_lengths(name):
    with pytest.raises(InputError, match=r"1-D integer tensor of shape \(2,\), got torch\.bool"):
        recurrent(name)(x(), lengths=torch.tensor([True, True]))


def test_recurrent_lengths_with_none():
    with pytest.raises(InputError, match=r"lengths must be a 1-D tensor of 2 integers"):
        recurrent("elman")(x(), lengths=[T, None])


@cells
def test_recurrent_lengths_with_packed_sequence(name):
    packed = pack_padded_sequence(x(), [T, 3])
    with pytest.raises(InputError, match=r"pass lengths or a PackedSequence, not both"):
        recurrent(name)(packed, lengths=[T, 3])


@cells
def test_recurrent_packed_sequence_is_checked_too(name):
    packed = pack_padded_sequence(x(T, B, F + 1), [T, 3])
    with pytest.raises(InputError, match=r"Expected 4, got 5"):
        recurrent(name)(packed)
    m = recurrent(name)
    with pytest.raises(InputError, match=rf"got \[{K}, 3, {n_state(m.cells[0])}\]"):
        m(pack_padded_sequence(x(), [T, 3]), zeros_state(m.cells[0], K, 3))


# -- checks come before any computation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m(x(T, B, F + 1)),
        lambda m: m(x(), torch.zeros(K, B + 1, H)),
        lambda m: m(x(), lengths=[T, T + 1]),
        lambda m: m(x(dtype=torch.float64)),
    ],
    ids=["features", "state", "lengths", "dtype"],
)
def test_recurrent_checks_before_any_step(call):
    m = recurrent("elman")
    steps = []
    for cell in m.cells:
        cell.step = lambda *a, _s=cell.step: steps.append(1) or _s(*a)
    with pytest.raises(InputError):
        call(m)
    assert steps == [], "a cell step ran before the bad input was reported"


# -- Recurrent constructor -----------------------------------------------------------------------------


def test_recurrent_factory_needs_input_size():
    with pytest.raises(
        ValueError, match=r"Recurrent\(factory, \.\.\.\) needs input_size= for the first layer"
    ):
        Recurrent(lambda n: ElmanCell(n, H))


@cells
def test_recurrent_cell_and_input_size_disagree(name):
    with pytest.raises(ValueError, match=r"input_size=5 does not match the cell's input_size=4"):
        Recurrent(CELLS[name](F), input_size=5)


def test_recurrent_factory_must_return_a_cell():
    with pytest.raises(TypeError, match=r"the factory must return a Cell, got Linear"):
        Recurrent(lambda n: torch.nn.Linear(n, H), input_size=F)


@pytest.mark.parametrize("cell, kind", [("lstm", "str"), (4, "int")])
def test_recurrent_cell_not_a_cell(cell, kind):
    with pytest.raises(TypeError, match=rf"cell must be a Cell or a factory, got {kind}"):
        Recurrent(cell, input_size=F)


@pytest.mark.parametrize("input_size", [None, F])
def test_recurrent_torch_cell_is_not_a_factory(input_size):
    with pytest.raises(TypeError, match=r"cell must be a Cell or a factory, got RNNCell"):
        Recurrent(torch.nn.RNNCell(F, H), input_size=input_size)


def test_recurrent_factory_returns_wrong_input_size():
    with pytest.raises(ValueError, match=r"input_size.*(4.*3|3.*4)"):
        Recurrent(lambda n: ElmanCell(3, H), input_size=F)


@pytest.mark.parametrize("merge", ["max", None, "CONCAT"])
def test_recurrent_merge_not_in_the_list(merge):
    with pytest.raises(
        ValueError, match=rf"merge must be one of \['concat', 'mean', 'mul', 'sum'\], got {merge!r}"
    ):
        Recurrent(ElmanCell(F, H), bidirectional=True, merge=merge)


@pytest.mark.parametrize("num_layers", [0, -1])
def test_recurrent_num_layers_not_positive(num_layers):
    with pytest.raises(ValueError, match=rf"num_layers must be greater than zero, got {num_layers}"):
        Recurrent(ElmanCell(F, H), num_layers=num_layers)


def test_recurrent_num_layers_float():
    with pytest.raises(TypeError, match=r"num_layers should be of type int, got: float"):
        Recurrent(ElmanCell(F, H), num_layers=2.0)


@pytest.mark.parametrize(
    "dropout", [-0.1, 1.5, True, float("nan"), "0.5"], ids=["negative", "above-1", "bool", "nan", "str"]
)
def test_recurrent_dropout_out_of_range(dropout):
    match = rf"dropout should be a number in range \[0, 1\] .*got {dropout!r}"
    with pytest.raises(ValueError, match=match):
        Recurrent(ElmanCell(F, H), num_layers=2, dropout=dropout)


@pytest.mark.parametrize("flag", ["bidirectional", "batch_first"])
def test_recurrent_flags_must_be_bool(flag):
    with pytest.raises(TypeError, match=rf"{flag} should be of type bool, got: int"):
        Recurrent(ElmanCell(F, H), **{flag: 1})


# -- cell constructors ---------------------------------------------------------------------------------


SIZED = {  # name -> (input_size, hidden_size) -> cell
    "elman": lambda i, h: ElmanCell(i, h),
    "jordan": lambda i, h: JordanCell(i, h, 3),
    "lstm": lambda i, h: LSTMCell(i, h),
    "gru": lambda i, h: GRUCell(i, h),
    "mingru": lambda i, h: MinGRUCell(i, h),
    "minlstm": lambda i, h: MinLSTMCell(i, h),
}


@cells
@pytest.mark.parametrize("which", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_cell_sizes_must_be_positive(name, which, value):
    sizes = {"input_size": F, "hidden_size": H, which: value}
    with pytest.raises(ValueError, match=rf"{which} must be greater than zero, got {value}"):
        SIZED[name](sizes["input_size"], sizes["hidden_size"])


@cells
@pytest.mark.parametrize(
    "value, kind", [(4.0, "float"), ("4", "str"), (True, "bool")], ids=["float", "str", "bool"]
)
def test_cell_sizes_must_be_int(name, value, kind):
    with pytest.raises(TypeError, match=rf"input_size should be of type int, got: {kind}"):
        CELLS[name](value)


def test_jordan_output_size_zero():
    with pytest.raises(ValueError, match=r"output_size must be greater than zero, got 0"):
        JordanCell(F, H, 0)


def test_elman_readout_size_zero():
    with pytest.raises(ValueError, match=r"readout_size must be greater than zero, got 0"):
        ElmanCell(F, H, readout_size=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ElmanCell(F, H, nonlinearity="gelu"),
        lambda: ElmanCell(F, H, readout_size=2, readout_activation="gelu"),
        lambda: JordanCell(F, H, 3, nonlinearity="gelu"),
        lambda: JordanCell(F, H, 3, output_activation="gelu"),
    ],
    ids=["elman", "elman-readout", "jordan", "jordan-output"],
)
def test_cell_bad_nonlinearity(make):
    match = (
        r"Unknown nonlinearity 'gelu'\. Select from \['identity', 'relu', 'sigmoid', 'tanh'\] "
        r"or pass a callable"
    )
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("proj_size", [H, H + 1])
def test_lstm_cell_proj_size_not_smaller_than_hidden(proj_size):
    match = rf"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and hidden_size={H}"
    with pytest.raises(ValueError, match=match):
        LSTMCell(F, H, proj_size=proj_size)


def test_lstm_cell_proj_size_negative():
    with pytest.raises(ValueError, match=r"proj_size must be >= 0, got -1"):
        LSTMCell(F, H, proj_size=-1)


def test_lstm_cell_proj_size_float():
    with pytest.raises(TypeError, match=r"proj_size should be of type int, got: float"):
        LSTMCell(F, H, proj_size=2.0)


def test_lstm_cell_forget_bias_without_bias():
    with pytest.raises(ValueError, match=r"forget_bias needs bias=True"):
        LSTMCell(F, H, bias=False, forget_bias=1.0)


def test_lstm_cell_forget_bias_not_a_number():
    with pytest.raises(TypeError, match=r"forget_bias.*str"):
        LSTMCell(F, H, forget_bias="1")


# -- Cell.forward (a public entry point too) -----------------------------------------------------------


@cells
def test_cell_forward_wrong_feature_size(name):
    with pytest.raises(InputError, match=r"Expected 4, got 3|got 3 expected 4"):
        CELLS[name](F)(torch.randn(B, 3))


@cells
def test_cell_forward_1d_input_is_not_broadcast(name):
    cell = CELLS[name](F)
    try:
        y, _ = cell(torch.randn(F))
    except InputError as e:  # rejecting unbatched input with a clear message is fine too
        assert "1D" in str(e) or "1-D" in str(e)
    else:
        assert tuple(y.shape) == (cell.output_size,)


@pytest.mark.parametrize("name", ["elman", "gru"])
def test_cell_forward_state_batch_mismatch(name):
    with pytest.raises(InputError, match=r"batch size 2\b.*batch size 1\b"):
        CELLS[name](F)(torch.randn(2, F), torch.zeros(1, H))


def test_lstm_cell_forward_bare_tensor_state():
    with pytest.raises((InputError, TypeError), match=r"\(h, c\).*got Tensor"):
        LSTMCell(F, H)(torch.randn(2, F), torch.zeros(2, H))


# -- drop-ins: forward, compared with torch.nn ---------------------------------------------------------


@names
def test_dropin_wrong_feature_size(name):
    forward_like_torch(
        name,
        lambda m: m(x(T, B, F + 1)),
        InputError,
        r"input\.size\(-1\) must be equal to input_size\. Expected 4, got 5",
    )


@names
@pytest.mark.parametrize("shape", [(F,), (T, B, F, 1)], ids=["1d", "4d"])
def test_dropin_input_must_be_2d_or_3d(name, shape):
    match = rf"{name}: Expected input to be 2D.* or 3D.*got {len(shape)}D tensor"
    forward_like_torch(name, lambda m: m(torch.randn(*shape)), InputError, match)


@names
@pytest.mark.parametrize(
    "value", [np.zeros((T, B, F), dtype=np.float32), [[0.0] * F] * T], ids=["ndarray", "list"]
)
def test_dropin_non_tensor_input(name, value):
    # torch fails with AttributeError ('numpy.ndarray' object has no attribute 'dim'): an accident, so
    # rnnkit's TypeError is not compared with it.
    with pytest.raises(TypeError, match=r"input must be a Tensor or PackedSequence, got (ndarray|list)"):
        pair(name)[0](value)


@names
@pytest.mark.parametrize("shape", [(0, B, F), (0, F)], ids=["batched", "unbatched"])
def test_dropin_sequence_length_zero(name, shape):
    forward_like_torch(name, lambda m: m(x(*shape)), InputError, r"sequence of length >= 1, got length 0")


@names
def test_dropin_float64_into_float32_says_how_to_convert(name):
    match = (
        rf"{name} input dtype \(torch\.float64\) does not match weight dtype \(torch\.float32\)\. "
        r"Convert input: input\.to\(torch\.float32\), or convert model: model\.to\(torch\.float64\)"
    )
    forward_like_torch(name, lambda m: m(x(dtype=torch.float64)), InputError, match)


@names
def test_dropin_integer_input(name):
    match = (
        rf"{name} input dtype \(torch\.int64\) does not match weight dtype \(torch\.float32\)\. Convert input"
    )
    forward_like_torch(name, lambda m: m(torch.ones(T, B, F, dtype=torch.int64)), InputError, match)


@names
def test_dropin_input_on_another_device(name):
    forward_like_torch(
        name, lambda m: m(x(device="meta")), InputError, r"input is on meta but the weights are on cpu"
    )


def _state(name: str, *shape: int, dtype: torch.dtype = torch.float32):
    s = torch.zeros(*shape, dtype=dtype)
    return (s, s.clone()) if name == "LSTM" else s


@names
@pytest.mark.parametrize(
    "shape, got",
    [((K, B + 1, H), [K, B + 1, H]), ((2, B, H), [2, B, H]), ((K, B, H + 1), [K, B, H + 1])],
    ids=["batch", "layers-x-directions", "hidden"],
)
def test_dropin_state_wrong_shape(name, shape, got):
    match = rf"Expected {HIDDEN} size \({K}, {B}, {H}\), got \[{', '.join(map(str, got))}\]"
    forward_like_torch(name, lambda m: m(x(), _state(name, *shape)), InputError, match)


@names
def test_dropin_2d_state_for_batched_input(name):
    match = r"For batched 3-D input, .*should also be 3-D but got .*2-D"
    forward_like_torch(name, lambda m: m(x(), _state(name, K, H)), InputError, match)


@names
def test_dropin_3d_state_for_unbatched_input(name):
    match = r"For unbatched 2-D input, .*should also be 2-D but got .*3-D"
    forward_like_torch(name, lambda m: m(x(T, F), _state(name, K, B, H)), InputError, match)


@names
def test_dropin_state_wrong_dtype(name):
    # torch fails deep inside (mat1/mat2 dtype, get_mkldnn_dtype) but with a RuntimeError, which
    # InputError is.
    match = r"must have the input's dtype and device \(torch\.float32, cpu\), got \(torch\.float64, cpu\)"
    forward_like_torch(name, lambda m: m(x(), _state(name, K, B, H, dtype=torch.float64)), InputError, match)


def test_dropin_lstm_bare_tensor_state():
    match = r"LSTM expects the state as a tuple \(h, c\) of tensors, got Tensor"
    forward_like_torch("LSTM", lambda m: m(x(), torch.zeros(K, B, H)), InputError, match)


def test_dropin_lstm_tuple_of_three():
    s = torch.zeros(K, B, H)
    match = r"LSTM expects the state as a tuple \(h, c\) of tensors, got a tuple of 3"
    forward_like_torch("LSTM", lambda m: m(x(), (s, s, s)), InputError, match)


def test_dropin_lstm_proj_state_sizes():
    ours, theirs = pair("LSTM", F, H, proj_size=2)
    h, c = torch.zeros(1, B, H), torch.zeros(1, B, H)  # h must be proj_size wide
    with pytest.raises(
        InputError, match=rf"Expected hidden\[0\] size \(1, {B}, 2\), got \[1, {B}, {H}\]"
    ) as info:
        ours(x(), (h, c))
    torch_catches(info.value, lambda: theirs(x(), (h, c)))


@pytest.mark.parametrize("name", ["RNN", "GRU"])
def test_dropin_tuple_given_to_single_state_layer(name):
    # torch fails with AttributeError ('tuple' object has no attribute 'dim'): an accident, not compared.
    s = torch.zeros(K, B, H)
    with pytest.raises(InputError, match=rf"{name} expects the state as one tensor, got tuple"):
        pair(name)[0](x(), (s, s))


@names
@pytest.mark.parametrize(
    "lengths, match",
    [
        ([T, 0], r"every length must be >= 1, got 0"),
        ([T + 1, 2], rf"lengths must be <= the sequence length {T}, got {T + 1}"),
        ([T, 2, 1], rf"expected {B}, got 3"),
        (torch.tensor([5.0, 2.0]), r"1-D integer tensor of shape \(2,\), got torch\.float32"),
    ],
    ids=["zero", "too-long", "count", "float"],
)
def test_dropin_bad_lengths(name, lengths, match):
    with pytest.raises(InputError, match=match):
        pair(name)[0](x(), lengths=lengths)


@names
def test_dropin_lengths_with_packed_sequence(name):
    with pytest.raises(InputError, match=r"pass lengths or a PackedSequence, not both"):
        pair(name)[0](pack_padded_sequence(x(), [T, 3]), lengths=[T, 3])


# -- drop-ins: constructor, compared with torch.nn -----------------------------------------------------


@names
@pytest.mark.parametrize("dropout", [-0.1, 1.5, True, "0.5"], ids=["negative", "above-1", "bool", "str"])
def test_dropin_dropout_out_of_range(name, dropout):
    match = rf"dropout should be a number in range \[0, 1\] representing the probability of an element being zeroed.*{dropout!r}"  # noqa: E501
    construct_like_torch(name, ValueError, match, F, H, num_layers=2, dropout=dropout)


@names
@pytest.mark.parametrize(
    "which, args", [("input_size", (0, H)), ("hidden_size", (F, 0)), ("hidden_size", (F, -1))]
)
def test_dropin_sizes_must_be_positive(name, which, args):
    value = args[0] if which == "input_size" else args[1]
    construct_like_torch(name, ValueError, rf"{which} must be greater than zero, got {value}", *args)


@names
@pytest.mark.parametrize(
    "which, args, kind",
    [("input_size", (4.0, H), "float"), ("hidden_size", (F, 6.5), "float"), ("input_size", ("4", H), "str")],
)
def test_dropin_sizes_must_be_int(name, which, args, kind):
    construct_like_torch(name, TypeError, rf"{which} should be of type int, got: {kind}", *args)


@names
def test_dropin_num_layers_zero(name):
    construct_like_torch(name, ValueError, r"num_layers must be greater than zero, got 0", F, H, num_layers=0)


@names
def test_dropin_num_layers_float(name):
    construct_like_torch(
        name, TypeError, r"num_layers should be of type int, got: float", F, H, num_layers=2.0
    )


@names
def test_dropin_num_layers_numpy_int_accepted_as_torch(name):
    assert getattr(rnn, name)(F, H, num_layers=np.int64(2)).num_layers == 2


@names
def test_dropin_dropout_numpy_float_accepted_as_torch(name):
    assert getattr(rnn, name)(F, H, num_layers=2, dropout=np.float32(0.1)).dropout == pytest.approx(0.1)


@names
@pytest.mark.parametrize("flag", ["bias", "batch_first"])
def test_dropin_flags_must_be_bool(name, flag):
    construct_like_torch(name, TypeError, rf"{flag} should be of type bool, got: int", F, H, **{flag: 1})


@pytest.mark.parametrize("proj_size", [H, H + 1])
def test_dropin_lstm_proj_size_not_smaller_than_hidden(proj_size):
    match = rf"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and hidden_size={H}"
    construct_like_torch("LSTM", ValueError, match, F, H, proj_size=proj_size)


def test_dropin_lstm_proj_size_negative():
    match = r"proj_size should be a positive integer or zero to disable projections, got -1"
    construct_like_torch("LSTM", ValueError, match, F, H, proj_size=-1)


def test_dropin_lstm_proj_size_float():
    construct_like_torch(
        "LSTM", TypeError, r"proj_size should be of type int, got: float", F, H, proj_size=1.0
    )


@pytest.mark.parametrize("name", ["RNN", "GRU"])
@pytest.mark.parametrize("proj_size", [0, 2])
def test_dropin_proj_size_only_for_lstm(name, proj_size):
    match = r"proj_size argument is only supported for LSTM, not RNN or GRU"
    construct_like_torch(name, ValueError, match, F, H, proj_size=proj_size)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "Tanh"])
def test_dropin_rnn_bad_nonlinearity(nonlinearity):
    match = rf"Unknown nonlinearity '{nonlinearity}'\. Select from 'tanh' or 'relu'\."
    construct_like_torch("RNN", ValueError, match, F, H, nonlinearity=nonlinearity)


@names
def test_dropin_unknown_keyword(name):
    construct_like_torch(name, TypeError, r"unexpected keyword argument.*'?foo", F, H, foo=1)


# -- drop-ins: the dropout warning, as torch -----------------------------------------------------------

DROPOUT_WARNING = (
    r"dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
    r"num_layers greater than 1, but got dropout=0\.5 and num_layers=1"
)


@names
def test_dropin_dropout_with_one_layer_warns_as_torch(name):
    with pytest.warns(UserWarning, match=DROPOUT_WARNING):
        getattr(rnn, name)(F, H, dropout=0.5)
    with pytest.warns(UserWarning, match=DROPOUT_WARNING):
        getattr(torch.nn, name)(F, H, dropout=0.5)


@names
def test_dropin_dropout_with_two_layers_does_not_warn(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(rnn, name)(F, H, num_layers=2, dropout=0.5)
        getattr(rnn, name)(F, H, dropout=0.0)


@pytest.mark.parametrize(
    "name",
    [
        "RNN",
        "LSTM",
        "GRU",
    ],
)  # fmt: skip
def test_dropin_dropout_warning_points_at_the_caller(name):
    with pytest.warns(UserWarning) as record:
        getattr(rnn, name)(F, H, dropout=0.5)
    assert record[0].filename == __file__


# -- edge cases that must NOT raise --------------------------------------------------------------------


@cells
@pytest.mark.parametrize("batch_first", [False, True])
def test_recurrent_empty_batch(name, batch_first):
    m = recurrent(name, batch_first=batch_first)
    out, state = m(x(0, T, F) if batch_first else x(T, 0, F))
    assert tuple(out.shape) == ((0, T, m.output_size) if batch_first else (T, 0, m.output_size))
    assert shapes(state) == shapes(zeros_state(m.cells[0], K, 0))


@cells
def test_recurrent_empty_batch_with_state_and_lengths(name):
    m = recurrent(name)
    out, _ = m(x(T, 0, F), zeros_state(m.cells[0], K, 0), lengths=torch.zeros(0, dtype=torch.long))
    assert tuple(out.shape) == (T, 0, m.output_size)


def test_recurrent_empty_batch_with_empty_lengths_list():
    out, _ = recurrent("elman")(x(T, 0, F), lengths=[])
    assert tuple(out.shape) == (T, 0, 2 * H)


@names
def test_dropin_empty_batch_matches_torch(name):
    ours, theirs = pair(name)
    out, state = ours(x(T, 0, F))
    t_out, t_state = theirs(x(T, 0, F))
    assert out.shape == t_out.shape == (T, 0, 2 * H)
    assert shapes(state) == shapes(t_state) == [(K, 0, H)] * (2 if name == "LSTM" else 1)


@names
def test_dropin_empty_batch_first_with_state(name):
    ours, theirs = pair(name, F, H, batch_first=True)
    out, _ = ours(x(0, T, F), _state(name, 1, 0, H))
    t_out, _ = theirs(x(0, T, F), _state(name, 1, 0, H))
    assert out.shape == t_out.shape == (0, T, H)


@cells
@pytest.mark.parametrize("as_", [list, tuple, np.array, lambda v: torch.tensor(v, dtype=torch.int32)],
                         ids=["list", "tuple", "ndarray", "int32"])  # fmt: skip
def test_recurrent_lengths_as_python_list_and_friends(name, as_):
    m, inp = recurrent(name), x()
    want, _ = m(inp, lengths=torch.tensor([T, 3]))
    got, _ = m(inp, lengths=as_([T, 3]))
    torch.testing.assert_close(got, want)
    assert bool((got[3:, 1] == 0).all())  # padded steps are zero


@cells
def test_recurrent_lengths_all_equal_to_T(name):
    m, inp = recurrent(name), x()
    want = m(inp)
    got = m(inp, lengths=[T] * B)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(fields(got[1]), fields(want[1]))


@names
def test_dropin_lengths_list_and_all_equal_to_T(name):
    ours, _ = pair(name)
    inp = x()
    full, _ = ours(inp)
    torch.testing.assert_close(ours(inp, lengths=[T] * B)[0], full)
    padded, _ = ours(inp, lengths=[T, 3])
    packed, _ = ours(pack_padded_sequence(inp, [T, 3]))
    torch.testing.assert_close(padded, torch.nn.utils.rnn.pad_packed_sequence(packed)[0])
