"""Deprecated: moved to :mod:`rnnkit.apps.classify.model`."""

from .._deprecated import moved

moved(__name__, "rnnkit.apps.classify.model")
