"""Sequence to sequence end to end: generated pairs -> vocabularies -> model -> training -> a run directory,
and back (translate one text, draw its attention).

The CLI's ``rnnkit train seq2seq`` and ``rnnkit translate`` are thin shells over these functions. A run
directory holds ``config.json`` (``{"train": ..., "model": ...}``), ``data.json`` (the task and how its
pairs were drawn: they are generated again, identically, on resume and for evaluation),
``vocab.json``, ``metrics.jsonl`` and ``checkpoints/``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...configs import as_config
from ...data.pairs import TASKS, PairSplits, SeqVocab, encode_pairs, make_batch
from ...errors import InputError
from ...generate import Decoded, beam_search, greedy_decode
from ...options import field_names, options_of, route
from ...training import distributed
from ...training.checkpoint import atomic_write, load_weights
from ...training.config import TrainConfig
from ...training.rundir import check_fresh
from ...training.trainer import fit
from .config import PRESETS, PairsConfig, Seq2SeqConfig
from .model import Seq2Seq
from .task import Seq2SeqTask


@dataclass
class TrainedSeq2Seq:
    model: Seq2Seq
    src_vocab: SeqVocab
    tgt_vocab: SeqVocab
    run_dir: Path
    task: str


@dataclass
class Translation:
    """One decoded input. ``source`` and ``output`` are the token strings (``output`` ends with
    ``"</s>"`` when it finished); ``weights`` (len(output), len(source)) or None without attention."""

    text: str
    translation: str
    source: list[str]
    output: list[str]
    score: float
    weights: torch.Tensor | None


def options_from(task: str, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A task's model, training and data options, with every non-None override applied."""
    if task not in PRESETS:
        raise InputError(f"task must be one of {sorted(PRESETS)}, got {task!r}")
    model, train, pairs = PRESETS[task]
    model_opts, train_opts, data_opts = options_of(model), options_of(train), pairs.generator_options(task)
    for derived in ("src_vocab", "tgt_vocab"):
        model_opts.pop(derived, None)
    route(overrides, (model_opts, field_names(Seq2SeqConfig)), (train_opts, field_names(TrainConfig)),
          (data_opts, set(data_opts)), what=f"task {task!r}")  # fmt: skip
    return model_opts, train_opts, data_opts


def make_splits(task: str, data_options: dict[str, Any], seed: int) -> PairSplits:
    """The task's pairs, drawn with ``seed`` (the same seed gives the same pairs)."""
    if task not in TASKS:
        raise InputError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    return TASKS[task](**data_options, seed=seed)  # type: ignore[operator]


def train_seq2seq(
    task: str,
    out: str | os.PathLike[str],
    model_options: Seq2SeqConfig | dict[str, Any],
    train_options: TrainConfig | dict[str, Any],
    data_options: PairsConfig | dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
    beam: int = 1,
) -> dict[str, Any]:
    """Train an encoder-decoder on a generated task with :func:`~rnnkit.training.fit`; score it on the
    held-out test pairs.

    Returns:
        ``fit``'s report with ``"exact_match"`` (the test pairs, decoded greedily, or with beam search of
        width ``beam``), ``"valid_exact_match"``, ``"test_pairs"``, ``"train_pairs"``, ``"parameters"``
        and ``"task"``.
    """
    run_dir = Path(out)
    config = as_config(TrainConfig, train_options)
    if isinstance(data_options, PairsConfig):
        data_options = data_options.generator_options(task)
    if resume:
        saved = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").is_file() else None
        if saved != {"task": task, "options": data_options}:
            raise InputError(f"{run_dir} was trained on {saved}; resuming with {task!r} and {data_options}")
    splits = make_splits(task, data_options, config.seed)
    shape = as_config(Seq2SeqConfig, model_options, src_vocab=splits.src_vocab.vocab_size,
                      tgt_vocab=splits.tgt_vocab.vocab_size)  # fmt: skip
    model = Seq2Seq(shape)
    if not resume:
        check_fresh(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if distributed.is_main():
            vocab = {"src": splits.src_vocab.to_dict(), "tgt": splits.tgt_vocab.to_dict()}
            atomic_write(run_dir / "vocab.json", (json.dumps(vocab) + "\n").encode())
            data = {"task": task, "options": data_options}
            atomic_write(run_dir / "data.json", (json.dumps(data) + "\n").encode())
    train = encode_pairs(splits.train, splits.src_vocab, splits.tgt_vocab)
    valid = encode_pairs(splits.valid, splits.src_vocab, splits.tgt_vocab)
    pairs = Seq2SeqTask(train, valid, config.batch_size, seed=config.seed)
    report = fit(model, pairs, config, run_dir, resume=resume, progress=progress)
    trained = load_seq2seq(run_dir)
    results = decode_pairs(trained, splits.test, beam=beam)
    valid_results = decode_pairs(trained, splits.valid)
    return {
        **report,
        "exact_match": exact_match(results),
        "valid_exact_match": exact_match(valid_results),
        "test_pairs": len(splits.test),
        "train_pairs": len(splits.train),
        "parameters": sum(p.numel() for p in model.parameters()),
        "task": task,
    }


def load_splits(run_dir: str | os.PathLike[str]) -> PairSplits:
    """The pairs a run directory was trained on, drawn again (its task, options and seed)."""
    run_dir = Path(run_dir)
    data = json.loads((run_dir / "data.json").read_text())
    seed = json.loads((run_dir / "config.json").read_text())["train"]["seed"]
    return make_splits(data["task"], data["options"], seed)


def load_seq2seq(run_dir: str | os.PathLike[str], which: str = "best") -> TrainedSeq2Seq:
    """The model of a run directory with its best (or latest) weights, and its vocabularies."""
    run_dir = Path(run_dir)
    for name in ("config.json", "vocab.json", "data.json"):
        if not (run_dir / name).is_file():
            raise InputError(
                f"{run_dir}: not a seq2seq run directory (no {name}); train one with `rnnkit train seq2seq`"
            )
    saved = json.loads((run_dir / "config.json").read_text())
    if not saved.get("model") or "tgt_vocab" not in saved["model"]:
        raise InputError(f"{run_dir}: its config.json describes no seq2seq model")
    model = Seq2Seq(Seq2SeqConfig(**saved["model"]))
    load_weights(model, run_dir, which)
    vocab = json.loads((run_dir / "vocab.json").read_text())
    task = json.loads((run_dir / "data.json").read_text())["task"]
    src_vocab, tgt_vocab = SeqVocab.from_dict(vocab["src"]), SeqVocab.from_dict(vocab["tgt"])
    return TrainedSeq2Seq(model, src_vocab, tgt_vocab, run_dir, task)


def decode(
    trained: TrainedSeq2Seq, texts: list[str], beam: int = 1, alpha: float = 0.6, max_len: int | None = None
) -> Decoded:
    """Decode source texts in one batch (greedy for ``beam=1``, else beam search with GNMT's length
    penalty ``alpha``). ``max_len`` defaults to twice the longest source plus 10 tokens."""
    ids = [trained.src_vocab.encode(t, source=f"the input {i}" if len(texts) > 1 else "the input")
           for i, t in enumerate(texts)]  # fmt: skip
    batch = make_batch([(s, []) for s in ids])
    max_len = max_len or 2 * int(batch.lengths.max()) + 10
    if beam == 1:
        return greedy_decode(trained.model, batch.src, batch.lengths, max_len=max_len)
    return beam_search(trained.model, batch.src, batch.lengths, beam=beam, alpha=alpha, max_len=max_len)


def decode_pairs(
    trained: TrainedSeq2Seq, pairs: list[tuple[str, str]], beam: int = 1, batch: int = 500
) -> list[tuple[str, str, str]]:
    """``[(source, reference, output)]`` for text pairs, decoded ``batch`` at a time."""
    out = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        decoded = decode(trained, [s for s, _ in chunk], beam=beam)
        out += [(s, t, trained.tgt_vocab.decode(o)) for (s, t), o in zip(chunk, decoded.tokens, strict=True)]
    return out


def exact_match(results: list[tuple[str, str, str]]) -> float:
    return sum(ref == hyp for _, ref, hyp in results) / max(1, len(results))


def translate(trained: TrainedSeq2Seq, text: str, beam: int = 1, alpha: float = 0.6) -> Translation:
    """Decode one text; the attention weights come with it (for :func:`plot_attention`)."""
    decoded = decode(trained, [text], beam=beam, alpha=alpha)
    tokens = decoded.tokens[0]
    output = [trained.tgt_vocab.tokens[i] for i in tokens] + (["</s>"] if decoded.finished[0] else [])
    return Translation(
        text, trained.tgt_vocab.decode(tokens), trained.src_vocab.split(text), output,
        float(decoded.scores[0]), None if decoded.weights is None else decoded.weights[0],
    )  # fmt: skip


def plot_attention(translation: Translation, path: str | os.PathLike[str]) -> Path:
    """A heat map of the attention weights: one row per output token, one column per source token."""
    if translation.weights is None:
        raise InputError("this model has no attention (attention='none'): there are no weights to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = translation.weights.numpy()  # (n_out, n_src)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * w.shape[1], 1.2 + 0.35 * w.shape[0]))
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    label = [t.strip() or repr(t) for t in translation.source]  # a char-level space shows as ' '
    ax.set_xticks(range(w.shape[1]), label, rotation=60, ha="right")
    ax.set_yticks(range(w.shape[0]), [t.strip() or repr(t) for t in translation.output])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_title(f"{translation.text!r}\n-> {translation.translation!r}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "PRESETS",
    "TrainedSeq2Seq",
    "Translation",
    "decode",
    "decode_pairs",
    "exact_match",
    "load_seq2seq",
    "load_splits",
    "make_splits",
    "options_from",
    "plot_attention",
    "train_seq2seq",
    "translate",
]
