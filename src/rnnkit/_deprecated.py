"""Old import paths kept for one release: the module at the old path *is* the new one, with a warning."""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    """Make ``import old`` give the module ``new`` (the same object, so patching one patches both)."""
    warnings.warn(f"{old} moved to {new}; the old path goes away in the next release", DeprecationWarning,
                  stacklevel=3)  # fmt: skip
    sys.modules[old] = importlib.import_module(new)
