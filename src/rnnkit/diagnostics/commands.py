"""Deprecated: moved to :mod:`rnnkit.commands.diagnose` (the command sits above the applications it loads)."""

from .._deprecated import moved

moved(__name__, "rnnkit.commands.diagnose")
