"""Deprecated: moved to :mod:`rnnkit.data.synthetic`."""

from .._deprecated import moved

moved(__name__, "rnnkit.data.synthetic")
