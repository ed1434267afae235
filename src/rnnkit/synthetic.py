"""Deprecated: moved to :mod:`rnnkit.apps.synthetic`."""

from ._deprecated import moved

moved(__name__, "rnnkit.apps.synthetic")
