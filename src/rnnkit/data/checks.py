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
