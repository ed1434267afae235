"""cuDNN's weight layout for torch's RNN op on CUDA.

cuDNN reads all of a stack's weights from one contiguous buffer. torch.nn's layers keep their
parameters as views into such a buffer (``flatten_parameters``); rnnkit's cells own separate
parameters, so without this torch's op copies them into a fresh buffer at every call (its warning "RNN
module weights are not part of single contiguous chunk of memory"): about 10% of a forward at B=64,
H=512, T=256 on an H200. ``flatten_for_cudnn`` does what ``flatten_parameters`` does, once: the cells'
parameters become views into one buffer in cuDNN's order (same objects, same values), and every later
call finds them there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..cells import Cell

_MODES = {"rnn_relu": 0, "rnn_tanh": 1, "lstm": 2, "gru": 3}  # cudnnRNNMode_t, as torch's get_cudnn_mode


def is_flat(weights: Sequence[Tensor]) -> bool:
    """All in one storage: only a flattening puts them there (the op checks the exact layout itself)."""
    return len({w.untyped_storage().data_ptr() for w in weights}) == 1


def flatten_for_cudnn(op: str, cells: Sequence[Cell], weights: Sequence[Tensor], bidirectional: bool) -> None:
    """Rebind ``weights`` (the cells' parameters, in torch's order) as views into one cuDNN buffer, if
    they are CUDA parameters cuDNN takes and are not already so laid out. Anything else: left alone."""
    if not weights or weights[0].device.type != "cuda" or not torch._use_cudnn_rnn_flatten_weight():
        return
    if not all(isinstance(w, nn.Parameter) for w in weights):  # e.g. weight drop's masked copies
        return
    if len({w.dtype for w in weights}) != 1 or not all(
        torch.backends.cudnn.is_acceptable(w) for w in weights
    ):
        return
    if is_flat(weights) or len({w.data_ptr() for w in weights}) != len(weights):  # done, or tied weights
        return
    c = cells[0]
    proj = getattr(c, "proj_size", 0) or 0
    per_cell = (4 if c.bias_ih is not None else 2) + (1 if proj else 0)
    layers = len(cells) // (2 if bidirectional else 1)
    with torch.cuda.device_of(weights[0]), torch.no_grad():
        torch._cudnn_rnn_flatten_weight(
            list(weights),
            per_cell,
            c.input_size,
            _MODES[op],
            c.hidden_size,
            proj,
            layers,
            False,
            bidirectional,
        )
