"""What a run directory is: its kind (which ``rnnkit train`` command made it), and whether a command that
reads one (its ``needs_run``, :mod:`rnnkit.commands.boundary`) got the right kind.

Kinds, told apart by the files each application writes beside ``config.json``::

    classes.json                     classifier       rnnkit train classify
    vocab.json                       seq2seq          rnnkit train seq2seq
    tokenizer.json + data.json task  tagger           rnnkit train tag
    tokenizer.json                   language-model   rnnkit train lm
    config.json, model.alphabet      speller          rnnkit train spell
    config.json, no model config     synthetic-task   rnnkit train synthetic
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..training.rundir import check_json_files, read_json

KINDS = {
    "language-model": "rnnkit train lm",
    "classifier": "rnnkit train classify",
    "tagger": "rnnkit train tag",
    "seq2seq": "rnnkit train seq2seq",
    "speller": "rnnkit train spell",
    "synthetic-task": "rnnkit train synthetic",
}
ARTICLE = {"language-model": "a language-model", "classifier": "a classifier", "tagger": "a tagger",
           "seq2seq": "a seq2seq", "speller": "a speller", "synthetic-task": "a synthetic-task"}  # fmt: skip


def run_kind(run_dir: str | os.PathLike[str]) -> str | None:
    """The kind of run in ``run_dir`` (a key of :data:`KINDS`), or None when it holds no ``config.json``."""
    d = Path(run_dir)
    if not (d / "config.json").is_file():
        return None
    if (d / "classes.json").is_file():
        return "classifier"
    if (d / "vocab.json").is_file():
        return "seq2seq"
    if (d / "tokenizer.json").is_file():
        data = read_json(d / "data.json") if (d / "data.json").is_file() else {}
        return "tagger" if isinstance(data, dict) and data.get("task") == "case" else "language-model"
    config = read_json(d / "config.json")
    model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict) and "alphabet" in model:
        return "speller"
    return "synthetic-task" if model is None else None


def require_kind(run_dir: str | os.PathLike[str], kind: str, command: str) -> None:
    """Refuse a run directory that does not exist, is not a run, or is a run of another kind.

    The message names the directory, what it is, and what ``command`` needs, e.g. "runs/cls is a classifier
    run; `generate` needs a language-model run (made by `rnnkit train lm`)".
    """
    d = Path(run_dir)
    needs = f"`{command}` needs {ARTICLE[kind]} run (made by `{KINDS[kind]}`)"
    if not d.exists():
        raise InputError(f"{d}: not a run directory (no such folder); {needs}")
    if not d.is_dir():
        raise InputError(f"{d}: not a run directory (a file); {needs}")
    check_json_files(d)
    found = run_kind(d)
    if found is None:
        raise InputError(f"{d}: not a run directory (no config.json); {needs}")
    if found != kind:
        raise InputError(f"{d} is {ARTICLE[found]} run; {needs}")
    check_model_config(d, kind)


# kind -> (module, class) of the model's config dataclass, as saved in config.json's "model"
MODEL_CONFIGS = {
    "language-model": ("rnnkit.apps.lm.config", "LMConfig"),
    "classifier": ("rnnkit.apps.classify.config", "ClassifierConfig"),
    "tagger": ("rnnkit.apps.tag.config", "TaggerConfig"),
    "seq2seq": ("rnnkit.apps.seq2seq.config", "Seq2SeqConfig"),
    "speller": ("rnnkit.apps.spell.config", "SpellerConfig"),
}


def check_model_config(run_dir: str | os.PathLike[str], kind: str) -> None:
    """The saved model settings build the model's config (an edited or foreign config.json is named)."""
    import importlib

    if kind not in MODEL_CONFIGS:
        return
    path = Path(run_dir) / "config.json"
    module, name = MODEL_CONFIGS[kind]
    classes = Path(run_dir) / "classes.json"
    if kind == "classifier" and classes.is_file() and read_json(classes).get("kind") == "text":
        name = "TextClassifierConfig"  # a classifier of texts (apps/classify/text.py) saves its own config
    model = read_json(path).get("model")
    if not isinstance(model, dict):
        raise InputError(f"{path}: 'model' must be an object of {name} settings, got {type(model).__name__}")
    try:
        getattr(importlib.import_module(module), name)(**model)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: the model settings do not make a {name}: {e}") from None
