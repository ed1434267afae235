"""Deprecated: moved to :mod:`rnnkit.apps.seq2seq`."""

from ._deprecated import moved

moved(__name__, "rnnkit.apps.seq2seq")
