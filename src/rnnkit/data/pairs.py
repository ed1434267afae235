"""Sequence pairs for sequence to sequence: vocabularies, padded batches, and two generated tasks.

    numbers:   "three hundred and forty-two" -> "trois cent quarante-deux"   (num2words; words)
    addition:  "123+45" -> "168"                                    (Keras' addition_rnn; characters)

Each task draws distinct problems and splits them into train / valid / test sets that share none, so the
held-out scores are on inputs the model never saw.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import InputError, check, check_int

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIALS = (PAD, BOS, EOS)  # ids 0, 1, 2 (as rnnkit.models.seq2seq's PAD, BOS, EOS)

# a word with the space or hyphen before it, or a comma: the pieces join back into the exact text
_WORD = re.compile(r"[ -]?[^ ,-]+|,")


class SeqVocab:
    """Tokens <-> ids for one side of a pair: ids 0, 1, 2 are ``<pad>``, ``<s>``, ``</s>``.

    ``kind="char"``: one token per character. ``kind="word"``: a word with the one space or hyphen
    before it (``"quatre-vingt-dix"`` -> ``"quatre", "-vingt", "-dix"``), or a comma; the tokens joined
    give back the text exactly. Strict: a token outside the vocabulary is an :class:`InputError`.
    """

    def __init__(self, kind: str, tokens: Sequence[str]) -> None:
        check(kind in ("char", "word"), f"kind must be 'char' or 'word', got {kind!r}")
        tokens = list(tokens)
        check(not set(tokens) & set(SPECIALS), f"tokens must not include the special tokens {SPECIALS}")
        check(len(set(tokens)) == len(tokens), "tokens must be distinct")
        self.kind = kind
        self.tokens = [*SPECIALS, *tokens]  # id -> token
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def fit(cls, kind: str, texts: Sequence[str]) -> SeqVocab:
        """The distinct tokens of ``texts``, sorted."""
        return cls(kind, sorted({t for text in texts for t in split(kind, text)}))

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        return split(self.kind, text)

    def encode(self, text: str, source: str = "the input") -> list[int]:
        """``text`` -> ids, without ``<s>`` or ``</s>``; :class:`InputError` names every unknown token."""
        if not isinstance(text, str):
            raise InputError(f"{source} must be a str, got {type(text).__name__}")
        pieces = self.split(text)
        if "".join(pieces) != text:  # the word pattern drops what it cannot place (e.g. extra spaces)
            raise InputError(
                f"{source} {text!r} is not written as the training data is: {self._describe()}; it "
                f"tokenises to {''.join(pieces)!r}"
            )
        unknown = [p for p in pieces if p not in self.ids or p in SPECIALS]
        if unknown:
            what = "character" if self.kind == "char" else "word"
            listed = ", ".join(dict.fromkeys(repr(p) for p in unknown))
            raise InputError(
                f"{source} {text!r} has {what}s that are not in the vocabulary: {listed}; expected "
                f"{self._describe()}"
            )
        if not pieces:
            raise InputError(f"{source} is empty: expected at least one {self.kind}")
        return [self.ids[p] for p in pieces]

    def _describe(self) -> str:
        known = self.tokens[len(SPECIALS) :]
        shown = " ".join(repr(t) for t in known[:40]) + (" ..." if len(known) > 40 else "")
        return f"{self.kind}s from a vocabulary of {len(known)}: {shown}"

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids -> text; stops at ``</s>`` and skips ``<pad>`` and ``<s>``."""
        out = []
        for i in ids.tolist() if isinstance(ids, Tensor) else ids:
            if i == 2:
                break
            if i > 2:
                out.append(self.tokens[i])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": self.tokens[len(SPECIALS) :]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeqVocab:
        return cls(d["kind"], d["tokens"])

    def __repr__(self) -> str:
        return f"SeqVocab(kind={self.kind!r}, vocab_size={self.vocab_size})"


def split(kind: str, text: str) -> list[str]:
    return list(text) if kind == "char" else _WORD.findall(text)


# -- batches ---------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """A padded batch, time-first.

    src: (S, B) source ids padded with 0; lengths: (B,) their true lengths; tgt: (T + 2, B) ``<s>``,
    the target, ``</s>``, padded with 0 (the decoder reads ``tgt[:-1]`` and predicts ``tgt[1:]``).
    """

    src: Tensor
    lengths: Tensor
    tgt: Tensor


def make_batch(pairs: Sequence[tuple[list[int], list[int]]]) -> Batch:
    """Pad encoded (source, target) pairs into a :class:`Batch`."""
    check(len(pairs) > 0, "a batch needs at least one pair")
    lengths = torch.tensor([len(s) for s, _ in pairs])  # (B,)
    src = torch.zeros(int(lengths.max()), len(pairs), dtype=torch.long)  # (S, B)
    tgt = torch.zeros(max(len(t) for _, t in pairs) + 2, len(pairs), dtype=torch.long)  # (T + 2, B)
    for b, (s, t) in enumerate(pairs):
        src[: len(s), b] = torch.tensor(s)
        tgt[: len(t) + 2, b] = torch.tensor([1, *t, 2])
    return Batch(src, lengths, tgt)


# -- the tasks -------------------------------------------------------------------------------------------


@dataclass
class PairSplits:
    """Train / valid / test text pairs (disjoint sources) and the vocabularies fitted on them."""

    train: list[tuple[str, str]]
    valid: list[tuple[str, str]]
    test: list[tuple[str, str]]
    src_vocab: SeqVocab
    tgt_vocab: SeqVocab


def english(n: int) -> str:
    from num2words import num2words

    return str(num2words(n, lang="en"))


def french(n: int) -> str:
    from num2words import num2words

    return str(num2words(n, lang="fr"))


def number_pairs(numbers: Sequence[int]) -> list[tuple[str, str]]:
    """``[(english, french)]`` of each number: ``342 -> ("three hundred and forty-two", "trois cent
    quarante-deux")``."""
    return [(english(n), french(n)) for n in numbers]


def draw_numbers(count: int, max_digits: int, rng: random.Random) -> list[int]:
    """``count`` distinct numbers in [0, 10^max_digits), each drawn by first picking its number of digits
    uniformly (so short numbers are as common as long ones: uniform draws would be almost all long), then
    a number with that many digits. Once the short numbers are used up, longer ones fill in."""
    pools = [(0, 9)] + [(10 ** (d - 1), 10**d - 1) for d in range(2, max_digits + 1)]
    space = sum(hi - lo + 1 for lo, hi in pools)
    if count > space:
        raise InputError(f"cannot draw {count} distinct numbers below 10^{max_digits} ({space} exist)")
    seen: set[int] = set()
    out = []
    while len(out) < count:
        lo, hi = pools[rng.randrange(len(pools))]
        n = rng.randint(lo, hi)
        if n not in seen:
            seen.add(n)
            out.append(n)
    return out


def numbers_task(
    n_train: int = 40000, n_valid: int = 1000, n_test: int = 2000, max_digits: int = 6, seed: int = 0
) -> PairSplits:
    """English number words -> French number words, at the word level, for numbers below 10^max_digits.

    The numbers of the three sets are distinct: the test numbers never occur in training.
    """
    for name, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        check_int(name, value)
    check_int("max_digits", max_digits)
    numbers = draw_numbers(n_train + n_valid + n_test, max_digits, random.Random(seed))
    pairs = number_pairs(numbers)
    return _splits(pairs, n_train, n_valid, "word", "word")


def addition_task(
    n_train: int = 45000, n_valid: int = 1000, n_test: int = 4000, digits: int = 3, seed: int = 0
) -> PairSplits:
    """``"a+b" -> "a+b evaluated"`` with a, b of 1 to ``digits`` digits, at the character level.

    As Keras' addition_rnn example (https://keras.io/examples/nlp/addition_rnn/): each number's length is
    drawn uniformly, then its digits; a question is kept once with its operands in either order (a+b and
    b+a are the same question), so no test question is a reordering of a training one.
    """
    for name, value in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        check_int(name, value)
    check_int("digits", digits)
    rng = random.Random(seed)
    count, seen, pairs = n_train + n_valid + n_test, set(), []
    space = (10**digits) * (10**digits + 1) // 2
    if count > space:
        raise InputError(f"cannot draw {count} distinct {digits}-digit additions ({space} exist)")
    while len(pairs) < count:
        a, b = (int("".join(rng.choice("0123456789") for _ in range(rng.randint(1, digits)))) for _ in "ab")
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            pairs.append((f"{a}+{b}", str(a + b)))
    return _splits(pairs, n_train, n_valid, "char", "char")


def _splits(
    pairs: list[tuple[str, str]], n_train: int, n_valid: int, src_kind: str, tgt_kind: str
) -> PairSplits:
    train, valid, test = pairs[:n_train], pairs[n_train : n_train + n_valid], pairs[n_train + n_valid :]
    # the vocabularies come from everything the task can produce: a test-only word would be a data bug
    src_vocab = SeqVocab.fit(src_kind, [s for s, _ in pairs])
    tgt_vocab = SeqVocab.fit(tgt_kind, [t for _, t in pairs])
    return PairSplits(train, valid, test, src_vocab, tgt_vocab)


def encode_pairs(
    pairs: Sequence[tuple[str, str]], src_vocab: SeqVocab, tgt_vocab: SeqVocab
) -> list[tuple[list[int], list[int]]]:
    return [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in pairs]


TASKS = {"numbers": numbers_task, "addition": addition_task}

__all__ = [
    "TASKS",
    "Batch",
    "PairSplits",
    "SeqVocab",
    "addition_task",
    "draw_numbers",
    "encode_pairs",
    "make_batch",
    "number_pairs",
    "numbers_task",
]
