"""Models built from rnnkit layers."""

from .classifier import ClassifierConfig, MLPClassifier, SequenceClassifier, build_classifier
from .language_model import LanguageModel, LMConfig

__all__ = [
    "ClassifierConfig",
    "LMConfig",
    "LanguageModel",
    "MLPClassifier",
    "SequenceClassifier",
    "build_classifier",
]
