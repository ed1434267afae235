"""Language models end to end: data -> tokenizer -> model -> training -> a run directory, and back.

The CLI's ``rnnkit train lm`` and ``rnnkit sample`` are thin shells over these functions.
A run directory holds ``config.json`` (``{"train": ..., "model": ...}``), ``tokenizer.json``,
``metrics.jsonl`` and ``checkpoints/`` (safetensors weights, verified by SHA-256).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...configs import as_config
from ...data import CharTokenizer, WordTokenizer, load_dataset, load_tokenizer, save_tokenizer
from ...errors import InputError
from ...options import field_names, options_of, route
from ...training import distributed
from ...training.checkpoint import atomic_write, load_weights
from ...training.config import TrainConfig
from ...training.results import write_results
from ...training.rundir import check_fresh
from ...training.trainer import fit
from .config import PRESETS, TOKENIZERS, LMConfig
from .model import LanguageModel
from .task import LN2, LMTask, evaluate


@dataclass
class TrainedLM:
    model: LanguageModel
    tokenizer: Any
    run_dir: Path


def train_language_model(
    data: str,
    out: str | os.PathLike[str],
    model_options: LMConfig | dict[str, Any],
    train_options: TrainConfig | dict[str, Any],
    *,
    tokenizer: str | None = None,
    vocab_size: int | None = None,
    reset_on: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a language model on a named dataset or a path; returns the trainer's report.

    ``reset_on``: the text of a token that starts each document (e.g. ``"\f"``); the hidden state
    restarts there (see :class:`~rnnkit.training.trainer.TrainConfig`). ``tokenizer`` is ``"char"``
    (the default) or ``"word"`` (:class:`~rnnkit.data.WordTokenizer`:
    words and punctuation, the ``vocab_size`` most frequent tokens of the training text, the rest
    ``<unk>``). Either is fitted on the training text and saved in the run directory, where
    ``generate`` and ``evaluate`` find it. On ``resume`` the saved one is used; the options, if given,
    must describe it.
    """
    run_dir = Path(out)
    if tokenizer is not None and tokenizer not in TOKENIZERS:
        raise InputError(f"tokenizer must be one of {list(TOKENIZERS)}, got {tokenizer!r}")
    if vocab_size is not None:
        if tokenizer != "word":
            raise InputError(
                f"vocab_size limits a word vocabulary: it needs tokenizer='word', got {tokenizer or 'char'!r}"
            )
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 3:
            raise InputError(
                f"vocab_size must be an integer >= 3 (the two <unk> tokens and at least one word), "
                f"got {vocab_size!r}"
            )
    splits = load_dataset(data)
    if resume:
        tok = load_tokenizer(run_dir / "tokenizer.json")
        if tokenizer is not None and tokenizer != tok.kind:
            raise InputError(f"{run_dir} was trained with the {tok.kind!r} tokenizer, not {tokenizer!r}")
        if vocab_size is not None and tok.vocab_size > vocab_size:
            raise InputError(f"{run_dir} has a vocabulary of {tok.vocab_size} tokens, more than {vocab_size}")
    elif tokenizer == "word":
        # words seen only in validation (or past the size limit) map to <unk>
        tok = WordTokenizer.fit(splits.train, max_size=vocab_size)
    else:
        # the vocabulary comes from the training text; characters seen only in validation map to <unk>
        unseen = set(splits.valid) - set(splits.train)
        tok = CharTokenizer.fit(splits.train, allow_unknown=bool(unseen))
    train_ids = tok.encode(splits.train, source=f"{data} (train)")
    valid_ids = tok.encode(splits.valid, source=f"{data} (valid)")
    if reset_on is not None:  # the document separator, as text: one token of the vocabulary
        ids = tok.encode(reset_on, source="reset_on")
        if ids.numel() != 1 or tok.decode(ids) != reset_on:
            raise InputError(
                f"reset_on must be exactly one token of the vocabulary; {reset_on!r} is "
                f"{ids.numel()} token(s){' or unknown' if ids.numel() == 1 else ''}"
            )
        config = as_config(TrainConfig, train_options, reset_on=int(ids[0]))
    else:
        config = as_config(TrainConfig, train_options)
    torch.manual_seed(config.seed)  # --seed fixes the initial weights too
    model = LanguageModel(as_config(LMConfig, model_options, vocab_size=tok.vocab_size))
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        check_fresh(run_dir)
        if distributed.is_main():  # under torchrun, rank 0 alone writes
            save_tokenizer(tok, run_dir / "tokenizer.json")
            atomic_write(run_dir / "data.json", (json.dumps({"data": data}) + "\n").encode())
    report = train_lm(model, train_ids, valid_ids, config, run_dir, resume=resume, progress=progress)
    return {
        **report,
        "vocab_size": tok.vocab_size,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def train_lm(
    model: nn.Module,
    train_ids: Tensor,
    valid_ids: Tensor,
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`~rnnkit.models.LanguageModel`) on token ids with truncated BPTT.

    Arguments:
        model: maps tokens (T, B) and a state to (logits (T, B, V), state).
        train_ids, valid_ids: (N,) int64 token ids of the training and validation text.
        config: the :class:`TrainConfig`.
        run_dir: where config.json, metrics.jsonl and checkpoints/ go.
        resume: continue from ``run_dir``'s latest checkpoint. A missing or corrupt one raises
            :class:`~rnnkit.training.checkpoint.CheckpointError`; there is no silent fresh start.
        progress: show a tqdm bar with ETA on stderr.

    Returns:
        :func:`fit`'s report, with ``"valid_bpc"``, the final validation loss in bits per token.
    """
    device = next(model.parameters()).device
    task = LMTask(train_ids, valid_ids, config.batch_size, config.seq_len, config.bptt_window, device,
                  reset_on=config.reset_on)  # fmt: skip
    report = fit(model, task, config, run_dir, resume=resume, progress=progress)
    if distributed.is_main():
        write_results(run_dir, {"valid_bpc": report["valid_loss"] / LN2})
    return {**report, "valid_bpc": report["valid_loss"] / LN2}


def load_language_model(run_dir: str | os.PathLike[str], which: str = "best") -> TrainedLM:
    """The model of a run directory with its best (or latest) weights, and its tokenizer."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise InputError(f"{run_dir}: not a run directory (no config.json); train one with `rnnkit train lm`")
    saved = json.loads(config_path.read_text())
    model = LanguageModel(LMConfig(**saved["model"]))
    load_weights(model, run_dir, which)
    return TrainedLM(model, load_tokenizer(run_dir / "tokenizer.json"), run_dir)


def evaluate_text(run_dir: str | os.PathLike[str], path: str | os.PathLike[str], which: str = "best") -> dict:
    """Loss of a trained model on any text file, in its own vocabulary (per token: per character or
    per word token, as the run was trained).

    Characters or words outside the vocabulary cannot be scored: with an ``<unk>`` token (every word
    vocabulary) they are scored as ``<unk>``, otherwise they are left out; either way they are counted
    in ``"unknown"``.
    """
    import math

    from ...data import TBPTTStream, read_text

    trained = load_language_model(run_dir, which)
    tok = trained.tokenizer
    text = read_text(path)
    if isinstance(tok, WordTokenizer):
        ids = tok.encode(text, source=str(path))  # (N,)
        unknown = int((ids <= tok.unk_id + 1).sum())  # ids 0 and 1 are "<unk>" and " <unk>"
    else:
        vocab = set(tok.chars)
        unknown = sum(1 for ch in text if ch not in vocab)
        if unknown and tok.unk_id is None:
            text = "".join(ch for ch in text if ch in vocab)
        ids = tok.encode(text, source=str(path))  # (N,)
    if ids.numel() < 2:
        raise InputError(f"{path}: needs at least 2 scorable tokens ({tok.kind}s), got {ids.numel()}")
    loss = evaluate(trained.model, TBPTTStream(ids, 1, min(256, ids.numel() - 1)))
    return {"loss": loss, "bits_per_token": loss / math.log(2), "perplexity": math.exp(loss),
            "tokens": ids.numel() - 1, "unknown": unknown}  # fmt: skip


def token_unit(run_dir: str | os.PathLike[str]) -> str:
    """What one token of a run directory is, for messages: ``"char"`` or ``"word"``."""
    return str(load_tokenizer(Path(run_dir) / "tokenizer.json").kind)


def options_from(preset: str | None, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and training options: a preset's, with every non-None override applied."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    model_opts, train_opts = (options_of(c) for c in PRESETS[preset or "quick"])
    route(overrides, (model_opts, field_names(LMConfig)), (train_opts, field_names(TrainConfig)))
    return model_opts, train_opts
