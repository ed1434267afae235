"""Labelled texts for classification: ``.csv``, ``.tsv`` and ``.jsonl`` files, and their token ids.

    data = read_labelled_text("train.csv")                 # columns "text" and "label" by default
    tok = fit_tokenizer(data.texts, "word", min_count=2)   # the training file's vocabulary only
    ids, lengths, cut = encode_texts(tok, data.texts)      # (N, T) int64 zero-padded, (N,), #truncated

The format comes from the file's extension. A ``.csv`` / ``.tsv`` file has a header row naming its
columns; quoted fields may hold the delimiter and newlines (Python's :mod:`csv` dialect, as spreadsheets
write it). A ``.jsonl`` file holds one JSON object per line; integer labels (``0``, ``1``) are read as
their decimal strings, so the same data as CSV or JSONL gives the same classes.

Every problem is an :class:`~rnnkit.errors.InputError` naming the file and the line: bytes that are
not UTF-8 (with the byte offset), a missing column (with the columns found), a row with more or fewer
fields than the header, an empty text or label, a line that is not a JSON object.

Texts are read by the tokenisers of :mod:`.text`. Words are GPT-2-style tokens that carry the space
before them, so every text is stripped and given one leading space: the first word of a text is then
the same token as the same word anywhere else.

Shape legend: N texts, T the longest text's number of tokens (at most ``max_tokens``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import InputError, check_int
from .text import UNK, CharTokenizer, Tokenizer, WordTokenizer, decode_text

__all__ = [
    "FORMATS",
    "LabelledTexts",
    "encode_texts",
    "fit_tokenizer",
    "is_text_file",
    "read_labelled_text",
    "sort_labels",
    "token_strings",
]

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
TOKENIZERS = ("word", "char")


@dataclass
class LabelledTexts:
    """Texts with optional class labels, and where each came from.

    Attributes:
        texts: N strings, none empty.
        labels: N class labels (strings), or None where the file has no label column.
        lines: N line numbers in the file (where each record starts), for messages.
        source: the file, for messages.
    """

    texts: list[str]
    labels: list[str] | None
    lines: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """The distinct labels, sorted (numerically when all are integers)."""
        if self.labels is None:
            raise InputError(f"{self.source}: the texts have no labels")
        return sort_labels(set(self.labels))

    def targets(self, classes: Sequence[str], against: str = "the training file") -> Tensor:
        """(N,) int64 class ids in ``classes``; a label not among them is an error naming its line."""
        if self.labels is None:
            raise InputError(f"{self.source}: the texts have no labels")
        index = {c: k for k, c in enumerate(classes)}
        for label, line in zip(self.labels, self.lines, strict=True):
            if label not in index:
                unseen = sorted(set(self.labels) - set(index))
                raise InputError(
                    f"{self.source}, line {line}: label {label!r} never occurs in {against} (unseen labels: "
                    f"{', '.join(map(repr, unseen[:8]))}); the known labels are "
                    f"{', '.join(map(repr, classes))}"
                )
        return torch.tensor([index[label] for label in self.labels], dtype=torch.int64)

    def subset(self, index: Sequence[int], name: str) -> LabelledTexts:
        """The records ``index``, as a dataset called ``source (name)``."""
        labels = None if self.labels is None else [self.labels[i] for i in index]
        return LabelledTexts([self.texts[i] for i in index], labels, [self.lines[i] for i in index],
                             f"{self.source} ({name})")  # fmt: skip


def sort_labels(labels: set[str]) -> list[str]:
    """Labels sorted as numbers when every one is an integer ("2" before "10"), else as strings."""
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def is_text_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a labelled-text file (by extension: .csv, .tsv, .jsonl)."""
    return Path(path).suffix.lower() in FORMATS


def read_labelled_text(
    path: str | os.PathLike[str],
    text_column: str = "text",
    label_column: str = "label",
    require_labels: bool = True,
) -> LabelledTexts:
    """Read texts and labels from a ``.csv``, ``.tsv`` or ``.jsonl`` file.

    Arguments:
        path: the file; its extension says the format.
        text_column, label_column: the column (CSV/TSV) or key (JSONL) names.
        require_labels: if False, a file without the label column gives ``labels=None`` (texts to
            predict); if True that is an error.

    Returns:
        :class:`LabelledTexts` with at least one record.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: expected a .csv, .tsv or .jsonl file, got the extension {path.suffix!r}")
    if path.is_dir():
        raise InputError(f"{path} is a folder; expected a {path.suffix} file")
    try:
        text = decode_text(path.read_bytes(), str(path))
    except InputError as e:  # decode_text's hint names a Python argument; here a file is to be fixed
        raise InputError(str(e).split(" Pass errors=")[0] + " Save the file as UTF-8.") from None
    columns = (text_column, label_column)
    rows, names = (
        _read_jsonl(text, path, columns) if kind == "jsonl" else _read_table(text, path, kind, columns)
    )
    texts, labels, lines = [], [], []
    has_labels = True
    for line, fields in rows:
        if fields[1] is None:
            has_labels = False
        texts.append(fields[0])
        labels.append(fields[1])
        lines.append(line)
    if not texts:
        raise InputError(f"{path}: no records (expected a header and at least one row)" if kind != "jsonl"
                         else f"{path}: no records (expected one JSON object per line)")  # fmt: skip
    if not has_labels and require_labels:
        found = ", ".join(repr(n) for n in names)
        raise InputError(
            f"{path}: no label column {label_column!r} (choose one with --label-column); the columns are "
            f"{found}"
        )
    return LabelledTexts(texts, labels if has_labels else None, lines, str(path))  # type: ignore[arg-type]


def _check_record(path: Path, line: int, text: str, label: str | None, columns: tuple[str, str]) -> None:
    if not text.strip():
        raise InputError(f"{path}, line {line}: the text ({columns[0]!r}) is empty")
    if label is not None and not label.strip():
        raise InputError(f"{path}, line {line}: the label ({columns[1]!r}) is empty")


def _read_table(
    text: str, path: Path, kind: str, columns: tuple[str, str]
) -> tuple[list[tuple[int, list]], list[str]]:
    """(line, [text, label or None]) per row of a CSV/TSV file, and the header's column names."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",", strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path} is empty (expected a header row naming the columns)")
        where = []
        for role, name in zip(("--text-column", "--label-column"), columns, strict=True):
            if name in header:
                where.append(header.index(name))
            elif role == "--label-column":
                where.append(None)  # the caller decides whether labels are required
            else:
                found = ", ".join(repr(h) for h in header)
                raise InputError(
                    f"{path}: no column {name!r} (choose one with {role}); the header has {found}"
                )
        rows, start = [], reader.line_num + 1
        for row in reader:
            if row:  # a blank line is no record
                if len(row) != len(header):
                    raise InputError(
                        f"{path}, line {start}: {len(row)} fields, but the header has {len(header)} (a "
                        f"ragged row; quote a field that contains the delimiter {reader.dialect.delimiter!r})"
                    )
                fields = [row[where[0]], None if where[1] is None else row[where[1]]]
                _check_record(path, start, *fields, columns)
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"{path}, line {reader.line_num}: not valid {kind.upper()}: {e}") from None
    return rows, header


def _read_jsonl(text: str, path: Path, columns: tuple[str, str]) -> tuple[list[tuple[int, list]], list[str]]:
    """(line, [text, label or None]) per object of a JSON-lines file, and the first object's keys."""
    rows: list[tuple[int, list]] = []
    names: list[str] = []
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {line}: not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {line}: expected a JSON object, got {type(record).__name__}")
        text_key, label_key = columns
        if text_key not in record:
            found = ", ".join(repr(k) for k in record) or "none"
            raise InputError(
                f"{path}, line {line}: no key {text_key!r} (choose one with --text-column); its keys are "
                f"{found}"
            )
        value, label = record[text_key], record.get(label_key)
        if not isinstance(value, str):
            raise InputError(f"{path}, line {line}: {text_key!r} must be a string, got {json.dumps(value)}")
        if label_key in record and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise InputError(
                f"{path}, line {line}: {label_key!r} must be a string or an integer, got {json.dumps(label)}"
            )
        fields = [value, None if label is None else str(label)]
        if rows and (fields[1] is None) != (rows[-1][1][1] is None):
            raise InputError(f"{path}, line {line}: some records have the key {label_key!r} and some do not")
        _check_record(path, line, fields[0], fields[1], columns)
        rows.append((line, fields))
        names = names or list(record)
    return rows, names


# -- tokens ----------------------------------------------------------------------------------------------


def prepare(text: str, kind: str) -> str:
    """The string a tokenizer reads: stripped, and for words with one leading space (see the module doc)."""
    return " " + text.strip() if kind == "word" else text.strip()


def fit_tokenizer(
    texts: Sequence[str], kind: str = "word", min_count: int = 2, max_size: int | None = None
) -> Tokenizer:
    """A tokenizer whose vocabulary is the tokens of ``texts`` seen at least ``min_count`` times (at most
    ``max_size`` of them, ``<unk>`` included); rarer ones, and any unseen later, encode to ``<unk>``."""
    if kind not in TOKENIZERS:
        raise InputError(f"tokenizer must be one of {list(TOKENIZERS)}, got {kind!r}")
    check_int("min_count", min_count)
    joined = "".join(prepare(t, kind) for t in texts)
    if kind == "word":
        return WordTokenizer.fit(joined, max_size=max_size, min_count=min_count)
    counts = Counter(joined)
    chars = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    if max_size is not None:
        chars = chars[: check_int("max_size", max_size, minimum=2) - 1]
    return CharTokenizer(sorted(chars), allow_unknown=True)


def encode_texts(
    tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int | None = None
) -> tuple[Tensor, Tensor, int]:
    """Token ids of each text, zero-padded at the end.

    Returns:
        ``ids`` (N, T) int64, ``lengths`` (N,) int64 (each >= 1), and how many texts were cut to
        ``max_tokens``. Padding holds 0 (``<unk>``); models read only the first ``lengths[n]`` steps.
    """
    if max_tokens is not None:
        check_int("max_tokens", max_tokens)
    full = [tokenizer.encode(prepare(t, tokenizer.kind)) for t in texts]
    encoded = [e[:max_tokens] for e in full]
    cut = sum(len(f) > len(e) for f, e in zip(full, encoded, strict=True))
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.int64)  # (N,)
    ids = torch.zeros(len(encoded), int(lengths.max()) if len(encoded) else 0, dtype=torch.int64)  # (N, T)
    for n, e in enumerate(encoded):
        ids[n, : len(e)] = e
    return ids, lengths, cut


def token_strings(tokenizer: Tokenizer, text: str, max_tokens: int | None = None) -> list[str]:
    """The tokens of ``text`` as the model reads them, for display: unknown ones as ``<unk>``."""
    ids = tokenizer.encode(prepare(text, tokenizer.kind))[:max_tokens].tolist()
    return [UNK if tokenizer.tokens[i] == UNK else tokenizer.tokens[i] for i in ids]
