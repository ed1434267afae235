"""Typed configs that are also command lines: a dataclass field declares its flag and help once.

A config is a dataclass whose fields are made with :func:`option`; :func:`add_options` turns the
fields into argparse flags, and :func:`override` applies what the user typed to a preset with
``dataclasses.replace``. A flag that is not given leaves no trace (``argparse.SUPPRESS``), so a preset's
value stays and ``None`` can be a real value (``--clip-norm 0`` sets ``clip_norm=None``).

Torch-free on purpose: ``rnnkit --help`` builds every parser without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from .errors import OptionError

C = TypeVar("C")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    type: Callable[[str], Any] | None = None,
    choices: Collection[Any] | Callable[[], Collection[Any]] | None = None,
    minimum: int | None = None,
    action: str | None = None,
    metavar: str | None = None,
    cli: bool = True,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its command-line flag.

    Arguments:
        default, default_factory: as for :func:`dataclasses.field`.
        help: the one help text (also the field's documentation).
        flag: the flag, when it is not ``--`` + the field name with dashes (e.g. ``--batch``).
        type: converts the typed text (default: the default's type: int, float or str).
        choices: the allowed values, or a function returning them (called only when needed, so a
            registry that imports torch is not imported by ``--help`` of another command).
        minimum: the flag's smallest value (``--hidden must be >= 1``).
        action: ``"store_true"``, ``"store_false"`` or ``"optional"`` (``--x/--no-x``) for booleans.
        cli: False for fields the command derives (e.g. the vocabulary size).
    """
    metadata = {"help": help, "flag": flag, "type": type, "choices": choices, "minimum": minimum,
                "action": action, "metavar": metavar, "cli": cli}  # fmt: skip
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Lazy(Collection[Any]):
    """Choices computed on first use (``in``, iteration), e.g. the cell registry's names."""

    def __init__(self, get: Callable[[], Iterable[Any]]) -> None:
        self._get, self._values = get, None

    def _all(self) -> tuple[Any, ...]:
        if self._values is None:
            self._values = tuple(self._get())
        return self._values

    def __contains__(self, value: object) -> bool:
        return value in self._all()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class _AtLeast(argparse.Action):
    """Store the value; below ``minimum`` raise :class:`OptionError` (not argparse's exit)."""

    def __init__(self, *args: Any, minimum: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.minimum = minimum

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        if values is not None and values < self.minimum:
            raise OptionError(f"{option_string or self.dest} must be >= {self.minimum}")
        setattr(namespace, self.dest, values)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_flag(parser: Any, f: dataclasses.Field, base: Any = None, help: str | None = None) -> None:
    """Add the flag of field ``f``; its help ends with ``base``'s value of the field (the preset's)."""
    m = f.metadata
    text = m.get("help", "") if help is None else help
    default = getattr(base, f.name) if base is not None else None  # a preset's value, not the class's
    shown = default is not None and m["action"] is None
    if shown and "default" not in text:
        text += f" (default {default})"
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
    action = m.get("action")
    if action == "optional":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif action:
        kwargs["action"] = action
    else:
        kwargs["type"] = m.get("type") or _type_of(f)
        choices = m.get("choices")
        if choices is not None:
            kwargs["choices"] = Lazy(choices) if callable(choices) else choices
            if callable(choices):  # argparse would list them (and import what makes them) for the usage line
                kwargs["metavar"] = f.name.upper()
        if m.get("metavar"):
            kwargs["metavar"] = m["metavar"]
        if m.get("flag") and "metavar" not in kwargs:  # --batch N, not --batch BATCH_SIZE
            kwargs["metavar"] = m["flag"].lstrip("-").upper().replace("-", "_")
        if m.get("minimum") is not None:
            kwargs["action"], kwargs["minimum"] = _AtLeast, m["minimum"]
    parser.add_argument(flag_of(f), **kwargs)


def add_options(
    parser: Any, config: type, base: Any = None, *, only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> None:  # fmt: skip
    """A flag for every command-line field of the dataclass ``config`` (or those in ``only``, in that
    order), help ending with ``base``'s values."""
    by_name = {f.name: f for f in dataclasses.fields(config)}
    names = list(only) if only is not None else [n for n, f in by_name.items() if f.metadata.get("cli")]
    for name in names:
        if name not in skip:
            add_flag(parser, by_name[name], base)


def given(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The fields of ``config`` the user typed a flag for."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(config) if hasattr(args, f.name)}


def override(base: C, args: argparse.Namespace) -> C:
    """``base`` (a preset) with every field the user gave a flag for replaced."""
    return dataclasses.replace(base, **given(args, type(base)))  # type: ignore[type-var]


def off_if_zero(text: str) -> float | None:
    """A float flag where 0 means "off" (None), e.g. ``--clip-norm 0``."""
    value = float(text)
    return None if value == 0 else value


def _type_of(f: dataclasses.Field) -> Callable[[str], Any]:
    default = f.default
    if isinstance(default, bool) or default is dataclasses.MISSING or default is None:
        hint = str(f.type)
        return int if hint.startswith("int") else float if hint.startswith("float") else str
    return type(default)


def as_config(config: type[C], value: C | Mapping[str, Any], **derived: Any) -> C:
    """``value`` as a ``config``: a config as it is, or a dict of its fields (the older keyword form);
    then the ``derived`` fields (what the data decides, e.g. the vocabulary size) set on it."""
    if isinstance(value, config):
        return dataclasses.replace(value, **derived) if derived else value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a {config.__name__} or a dict of its fields, got {type(value).__name__}")
    return config(**{**value, **derived})


def cell_names() -> tuple[str, ...]:
    """The cell registry's names, for a ``cell`` field's choices (imports torch: call it lazily)."""
    from .cells import registry

    return registry.names()
