"""The older keyword form of presets and overrides (dicts routed to configs by field name). The CLI passes
typed configs (:mod:`rnnkit.configs`); these stay for the Python functions that return dicts."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from .errors import InputError


def field_names(config: type) -> set[str]:
    """The field names of a dataclass type."""
    if not is_dataclass(config):
        raise TypeError(f"expected a dataclass type, got {config!r}")
    return {f.name for f in fields(config)}


def route(
    overrides: Mapping[str, Any], *targets: tuple[dict[str, Any], Collection[str]], what: str = ""
) -> None:
    """Put each non-None override into the first target whose field names hold its key.

    ``targets`` are ``(options dict, field names)`` pairs, e.g. the model's and the training's; an
    override that fits none of them is an :class:`~rnnkit.errors.InputError` naming it.
    """
    for key, value in overrides.items():
        if value is None:
            continue
        for options, names in targets:
            if key in names:
                options[key] = value
                break
        else:
            raise InputError(f"unknown option {key!r}{' for ' + what if what else ''}")


def options_of(config: Any) -> dict[str, Any]:
    """A preset's fields as a dict (the older keyword form), without the fields the data decides or the
    command line leaves alone (``cli=False``: a vocabulary size), so ``Config(vocab_size=V, **options)``
    works as it always did."""
    return {f.name: getattr(config, f.name) for f in fields(config) if f.metadata.get("cli", True)}
