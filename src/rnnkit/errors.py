"""Errors raised for bad input.

``torch.nn`` raises ``RuntimeError`` for some input problems and ``ValueError`` for others. rnnkit's
drop-ins must be catchable the same way, so ``InputError`` is both: code written against torch
(``except RuntimeError``) and code written against rnnkit (``except InputError``) both work.
"""

from __future__ import annotations


class InputError(ValueError, RuntimeError):
    """An argument has the wrong shape, dtype, size or value. The message names what was expected."""


def check(condition: bool, message: str) -> None:
    """Raise ``InputError(message)`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)
