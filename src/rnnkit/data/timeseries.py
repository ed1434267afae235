"""Labelled time series for classification: the sktime/aeon ``.ts`` format, and numpy arrays.

A ``.ts`` file (the UEA/UCR archive's format) is a header of ``@`` lines, then one series per line::

    # comments start with '#'
    @problemName JapaneseVowels
    @timeStamps false
    @missing false
    @univariate false
    @dimensions 12
    @equalLength false
    @classLabel true 1 2 3 4 5 6 7 8 9
    @data
    1.86,1.89,1.94:-0.21,-0.19,-0.24: ... :1       <- dimension 1 : dimension 2 : ... : class label

Dimensions (channels) are separated by ``:``, values by ``,``, and the class label comes last. Series may
differ in length from line to line (``@equalLength false``); within one line every dimension must have
the same length, since a recurrent model reads one C-vector per time step. Missing values (``?``, NaN)
and Inf are refused with the line: rnnkit does not impute. Time stamps (``@timeStamps true``) are not
supported.

Shape legend: N series, T_i the length of series i, T = max T_i, C channels (dimensions).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .checks import check_finite

__all__ = ["SeriesDataset", "read_ts"]

# header keys (lower case, as sktime and aeon compare them) and whether the key takes a true/false value
_BOOLEAN_KEYS = ("timestamps", "missing", "univariate", "equallength")
_KNOWN_KEYS = (*_BOOLEAN_KEYS, "problemname", "dimensions", "serieslength", "classlabel", "data")


@dataclass
class SeriesDataset:
    """Variable-length multivariate series with optional class labels.

    Attributes:
        series: N float32 arrays of shape (T_i, C).
        labels: N class labels as strings, or None for unlabelled series.
        classes: the class names (a label's index in this list is its class id), in the order the
            file's ``@classLabel`` declares them (for arrays: sorted, numerically if all are integers).
        source: where the series came from, for messages.
        name: the ``@problemName``, if any.
    """

    series: list[np.ndarray]
    labels: list[str] | None = None
    classes: list[str] = field(default_factory=list)
    source: str = "<arrays>"
    name: str | None = None

    def __post_init__(self) -> None:
        if not self.series:
            raise InputError(f"{self.source}: no series")
        C = self.series[0].shape[1]
        for i, s in enumerate(self.series):
            if s.ndim != 2 or s.shape[1] != C or s.shape[0] < 1:
                raise InputError(
                    f"{self.source}: series {i} has shape {tuple(s.shape)}; expected (T >= 1, {C}) "
                    "like series 0"
                )
        if self.labels is not None:
            if len(self.labels) != len(self.series):
                raise InputError(f"{self.source}: {len(self.series)} series but {len(self.labels)} labels")
            known = set(self.classes)
            for i, label in enumerate(self.labels):
                if label not in known:
                    raise InputError(
                        f"{self.source}: series {i} has label {label!r}, not one of the classes "
                        f"{self.classes}"
                    )

    def __len__(self) -> int:
        return len(self.series)

    @property
    def channels(self) -> int:
        """C, values per time step."""
        return int(self.series[0].shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int64, T_i of every series."""
        return np.array([s.shape[0] for s in self.series], dtype=np.int64)

    def targets(self, classes: Sequence[str] | None = None) -> Tensor:
        """(N,) int64 class ids: each label's index in ``classes`` (default: this dataset's own).

        A model trained on one dataset labels another through the training set's ``classes``; a label
        it never saw is refused here, naming it.
        """
        if self.labels is None:
            raise InputError(f"{self.source}: the series have no class labels")
        classes = list(self.classes if classes is None else classes)
        index = {c: k for k, c in enumerate(classes)}
        unknown = sorted({label for label in self.labels if label not in index})
        if unknown:
            raise InputError(f"{self.source}: labels {unknown} are not among the model's classes {classes}")
        return torch.tensor([index[label] for label in self.labels], dtype=torch.int64)

    def padded(self, length: int | None = None) -> tuple[Tensor, Tensor]:
        """The series zero-padded at the end, batch first.

        Arguments:
            length: pad (and cut) every series to this many steps; default T = the longest.

        Returns:
            ``x`` (N, T, C) float32 and ``lengths`` (N,) int64 (each at most ``length``).
        """
        lengths = self.lengths
        T = int(lengths.max()) if length is None else length
        x = np.zeros((len(self.series), T, self.channels), dtype=np.float32)  # (N, T, C)
        for i, s in enumerate(self.series):
            x[i, : min(len(s), T)] = s[:T]
        return torch.from_numpy(x), torch.from_numpy(np.minimum(lengths, T))

    @classmethod
    def from_arrays(
        cls,
        X: np.ndarray | Tensor | Sequence[np.ndarray | Tensor],
        y: Sequence[Any] | np.ndarray | Tensor | None = None,
        lengths: Sequence[int] | np.ndarray | Tensor | None = None,
        classes: Sequence[Any] | None = None,
        source: str = "<arrays>",
    ) -> SeriesDataset:
        """Series from arrays: a list of N arrays (T_i, C) (or (T_i,) for one channel), or one padded
        array (N, T, C) with ``lengths`` (N,) (default: every series is T long).

        ``y`` holds N labels of any kind (ints, strings); they are kept as strings. ``classes`` fixes
        the class order; by default it is the sorted labels (numerically when they are all integers).
        """
        if isinstance(X, (np.ndarray, Tensor)):
            array = _as_float_array(X, source)
            if array.ndim != 3:
                raise InputError(
                    f"{source}: a padded array of series must be (N, T, C), got shape {tuple(array.shape)} "
                    "(for one channel, add a last axis of size 1; or pass a list of (T_i, C) arrays)"
                )
            N, T = array.shape[:2]
            if lengths is None:
                lens = np.full(N, T, dtype=np.int64)
            else:
                lens = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths)
                if lens.shape != (N,) or not np.issubdtype(lens.dtype, np.integer):
                    raise InputError(
                        f"{source}: lengths must be {N} integers (one per series), got "
                        f"{lens.dtype} of shape {tuple(lens.shape)}"
                    )
                bad = np.flatnonzero((lens < 1) | (lens > T))
                if len(bad):
                    raise InputError(
                        f"{source}: lengths must be in [1, {T}] (the padded length); series {int(bad[0])} "
                        f"has length {int(lens[bad[0]])}"
                    )
            series = [array[i, : int(lens[i])] for i in range(N)]
        else:
            if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
                raise InputError(
                    f"{source}: X must be a list of (T_i, C) arrays or one (N, T, C) array, got "
                    f"{type(X).__name__}"
                )
            if lengths is not None:
                raise InputError(f"{source}: lengths go with a padded (N, T, C) array, not with a list")
            series = []
            for i, s in enumerate(X):
                a = _as_float_array(s, f"{source}: series {i}")
                if a.ndim == 1:
                    a = a[:, None]  # one channel
                if a.ndim != 2:
                    raise InputError(
                        f"{source}: series {i} must be (T, C) or (T,), got shape {tuple(a.shape)}"
                    )
                series.append(a)
        for i, s in enumerate(series):
            check_finite(s, f"{source}: series {i}", "series values")
        if y is None:
            return cls(series, None, [str(c) for c in classes or []], source)
        raw = list(y.tolist() if isinstance(y, (np.ndarray, Tensor)) else y)
        if len(raw) != len(series):
            raise InputError(f"{source}: {len(series)} series but {len(raw)} labels in y")
        if classes is None:
            distinct = set(raw)
            integers = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in distinct)
            classes = sorted(distinct) if integers else sorted(distinct, key=str)
        return cls(series, [str(v) for v in raw], [str(c) for c in classes], source)


def _as_float_array(a: Any, source: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    try:
        array = np.asarray(a, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InputError(f"{source}: expected numbers, got {type(a).__name__} ({e})") from None
    return array


def read_ts(path: str | os.PathLike[str]) -> SeriesDataset:
    """Read a sktime/aeon ``.ts`` file (see the module docstring for the format).

    Every problem is an :class:`~rnnkit.errors.InputError` naming the file and line: a malformed
    header or value, a missing value (``?`` or NaN), Inf, dimensions of unequal length in one series, a
    number of dimensions other than ``@dimensions``, or a label not declared in ``@classLabel``.
    Labels are optional: a file with ``@classLabel false`` holds unlabelled series (to predict).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file ({e})") from None
    header: dict[str, Any] = {}
    classes: list[str] | None = None
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{path}:{number}"
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise InputError(
                    f"{where}: expected a header line starting with '@' before @data, got {_clip(line)!r}"
                )
            key, _, value = line[1:].partition(" ")
            key, value = key.lower(), value.strip()
            if key not in _KNOWN_KEYS:
                hint = " (regression targets are not supported)" if key == "targetlabel" else ""
                raise InputError(f"{where}: unknown header @{key}{hint}; expected one of {list(_KNOWN_KEYS)}")
            if key in header:
                raise InputError(f"{where}: @{key} is given twice")
            if key in _BOOLEAN_KEYS:
                header[key] = _boolean(value, key, where)
                if key == "timestamps" and header[key]:
                    raise InputError(f"{where}: @timeStamps true is not supported (series with time stamps)")
            elif key in ("dimensions", "serieslength"):
                if not value.isdigit() or int(value) < 1:
                    raise InputError(f"{where}: @{key} needs an integer >= 1, got {value!r}")
                header[key] = int(value)
            elif key == "classlabel":
                flag, _, rest = value.partition(" ")
                header[key] = _boolean(flag, key, where)
                classes = rest.split() if header[key] else None
                if header[key] and not classes:
                    raise InputError(f"{where}: @classLabel true must list the class labels")
                if classes and len(set(classes)) != len(classes):
                    raise InputError(f"{where}: @classLabel lists a label twice: {classes}")
            elif key == "data":
                if value:
                    raise InputError(f"{where}: @data takes no value, got {_clip(value)!r}")
                header[key] = True
                in_data = True
            else:
                header[key] = value
            continue
        if line.startswith("@"):
            raise InputError(f"{where}: header line {_clip(line)!r} after @data")
        fields = line.split(":")
        if classes is not None:
            if len(fields) == header.get("dimensions", 0):
                raise InputError(f"{where}: the class label (after the last ':') is missing")
            label = fields.pop().strip()
            if label not in classes:
                raise InputError(
                    f"{where}: class label {label!r} is not declared in @classLabel {classes}"
                    if label
                    else f"{where}: the class label (after the last ':') is missing"
                )
            labels.append(label)
        series.append(_parse_series(fields, header, where))
    if not in_data:
        raise InputError(f"{path}: no @data line (is this a .ts file?)")
    if not series:
        raise InputError(f"{path}: no series after @data")
    if header.get("equallength") and len({len(s) for s in series}) > 1:
        lengths = sorted({len(s) for s in series})
        raise InputError(
            f"{path}: @equalLength true, but the series have lengths {lengths[0]}..{lengths[-1]}"
        )
    return SeriesDataset(
        series, labels if classes is not None else None, classes or [], str(path), header.get("problemname")
    )


def _parse_series(fields: list[str], header: dict[str, Any], where: str) -> np.ndarray:
    """One data line's dimensions -> (T, C) float32."""
    C = header.get("dimensions", 1 if header.get("univariate") else None)
    if C is not None and len(fields) != C:
        raise InputError(
            f"{where}: expected {C} dimension{'s' if C > 1 else ''} separated by ':'"
            f"{' and then the class label' if header.get('classlabel') else ''}, got {len(fields)}"
        )
    columns = []
    for d, text in enumerate(fields, start=1):
        tokens = [t.strip() for t in text.split(",")]
        for position, token in enumerate(tokens, start=1):
            if token == "?" or token.lower() == "nan":
                raise InputError(
                    f"{where}: missing value {token!r} in dimension {d}, position {position}; rnnkit does "
                    "not impute: drop the series or fill the gaps before training"
                )
        try:
            values = np.array(tokens, dtype=np.float64)
        except ValueError:
            bad = next(p for p, t in enumerate(tokens, start=1) if not _is_number(t))
            raise InputError(
                f"{where}: dimension {d}, position {bad}: expected a number, got {_clip(tokens[bad - 1])!r}"
            ) from None
        check_finite(values, f"{where}: dimension {d}", "series values")
        columns.append(values)
    lengths = [len(c) for c in columns]
    if len(set(lengths)) > 1:
        raise InputError(
            f"{where}: the dimensions have different lengths {lengths}; a series needs one value per "
            "dimension at every time step"
        )
    if header.get("serieslength") and header.get("equallength") and lengths[0] != header["serieslength"]:
        raise InputError(
            f"{where}: @seriesLength is {header['serieslength']}, got a series of length {lengths[0]}"
        )
    x = np.stack(columns, axis=1).astype(np.float32)  # (T, C)
    check_finite(x, where, "series values (too large for float32)")
    return x


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _boolean(value: str, key: str, where: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise InputError(f"{where}: @{key} must be true or false, got {_clip(value)!r}")
    return value.lower() == "true"


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "..."
