"""Tagging every step, end to end: restoring letter case in Shakespeare (many-to-many, aligned).

``rnnkit train tag`` is a thin shell over :func:`train_case_tagger`; ``rnnkit tag`` over
:func:`restore_case`. The task: the input is the text lowercased, and the model labels each character
upper or lower. Scores are per-character accuracy (over all characters and over letters) and precision,
recall and F1 of the uppercase class, next to the rule baseline of :func:`rnnkit.data.casing.rule_baseline`
on the same validation works.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ...configs import as_config
from ...data import CharTokenizer, load_dataset, load_tokenizer, save_tokenizer
from ...data.casing import case_targets, letter_mask, rule_baseline, tag_scores
from ...errors import InputError
from ...options import field_names, options_of, route
from ...training import distributed
from ...training.checkpoint import atomic_write, load_weights
from ...training.config import TrainConfig
from ...training.rundir import check_fresh
from ...training.trainer import fit
from .config import MODEL, TRAIN, TaggerConfig
from .model import SequenceTagger
from .task import TagTask, predict_tags

PRESET = (MODEL, TRAIN)  # the preset: the model and how to train it (see config.py)


def train_case_tagger(
    data: str,
    out: str | os.PathLike[str],
    model_options: TaggerConfig | dict[str, Any],
    train_options: TrainConfig | dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a case-restoring tagger on a named dataset or a path; returns validation scores of the model
    and of the rule baseline."""
    run_dir = Path(out)
    splits = load_dataset(data)
    train_lower, train_tags = case_targets(splits.train)
    valid_lower, valid_tags = case_targets(splits.valid)
    if resume:
        tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    else:
        tokenizer = CharTokenizer.fit(train_lower, allow_unknown=True)
        check_fresh(run_dir)
        if distributed.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            save_tokenizer(tokenizer, run_dir / "tokenizer.json")
            atomic_write(run_dir / "data.json", (json.dumps({"data": data, "task": "case"}) + "\n").encode())
    config = as_config(TrainConfig, train_options)
    model = SequenceTagger(
        as_config(TaggerConfig, model_options, vocab_size=tokenizer.vocab_size, num_tags=2)
    )
    valid_ids = tokenizer.encode(valid_lower, source=f"{data} (valid)")
    task = TagTask(
        (tokenizer.encode(train_lower, source=f"{data} (train)"), train_tags),
        (valid_ids, valid_tags, letter_mask(valid_lower)),
        config.batch_size, config.seq_len, config.seed, torch.device("cpu"),
    )  # fmt: skip
    report = fit(model, task, config, run_dir, resume=resume, progress=progress)
    # the final model's scores (fit validated it last), and the rule's on the same text
    scores = task.evaluate(model)
    baseline = tag_scores(rule_baseline(valid_lower), valid_tags, letter_mask(valid_lower))
    return {
        **{k: v for k, v in report.items() if k != "valid_loss"},
        **scores,
        "baseline": baseline,
        "bidirectional": model.config.bidirectional,
        "parameters": sum(p.numel() for p in model.parameters()),
        "valid_characters": len(valid_lower),
    }


CaseTask = TagTask  # its old name


def load_tagger(run_dir: str | os.PathLike[str], which: str = "best") -> tuple[SequenceTagger, Any]:
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise InputError(
            f"{run_dir}: not a run directory (no config.json); train one with `rnnkit train tag`"
        )
    saved = json.loads(path.read_text())
    try:
        model = SequenceTagger(TaggerConfig(**saved["model"]))
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: not a tagger's run directory ({type(e).__name__}: {e})") from None
    load_weights(model, run_dir, which)
    return model, load_tokenizer(run_dir / "tokenizer.json")


def restore_case(run_dir: str | os.PathLike[str], text: str, which: str = "best") -> str:
    """``text`` with the case the tagger predicts (the input's own case is ignored)."""
    if not isinstance(text, str):
        raise InputError(f"text must be a str, got {type(text).__name__}")
    model, tokenizer = load_tagger(run_dir, which)
    lower, _ = case_targets(text)
    if not lower:
        return ""
    tags, _ = predict_tags(model, tokenizer.encode(lower, source="the text"), torch.device("cpu"))
    return "".join(c.upper() if t else c for c, t in zip(lower, tags.tolist(), strict=True))


def options(**overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The preset's model and training options as dicts, with every non-None override applied (the
    older keyword form; the CLI passes the configs themselves)."""
    model_opts, train_opts = options_of(MODEL), options_of(TRAIN)
    route(overrides, (model_opts, field_names(TaggerConfig)), (train_opts, field_names(TrainConfig)))
    return model_opts, train_opts
