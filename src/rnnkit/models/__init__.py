"""Models built from rnnkit layers."""

from .language_model import LanguageModel, LMConfig

__all__ = ["LMConfig", "LanguageModel"]
