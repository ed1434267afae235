"""Models built from rnnkit layers."""

from .classifier import ClassifierConfig, MLPClassifier, SequenceClassifier, build_classifier
from .language_model import LanguageModel, LMConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig

__all__ = [
    "ClassifierConfig",
    "LMConfig",
    "LanguageModel",
    "MLPClassifier",
    "Seq2Seq",
    "Seq2SeqConfig",
    "SequenceClassifier",
    "build_classifier",
]
