"""Export recurrent layers and language models to ONNX and to ``torch.export``.

    onnx_model(model)                   an ``onnx.ModelProto`` with ONNX's own LSTM / GRU / RNN ops
    torch_program(model)                a ``torch.export.ExportedProgram``
    export(model, path, format)         either one, written atomically; returns a report (path, format,
                                        opset, inputs, outputs, size)
    export_run(run_dir, path, format)   the language model of a run directory (``rnnkit export``)

``model`` is a :class:`~rnnkit.models.LanguageModel` or a :class:`~rnnkit.layers.Recurrent` (the drop-ins
``rnnkit.nn.LSTM/GRU/RNN`` included). Every graph has flat inputs and outputs (shape legend: B batch, T
time, F features, K layers * directions, n a state field's size, V vocabulary size):

    language model   tokens (B, T) int64, h0 (K, B, n) [, c0]  ->  logits (B, T, V), hn [, cn]
    layer            input (T, B, F) ((B, T, F) batch_first), h0 [, c0]  ->  output, hn [, cn]

so one graph serves a whole prompt (T > 1) and step-by-step generation (T = 1, the state fed back).
``c0``/``cn`` exist for LSTMs only. In ONNX the state inputs are optional: each has a default of zeros
(an initializer of shape (K, 1, n), broadcast to the batch), so a fresh sequence feeds the tokens alone.

How each format traces the recurrence (chosen explicitly, never left to ``impl="auto"``, whose fast
paths -- fused kernels, the cached one-step path -- are Python that no tracer follows):

- ONNX: ``impl="native"``, torch's own op, which torch's TorchScript-based exporter maps to ONNX's
  LSTM / GRU / RNN operators. Only stacks ONNX has an operator for can go (plain LSTM without
  projection, reset-after GRU, tanh/relu Elman); any other cell is refused with its name.
- torch.export: ``impl="traced"`` (``kernels/traced.py``), the reference ``cell.step`` inside torch's scan
  operator, so T and B stay symbolic for every cell. (torch.export decomposes torch's own RNN ops into
  a loop and would fix T: pytorch/pytorch#115092.)
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...cells import Cell
from ...cells.base import state_fields
from ...errors import InputError
from ...kernels.native import native_op, stack_is_native
from ...layers.recurrent import Recurrent
from .model import LanguageModel

FORMATS = ("onnx", "torch")
# ONNX's LSTM / GRU / RNN operators last changed in opset 14 (the ``layout`` attribute); 17 is read by
# every ONNX Runtime release of the last years.
OPSET = 17


# -- what is exported: one module with flat tensor inputs and outputs ------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name, its shape (ints, or "batch" / "time" for dynamic sizes) and
    dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: torch.dtype

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": str(self.dtype).removeprefix("torch.")}


class _Graph(nn.Module):
    """``model`` behind flat inputs ``(x, *state fields)`` and outputs ``(y, *final state fields)``.

    ``broadcast_state``: each state field is expanded from (K, 1, n) to the batch, so ONNX's zero
    defaults of that shape serve any batch size (a full (K, B, n) state passes through unchanged).
    """

    def __init__(self, model: LanguageModel | Recurrent, broadcast_state: bool) -> None:
        super().__init__()
        self.model, self.broadcast_state = model, broadcast_state
        layer = model.rnn if isinstance(model, LanguageModel) else model
        size = layer.layer_cells()[0].state_size
        self.structure = type(size) if isinstance(size, tuple) else None
        self.batch_dim = 0 if isinstance(model, LanguageModel) or layer.batch_first else 1

    def forward(self, x: Tensor, *fields: Tensor) -> tuple[Tensor, ...]:
        if self.broadcast_state:
            B = x.shape[self.batch_dim]
            fields = tuple(f.expand(f.shape[0], B, f.shape[2]) for f in fields)
        state = self.structure(*fields) if self.structure else fields[0]
        if isinstance(self.model, LanguageModel):
            logits, final = self.model(x.t(), state)  # the model is time-first: (T, B) -> (T, B, V)
            y = logits.transpose(0, 1)  # (B, T, V)
        else:
            y, final = self.model(x, state)
        return (y, *state_fields(final))


def signature(model: LanguageModel | Recurrent) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The exported graph's inputs and outputs, with "batch" and "time" for the dynamic sizes."""
    layer = _layer(model)
    cell = layer.layer_cells()[0]
    dtype = next(model.parameters()).dtype
    K = layer.num_layers * layer.num_directions
    size = cell.state_size
    names = size._fields if isinstance(size, tuple) else ("h",)
    sizes = tuple(size) if isinstance(size, tuple) else (size,)
    if isinstance(model, LanguageModel):
        x = TensorSpec("tokens", ("batch", "time"), torch.int64)
        y = TensorSpec("logits", ("batch", "time", model.config.vocab_size), dtype)
    else:
        bt: tuple[int | str, ...] = ("batch", "time") if layer.batch_first else ("time", "batch")
        x = TensorSpec("input", (*bt, layer.input_size), dtype)
        y = TensorSpec("output", (*bt, layer.output_size), dtype)
    inputs = [x] + [
        TensorSpec(f"{name}0", (K, "batch", n), dtype) for name, n in zip(names, sizes, strict=True)
    ]
    outputs = [y] + [
        TensorSpec(f"{name}n", (K, "batch", n), dtype) for name, n in zip(names, sizes, strict=True)
    ]
    return inputs, outputs


def _layer(model: object) -> Recurrent:
    if isinstance(model, LanguageModel):
        return model.rnn
    if isinstance(model, Recurrent):
        return model
    raise TypeError(
        f"can export a LanguageModel or a Recurrent layer (rnnkit.nn.LSTM/GRU/RNN included), got "
        f"{type(model).__name__}"
    )


def _example(inputs: list[TensorSpec], model: nn.Module, vocab: int | None) -> tuple[Tensor, ...]:
    """Example tensors to trace with: batch 2 and time 3 (sizes 0 and 1 would be taken as constants)."""
    device = next(model.parameters()).device
    sizes = {"batch": 2, "time": 3}
    tensors = []
    for spec in inputs:
        shape = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in spec.shape)
        if spec.dtype == torch.int64:
            tensors.append(torch.randint(0, vocab or 1, shape, device=device))
        else:
            tensors.append(torch.randn(shape, dtype=spec.dtype, device=device) * 0.1)
    return tuple(tensors)


@contextlib.contextmanager
def export_mode(model: nn.Module, impl: str) -> Iterator[None]:
    """Within: eval mode (no dropout), and every Recurrent layer of ``model`` runs with ``impl`` (a
    traceable implementation: "native" or "traced"). Both are restored on leaving."""
    layers = [m for m in model.modules() if isinstance(m, Recurrent)]
    impls, training = [layer.impl for layer in layers], model.training
    try:
        for layer in layers:
            layer.impl = impl
        model.eval()
        yield
    finally:
        for layer, old in zip(layers, impls, strict=True):
            layer.impl = old
        model.train(training)


# -- ONNX ---------------------------------------------------------------------------------------------


def describe(cell: Cell) -> str:
    """A cell as its constructor call with the options that differ from the defaults, e.g.
    ``LSTMCell(peephole=True)``."""
    defaults = inspect.signature(type(cell)).parameters
    skip = {"input_size", "hidden_size", "output_size", "device", "dtype"}
    options = [
        f"{k}={v!r}"
        for k, v in getattr(cell, "_init_args", {}).items()
        if k not in skip and k in defaults and defaults[k].default is not v and defaults[k].default != v
    ]
    return f"{type(cell).__name__}({', '.join(options)})"


def check_onnx(model: LanguageModel | Recurrent) -> str:
    """The ONNX operator the model's recurrence maps to ("LSTM", "GRU" or "RNN"); otherwise an
    ``InputError`` naming the cell and what ONNX's operators compute."""
    layer = _layer(model)
    cells = layer.layer_cells()
    op = stack_is_native(cells, layer.merge)
    reason = None
    if op is None:
        cell = next((c for c in cells if native_op(c) is None), None)
        if cell is not None:
            reason = f"{describe(cell)} has no ONNX operator here"
        elif layer.merge != "concat":
            reason = f"merge={layer.merge!r}: ONNX's bidirectional operators concatenate the directions"
        else:
            reason = "the stack mixes cells with and without biases"
    elif getattr(cells[0], "proj_size", 0):
        reason = f"{describe(cells[0])}: ONNX's LSTM operator has no projection (proj_size)"
    if reason is not None:
        raise InputError(
            f"cannot export to ONNX: {reason}. The ONNX export maps torch's own RNN ops to ONNX's LSTM, "
            "GRU and RNN operators, so it takes a plain LSTM (no peephole, layer norm or projection), a "
            "GRU with reset_after=True (torch's form) and a tanh or relu Elman cell without readout, with "
            "merge='concat'. Export with format='torch' (torch.export) instead: it takes every cell."
        )
    return {"lstm": "LSTM", "gru": "GRU"}.get(op, "RNN")


def onnx_model(model: LanguageModel | Recurrent, opset: int = OPSET) -> Any:
    """The model as an ``onnx.ModelProto`` whose recurrence is ONNX's own LSTM / GRU / RNN operator.

    Traced with torch's TorchScript-based exporter (``dynamo=False``), which maps torch's RNN ops to
    ONNX's; batch and time are dynamic. The state inputs default to zeros.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "ONNX export needs the onnx package: pip install 'rnnkit[export]' (or pip install onnx)"
        ) from None

    check_onnx(model)
    inputs, outputs = signature(model)
    vocab = model.config.vocab_size if isinstance(model, LanguageModel) else None
    example = _example(inputs, model, vocab)
    graph = _Graph(model, broadcast_state=True)
    buffer = io.BytesIO()
    with export_mode(model, "native"), warnings.catch_warnings():
        # the legacy exporter announces its deprecation; the tracer warns about rnnkit's Python-level
        # shape checks, which hold for every input the checks let through
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # about a state made inside the graph; here the state is an input, so any batch size works
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            graph, example, buffer, dynamo=False, opset_version=opset,
            input_names=[s.name for s in inputs], output_names=[s.name for s in outputs],
            dynamic_axes={s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)}
                          for s in inputs + outputs},
        )  # fmt: skip
    proto = onnx.load_from_string(buffer.getvalue())
    # optional state: an initializer with a graph input's name is that input's default (ONNX IR >= 4)
    for spec in inputs[1:]:
        zeros = torch.zeros(spec.shape[0], 1, spec.shape[2], dtype=spec.dtype)
        proto.graph.initializer.append(numpy_helper.from_array(zeros.numpy(), spec.name))
    onnx.checker.check_model(proto)
    return proto


# -- torch.export -------------------------------------------------------------------------------------


def torch_program(model: LanguageModel | Recurrent) -> torch.export.ExportedProgram:
    """The model as a ``torch.export.ExportedProgram`` with dynamic batch and time, for every cell.

    Inputs and outputs as the module docstring lists them; the state inputs are required (zeros for a
    fresh sequence). Run it with ``program.module()(*inputs)``; save with ``torch.export.save``.
    """
    inputs, _ = signature(model)
    vocab = model.config.vocab_size if isinstance(model, LanguageModel) else None
    example = _example(inputs, model, vocab)
    dims = {name: torch.export.Dim(name, min=1) for name in ("batch", "time")}
    shapes = [{i: dims[d] for i, d in enumerate(s.shape) if isinstance(d, str)} for s in inputs]
    with export_mode(model, "traced"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's scan tracing uses jit internals
        return torch.export.export(
            _Graph(model, broadcast_state=False), example, dynamic_shapes=(shapes[0], tuple(shapes[1:]))
        )


# -- files ----------------------------------------------------------------------------------------------


def export(
    model: LanguageModel | Recurrent, path: str | os.PathLike[str], format: str = "onnx"
) -> dict[str, Any]:
    """Export ``model`` to ``path`` (written atomically: the old file or the new one, never a mix).

    Returns a report: path, format, opset (None for torch), inputs and outputs (name, shape, dtype) and
    the file's size in bytes.
    """
    from ...training.checkpoint import atomic_write

    if format not in FORMATS:
        raise InputError(f"format must be one of {list(FORMATS)}, got {format!r}")
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{path} is a directory; give a file name, e.g. {path / ('model.' + _suffix(format))}"
        )
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such directory (the export's folder must exist)")
    inputs, outputs = signature(model)
    if format == "onnx":
        data = onnx_model(model).SerializeToString()
    else:
        buffer = io.BytesIO()
        torch.export.save(torch_program(model), buffer)
        data = buffer.getvalue()
    atomic_write(path, data)
    return {
        "path": str(path),
        "format": format,
        "opset": OPSET if format == "onnx" else None,
        "inputs": [s.as_dict() for s in inputs],
        "outputs": [s.as_dict() for s in outputs],
        "size": len(data),
    }


def _suffix(format: str) -> str:
    return "onnx" if format == "onnx" else "pt2"


def export_run(
    run_dir: str | os.PathLike[str], path: str | os.PathLike[str], format: str = "onnx", which: str = "best"
) -> dict[str, Any]:
    """Export the language model of a run directory made by ``rnnkit train lm`` (its best, or
    ``which``, weights); returns :func:`export`'s report."""
    from . import run

    if format not in FORMATS:
        raise InputError(f"format must be one of {list(FORMATS)}, got {format!r}")
    trained = run.load_language_model(run_dir, which=which)
    return {**export(trained.model, path, format), "run_dir": str(trained.run_dir)}


__all__ = [
    "FORMATS",
    "OPSET",
    "TensorSpec",
    "check_onnx",
    "export",
    "export_mode",
    "export_run",
    "onnx_model",
    "signature",
    "torch_program",
]
