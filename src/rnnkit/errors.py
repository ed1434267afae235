"""Errors raised for bad input.

``torch.nn`` raises ``RuntimeError`` for some input problems and ``ValueError`` for others. rnnkit's
drop-ins must be catchable the same way, so ``InputError`` is both: code written against torch
(``except RuntimeError``) and code written against rnnkit (``except InputError``) both work.
"""

from __future__ import annotations

import numbers


class InputError(ValueError, RuntimeError):
    """An argument has the wrong shape, dtype, size or value. The message names what was expected."""


def check(condition: bool, message: str) -> None:
    """Raise ``InputError(message)`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)


# -- constructor arguments, in torch's wording -------------------------------------------------------


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """An integer argument (any integral type but bool) that must be >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(
            f"{name} must be greater than zero, got {value}"
            if minimum == 1
            else f"{name} must be >= {minimum}, got {value}"
        )
    return int(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return value


def check_probability(name: str, value: object) -> float:
    """A probability in [0, 1] (any real type but bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(
            f"{name} should be a number in range [0, 1] representing the probability of an "
            f"element being zeroed, got {value!r}"
        )
    return float(value)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss or gradient stayed non-finite); the message says where."""


class OptionError(ValueError):
    """A command-line flag's value is out of range (``--hidden 0``): ``rnnkit: error: ...``, exit 2."""
