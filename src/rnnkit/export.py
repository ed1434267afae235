"""Deprecated: moved to :mod:`rnnkit.apps.lm.export`."""

from ._deprecated import moved

moved(__name__, "rnnkit.apps.lm.export")
