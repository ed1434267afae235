"""Checks on numeric data as it is loaded: NaN or Inf is refused where it enters, naming where it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def check_finite(values: Any, source: str, what: str = "values") -> None:
    """Raise :class:`~rnnkit.errors.InputError` if ``values`` (a tensor or array) holds NaN or Inf.

    The message names ``source`` (a file, and a line or series if the caller knows it), the position of
    the first bad entry as an index tuple, its value, and how many there are::

        train.ts: 2 non-finite values (NaN or Inf) in the series values; the first is nan at index (3, 0, 7)
    """
    array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.complexfloating):
        return  # integers and booleans cannot be NaN
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{source}: {count} non-finite value{'s' if count > 1 else ''} (NaN or Inf) in the {what}; "
            f"the first is {float(array[first])!r} at index {first}. Drop or impute them before training"
        )


_TEXT_CONTROLS = set("\t\n\r\f\v")


def check_text(text: str, source: str) -> str:
    """Refuse text that is binary data: a NUL, or more than 1% control characters (other than tab, newline,
    carriage return, form feed, vertical tab); returns ``text``."""
    nul = text.find("\x00")
    controls = sum(1 for ch in text if ch < " " and ch not in _TEXT_CONTROLS)
    if nul >= 0 or controls > 0.01 * len(text):
        where = f"a NUL character at offset {nul}" if nul >= 0 else f"{controls} control characters"
        raise InputError(f"{source}: binary data, not text ({where} in {len(text)} characters)")
    return text


def read_stdin_text(source: str = "standard input") -> str:
    """Standard input as UTF-8 text (decoded strictly, binary data refused)."""
    import sys

    from .text import decode_text

    return check_text(decode_text(sys.stdin.buffer.read(), source), source)
