"""Models built from rnnkit layers."""

from .language_model import LanguageModel, LMConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig

__all__ = ["LMConfig", "LanguageModel", "Seq2Seq", "Seq2SeqConfig"]
