"""Non-neural baselines the RNNs are measured against."""

from .ngram import KneserNeyLM

__all__ = ["KneserNeyLM"]
