"""Deprecated: moved to :mod:`rnnkit.apps.synthetic.model`."""

from .._deprecated import moved

moved(__name__, "rnnkit.apps.synthetic.model")
