"""Text for language models: decoding files, tokenisers, and batches for truncated BPTT.

    read_text(path)                       bytes on disk -> str (UTF-8, BOM stripped, "\\n" line endings)
    CharTokenizer / WordTokenizer         str <-> token ids (N,), saved as a JSON dict (no pickle)
    TBPTTStream(ids, batch_size, seq_len) (N,) -> chunks (input, target), each (T, B), time-first
    pad_batch(sequences)                  [(L_b,)] * B -> padded (T, B) and lengths (B,)

Shape legend: N tokens in a corpus, B parallel streams (the batch), T steps per chunk.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, check, check_int

UNK = "<unk>"
_BOM = b"\xef\xbb\xbf"

# -- decoding --------------------------------------------------------------------------------------------


def decode_text(data: bytes, source: str = "<bytes>", errors: Literal["strict", "replace"] = "strict") -> str:
    """Decode UTF-8 ``data``: strip a leading BOM and turn ``\\r\\n`` and lone ``\\r`` into ``\\n``.

    With ``errors="strict"`` an undecodable byte raises :class:`InputError` naming ``source``, the
    byte offset (counted in ``data``, BOM included) and the line; ``errors="replace"`` substitutes U+FFFD.
    """
    check(errors in ("strict", "replace"), f"errors must be 'strict' or 'replace', got {errors!r}")
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[skip:].decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise InputError(
            f"{source}: invalid UTF-8 at byte offset {offset} (line {line}, byte 0x{data[offset]:02X}): "
            f"{e.reason}. Pass errors='replace' to substitute U+FFFD for undecodable bytes."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(
    path: str | os.PathLike[str], errors: Literal["strict", "replace"] = "strict", min_chars: int = 1
) -> str:
    """Read a UTF-8 text file with :func:`decode_text`; a file shorter than ``min_chars`` is an error."""
    path = Path(path)
    data = path.read_bytes()
    text = decode_text(data, str(path), errors)
    if len(text) < min_chars:
        what = "is empty" if not text else f"is too short: {len(text)} characters, need at least {min_chars}"
        raise InputError(f"{path} {what} (file size {len(data)} bytes)")
    return text


# -- tokenisers ------------------------------------------------------------------------------------------


class CharTokenizer:
    """One token per character. Ids follow the order of ``chars`` (sorted by code point from :meth:`fit`).

    Strict by default: encoding a character outside the vocabulary raises :class:`InputError` naming
    the character, its code point and where it occurs. With ``allow_unknown=True`` id 0 is ``<unk>``,
    unknown characters encode to it, and it decodes to U+FFFD (one character, so decoded text keeps
    one character per id).
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], allow_unknown: bool = False) -> None:
        chars = list(chars)
        for c in chars:
            check(isinstance(c, str) and len(c) == 1, f"a character token must be one character, got {c!r}")
        check(len(set(chars)) == len(chars), "character tokens must be distinct")
        check(allow_unknown or len(chars) > 0, "a strict CharTokenizer needs at least one character")
        self.allow_unknown = bool(allow_unknown)
        self.chars = chars
        self.tokens = [UNK, *chars] if allow_unknown else chars  # id -> token
        offset = 1 if allow_unknown else 0
        # Sorted code points and their ids: encoding is one vectorised searchsorted, not a Python loop.
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(codes, kind="stable")
        self._codes = codes[order]  # (V_chars,)
        self._ids = order + offset  # (V_chars,)
        self._display = ["\ufffd", *chars] if allow_unknown else chars

    @classmethod
    def fit(cls, text: str, allow_unknown: bool = False) -> CharTokenizer:
        """The vocabulary of the distinct characters of ``text``, sorted by code point."""
        return cls(sorted(set(text)), allow_unknown)

    @property
    def unk_id(self) -> int | None:
        return 0 if self.allow_unknown else None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, source: str = "<text>") -> Tensor:
        """``text`` -> ids ``(len(text),)`` int64. ``source`` names the text in error messages."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
        pos = np.searchsorted(self._codes, codes).clip(max=max(len(self._codes) - 1, 0))  # (N,)
        if len(self._codes):
            known = self._codes[pos] == codes
            ids = self._ids[pos]
        else:
            known = np.zeros(len(codes), dtype=bool)
            ids = np.zeros(len(codes), dtype=np.int64)
        if not known.all():
            if not self.allow_unknown:
                raise InputError(self._unknown_message(text, known, source))
            ids = np.where(known, ids, 0)
        return torch.from_numpy(ids)

    def _unknown_message(self, text: str, known: np.ndarray, source: str) -> str:
        i = int(np.flatnonzero(~known)[0])
        ch = text[i]
        line = text.count("\n", 0, i) + 1
        column = i - (text.rfind("\n", 0, i) + 1) + 1
        unknown = Counter(text[j] for j in np.flatnonzero(~known).tolist())
        others = ", ".join(f"{c!r} (U+{ord(c):04X}) x{n}" for c, n in unknown.most_common(6) if c != ch)
        return (
            f"character {ch!r} (U+{ord(ch):04X}) at line {line}, column {column} (character offset {i}) "
            f"of {source} is not in the vocabulary of {len(self.chars)} characters"
            + (f"; other unknown characters: {others}" if others else "")
            + ". Fit the tokenizer on text that contains it, or use allow_unknown=True to map it to <unk>."
        )

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Ids ``(N,)`` -> text of N characters."""
        return "".join(self._display[i] for i in _id_list(ids, len(self)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (goes into a run directory); :func:`tokenizer_from_dict` reverses it."""
        return {"kind": self.kind, "tokens": list(self.tokens), "allow_unknown": self.allow_unknown}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={len(self)}, allow_unknown={self.allow_unknown})"


class WordTokenizer:
    """Words and punctuation, each token carrying the single space before it (GPT-2's convention).

    ``"Speak, speak."`` -> ``["Speak", ",", " speak", "."]``; a newline and any other whitespace
    character is a token of its own. Decoding is concatenation, so ``decode(encode(text)) == text``
    whenever every token is in the vocabulary. Tokens outside it (rarer than ``max_size`` allows)
    encode to ``" <unk>"`` (id 1) when they start with a space, else to ``"<unk>"`` (id 0), so decoded
    text keeps its spacing: ``"Good morrow, <unk> <unk>."``.
    """

    kind = "word"
    unk_id = 0  # "<unk>"; " <unk>" is unk_id + 1
    pattern = re.compile(r" ?\w+(?:'\w+)*| ?[^\w\s]|\s")

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        check(tokens[:2] == [UNK, " " + UNK], f"the first two word tokens must be {UNK!r} and {' ' + UNK!r}")
        check(len(set(tokens)) == len(tokens), "word tokens must be distinct")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def split(cls, text: str) -> list[str]:
        """The tokens of ``text`` before vocabulary lookup; ``"".join(split(text)) == text``."""
        return cls.pattern.findall(text)

    @classmethod
    def fit(cls, text: str, max_size: int | None = None, min_count: int = 1) -> WordTokenizer:
        """The tokens of ``text`` seen at least ``min_count`` times, most frequent first (ties by
        string), at most ``max_size`` including the two ``<unk>`` tokens."""
        check_int("min_count", min_count)
        if max_size is not None:
            check_int("max_size", max_size, minimum=3)
        counts = Counter(cls.split(text))
        ranked = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - 2]
        return cls([UNK, " " + UNK, *ranked])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, source: str = "<text>") -> Tensor:
        """``text`` -> ids ``(N_tokens,)`` int64; unknown tokens -> ``" <unk>"`` (1) or ``"<unk>"`` (0).
        ``source`` is accepted for symmetry with :meth:`CharTokenizer.encode` (nothing here can fail)."""
        ids = [self._ids.get(t, 1 if t[0] == " " else 0) for t in self.split(text)]
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Ids ``(N_tokens,)`` -> text."""
        return "".join(self.tokens[i] for i in _id_list(ids, len(self)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (goes into a run directory); :func:`tokenizer_from_dict` reverses it."""
        return {"kind": self.kind, "tokens": list(self.tokens)}

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={len(self)})"


Tokenizer = CharTokenizer | WordTokenizer


def _id_list(ids: Tensor | Sequence[int], vocab_size: int) -> list[int]:
    try:
        ids = [operator.index(i) for i in (ids.tolist() if isinstance(ids, Tensor) else ids)]
    except TypeError:
        raise InputError("ids must be a 1-D tensor or sequence of integers") from None
    bad = next((i for i in ids if not 0 <= i < vocab_size), None)
    check(bad is None, f"token id {bad} out of range for a vocabulary of size {vocab_size}")
    return ids


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`CharTokenizer.to_dict` / :meth:`WordTokenizer.to_dict`."""
    check(isinstance(d, dict) and "kind" in d and "tokens" in d, "a tokenizer dict needs 'kind' and 'tokens'")
    if d["kind"] == "char":
        allow_unknown = bool(d.get("allow_unknown", False))
        tokens = d["tokens"]
        if allow_unknown:
            check(tokens[:1] == [UNK], f"a char tokenizer with allow_unknown has {UNK!r} first")
            tokens = tokens[1:]
        return CharTokenizer(tokens, allow_unknown)
    if d["kind"] == "word":
        return WordTokenizer(d["tokens"])
    raise InputError(f"unknown tokenizer kind {d['kind']!r}; expected 'char' or 'word'")


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike[str]) -> None:
    """Write ``tokenizer.to_dict()`` as JSON (UTF-8)."""
    Path(path).write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a tokenizer written by :func:`save_tokenizer`."""
    return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# -- batches ---------------------------------------------------------------------------------------------


class TBPTTStream:
    """B parallel contiguous streams over one corpus, cut into chunks for truncated BPTT.

    The corpus ``(N,)`` is trimmed to ``n = N // B`` tokens per stream; stream ``b`` is
    ``ids[b*n : (b+1)*n]``. Chunk ``k`` covers steps ``kT .. kT+T-1`` of every stream::

        input  = data[kT     : kT+T]      # (T, B)
        target = data[kT + 1 : kT+T+1]    # (T, B), input shifted by one step

    so column ``b`` of chunk ``k+1`` continues exactly where chunk ``k`` ended, and the hidden state
    after chunk ``k`` is the right initial state for chunk ``k+1`` (detach it between chunks).
    The last chunk is shorter (``T' < T`` steps) when ``n - 1`` is not a multiple of T.

    Iterating yields chunks from :attr:`position` (the index of the next chunk to hand out) to the
    end, then resets it to 0 and counts an :attr:`epoch`. ``state_dict()`` / ``load_state_dict()``
    save and resume that position as plain ints.
    """

    def __init__(self, token_ids: Tensor, batch_size: int, seq_len: int) -> None:
        check(isinstance(token_ids, Tensor), f"token_ids must be a Tensor, got {type(token_ids).__name__}")
        check(token_ids.dim() == 1, f"token_ids must be 1-D (N,), got shape {tuple(token_ids.shape)}")
        check(
            not token_ids.is_floating_point() and not token_ids.is_complex(),
            f"token_ids must be an integer tensor, got {token_ids.dtype}",
        )
        self.batch_size = check_int("batch_size", batch_size)
        self.seq_len = check_int("seq_len", seq_len)
        self.num_tokens = token_ids.numel()
        n = self.num_tokens // self.batch_size
        check(
            n >= 2,
            f"corpus of {self.num_tokens} tokens is too short for batch_size={self.batch_size}: each stream "
            f"needs at least 2 tokens (one input and its target), so at least {2 * self.batch_size} tokens",
        )
        self.data = token_ids[: n * self.batch_size].reshape(self.batch_size, n).t().contiguous()  # (n, B)
        self.position = 0
        self.epoch = 0

    def __len__(self) -> int:
        """Chunks per epoch: ceil((n - 1) / T)."""
        return math.ceil((self.data.shape[0] - 1) / self.seq_len)

    def __getitem__(self, k: int) -> tuple[Tensor, Tensor]:
        """Chunk ``k`` as ``(input, target)``, each ``(T, B)`` (``T' <= T`` for the last chunk)."""
        check(0 <= k < len(self), f"chunk index {k} out of range for a stream of {len(self)} chunks")
        start = k * self.seq_len
        steps = min(self.seq_len, self.data.shape[0] - 1 - start)
        return self.data[start : start + steps], self.data[start + 1 : start + 1 + steps]  # (T, B) x 2

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while self.position < len(self):
            chunk = self[self.position]
            self.position += 1
            yield chunk
        self.position = 0
        self.epoch += 1

    def state_dict(self) -> dict[str, int]:
        """Position and epoch, with the shape they refer to (checked on load)."""
        return {
            "position": self.position,
            "epoch": self.epoch,
            "num_tokens": self.num_tokens,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at ``state["position"]``; the stream must have the same corpus size, B and T."""
        for key in ("num_tokens", "batch_size", "seq_len"):
            if key in state:
                check(
                    state[key] == getattr(self, key),
                    f"stream state is for {key}={state[key]}, but this stream has {key}={getattr(self, key)}",
                )
        check("position" in state, "stream state has no 'position'")
        position = check_int("position", state["position"], minimum=0)
        check(position <= len(self), f"position {position} out of range for a stream of {len(self)} chunks")
        self.position = position
        self.epoch = check_int("epoch", state.get("epoch", 0), minimum=0)

    def __repr__(self) -> str:
        return (
            f"TBPTTStream(num_tokens={self.num_tokens}, batch_size={self.batch_size}, "
            f"seq_len={self.seq_len}, chunks={len(self)}, position={self.position})"
        )


def pad_batch(sequences: Sequence[Tensor], padding_value: int | float = 0) -> tuple[Tensor, Tensor]:
    """Stack variable-length sequences time-first, padded at the end.

    Arguments:
        sequences: B tensors of shape ``(L_b, *)`` with the same dtype, device and trailing shape.
        padding_value: the value written past each sequence's end.

    Returns:
        ``padded`` of shape ``(T, B, *)`` with ``T = max(L_b)``, and ``lengths`` ``(B,)`` int64 on the
        CPU (as :func:`torch.nn.utils.rnn.pack_padded_sequence` wants).
    """
    check(len(sequences) > 0, "pad_batch needs at least one sequence")
    first = sequences[0]
    for b, s in enumerate(sequences):
        check(isinstance(s, Tensor) and s.dim() >= 1, f"sequence {b} must be a tensor of shape (L, *)")
        check(
            s.dtype == first.dtype and s.device == first.device and s.shape[1:] == first.shape[1:],
            f"sequence {b} has dtype {s.dtype}, device {s.device}, trailing shape {tuple(s.shape[1:])}; "
            f"expected {first.dtype}, {first.device}, {tuple(first.shape[1:])} as sequence 0",
        )
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.int64)  # (B,)
    T = int(lengths.max())
    padded = first.new_full((T, len(sequences), *first.shape[1:]), padding_value)  # (T, B, *)
    for b, s in enumerate(sequences):
        padded[: s.shape[0], b] = s
    return padded, lengths
