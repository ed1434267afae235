"""Deprecated: moved to :mod:`rnnkit.apps.lm.model`."""

from .._deprecated import moved

moved(__name__, "rnnkit.apps.lm.model")
