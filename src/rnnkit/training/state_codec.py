"""The training state as JSON + tensors (no pickle). Nested dicts, lists and tuples of tensors, str, int,
float, bool and None come back exactly, and so does a NamedTuple state of rnnkit's (``LSTMState`` and any
other), by its class's name.

JSON keeps None, bool, str, int (any size) and finite floats (shortest repr: exact). Everything else is
an object with one "$" key: {"$tensor": name in state.safetensors}, {"$tuple": [...]},
{"$float": "nan" | "inf" | "-inf"}, {"$lstm_state": [h, c]}, {"$namedtuple": ["module:Class", [...]]}
for any other NamedTuple, and {"$dict": [[key, value], ...]} for a dict with non-str keys or a key
starting with "$". Other dicts are JSON objects, lists JSON arrays.

A NamedTuple's class is found again by name without running code from the file: an rnnkit module is
imported (rnnkit's own code), any other module must already be imported (the one that defines the
model's cell, which built the state), else the file is refused.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

from torch import Tensor

from ..cells.base import LSTMState
from ..errors import InputError
from .checkpoint_format import _MAX_DEPTH, STATE_TENSORS

_SCALARS = (type(None), bool, int, float, str)


def _where(parts: tuple[Any, ...]) -> str:
    return "train_state" + "".join(f"[{p!r}]" for p in parts)


def _encode(value: Any, parts: tuple[Any, ...], tensors: dict[str, Tensor], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise InputError(f"{_where(parts)}: nested more than {_MAX_DEPTH} levels deep (a cycle?)")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"$float": repr(float(value))}
    if isinstance(value, Tensor):
        name = "/".join(map(str, parts))
        while name in tensors or name == "__metadata__":  # keys 0 and "0" in one dict; safetensors' key
            name += "~"
        tensors[name] = value
        return {"$tensor": name}
    if isinstance(value, LSTMState):
        return {
            "$lstm_state": [_encode(v, (*parts, f), tensors, depth + 1) for f, v in value._asdict().items()]
        }
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):  # any other NamedTuple state
        cls = type(value)
        fields = [
            _encode(v, (*parts, f), tensors, depth + 1) for f, v in zip(cls._fields, value, strict=True)
        ]
        return {"$namedtuple": [f"{cls.__module__}:{cls.__qualname__}", fields]}
    if type(value) is tuple:
        return {"$tuple": [_encode(v, (*parts, i), tensors, depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, (*parts, i), tensors, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, _SCALARS) or (isinstance(key, float) and not math.isfinite(key)):
                raise InputError(f"{_where(parts)}: cannot store the dict key {key!r} (use str or int keys)")
        items = {k: _encode(v, (*parts, k), tensors, depth + 1) for k, v in value.items()}
        if all(isinstance(k, str) and not k.startswith("$") for k in items):
            return items
        return {"$dict": [[k, v] for k, v in items.items()]}
    hint = (
        " (convert numpy values with .item() or torch.from_numpy)"
        if type(value).__module__ == "numpy"
        else ""
    )
    raise InputError(
        f"{_where(parts)}: cannot store a {type(value).__module__}.{type(value).__qualname__}{hint}; a "
        "training state holds dicts, lists and tuples of tensors, str, int, float, bool and None"
    )


class _Malformed(Exception):
    """A problem inside a file, turned into a CheckpointError naming the file by the caller."""


def _decode(node: Any, tensors: dict[str, Tensor], used: set[str], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Malformed(f"nested more than {_MAX_DEPTH} levels deep")
    if isinstance(node, _SCALARS):
        return node
    if isinstance(node, list):
        return [_decode(v, tensors, used, depth + 1) for v in node]
    if not isinstance(node, dict):
        raise _Malformed(f"unexpected JSON value {node!r}")
    if len(node) == 1 and next(iter(node)).startswith("$"):
        ((tag, arg),) = node.items()
        if tag == "$tensor" and isinstance(arg, str):
            if arg not in tensors:
                raise _Malformed(f"names the tensor {arg!r}, which {STATE_TENSORS} does not hold")
            used.add(arg)
            return tensors[arg]
        if tag == "$float" and arg in ("nan", "inf", "-inf"):
            return float(arg)
        if tag == "$tuple" and isinstance(arg, list):
            return tuple(_decode(v, tensors, used, depth + 1) for v in arg)
        if tag == "$lstm_state" and isinstance(arg, list) and len(arg) == 2:
            return LSTMState(*(_decode(v, tensors, used, depth + 1) for v in arg))
        if tag == "$namedtuple" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            cls = _named_tuple_class(arg[0])
            if len(arg[1]) != len(cls._fields):
                raise _Malformed(f"{arg[0]} has {len(cls._fields)} fields, the file gives {len(arg[1])}")
            return cls(*(_decode(v, tensors, used, depth + 1) for v in arg[1]))
        if tag == "$dict" and isinstance(arg, list):
            out = {}
            for pair in arg:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], _SCALARS)):
                    raise _Malformed(f"a $dict entry must be [scalar key, value], got {pair!r:.80}")
                out[pair[0]] = _decode(pair[1], tensors, used, depth + 1)
            return out
        raise _Malformed(f"unknown or malformed entry {{{tag!r}: ...}}")
    if any(k.startswith("$") for k in node):
        raise _Malformed(f"unexpected keys {sorted(k for k in node if k.startswith('$'))}")
    return {k: _decode(v, tensors, used, depth + 1) for k, v in node.items()}


def _named_tuple_class(name: object) -> type:
    """The NamedTuple class ``"module:Qualname"`` names (see the module doc for which are found)."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise _Malformed(f"a $namedtuple needs 'module:Class', got {name!r:.80}")
    module_name, qualname = name.split(":")
    module = sys.modules.get(module_name)
    if module is None and (module_name == "rnnkit" or module_name.startswith("rnnkit.")):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
    if module is None:
        raise _Malformed(f"{name}: its module is not imported (import the code that defines the state first)")
    cls: Any = module
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise _Malformed(f"{name} is not a NamedTuple class")
    return cls
