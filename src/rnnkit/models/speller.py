"""Deprecated: moved to :mod:`rnnkit.apps.spell.model`."""

from .._deprecated import moved

moved(__name__, "rnnkit.apps.spell.model")
