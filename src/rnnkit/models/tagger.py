"""Deprecated: moved to :mod:`rnnkit.apps.tag.model`."""

from .._deprecated import moved

moved(__name__, "rnnkit.apps.tag.model")
