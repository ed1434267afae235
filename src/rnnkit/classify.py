"""Deprecated: moved to :mod:`rnnkit.apps.classify`."""

from ._deprecated import moved

moved(__name__, "rnnkit.apps.classify")
