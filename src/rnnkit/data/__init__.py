"""Data: corpora (:mod:`.datasets`), tokenisers and batches (:mod:`.text`) for language models, and
labelled series for classification (:mod:`.timeseries`: ``.ts`` files and arrays).

    splits = load_dataset("tinyshakespeare")                     # train / valid text
    tok = CharTokenizer.fit(splits.train)                        # or WordTokenizer.fit(..., max_size=)
    stream = TBPTTStream(tok.encode(splits.train), batch_size=32, seq_len=128)
    for x, y in stream:                                          # (T, B) each, y = x shifted by one
        ...

Names are imported on first use (PEP 562), so ``import rnnkit.data`` costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CharTokenizer": "text",
    "WordTokenizer": "text",
    "Tokenizer": "text",
    "TBPTTStream": "text",
    "pad_batch": "text",
    "decode_text": "text",
    "read_text": "text",
    "tokenizer_from_dict": "text",
    "save_tokenizer": "text",
    "load_tokenizer": "text",
    "DATASETS": "datasets",
    "DatasetSpec": "datasets",
    "TextSplits": "datasets",
    "ChecksumError": "datasets",
    "DownloadError": "datasets",
    "cache_dir": "datasets",
    "download_file": "datasets",
    "fetch_dataset": "datasets",
    "load_dataset": "datasets",
    "sha256_file": "datasets",
    "split_text_file": "datasets",
    "split_works": "datasets",
    "check_finite": "checks",
    "SeriesDataset": "timeseries",
    "read_ts": "timeseries",
}

__all__ = [
    "CharTokenizer",
    "ChecksumError",
    "DATASETS",
    "DatasetSpec",
    "DownloadError",
    "SeriesDataset",
    "TBPTTStream",
    "TextSplits",
    "Tokenizer",
    "WordTokenizer",
    "cache_dir",
    "check_finite",
    "decode_text",
    "download_file",
    "fetch_dataset",
    "load_dataset",
    "load_tokenizer",
    "pad_batch",
    "read_text",
    "read_ts",
    "save_tokenizer",
    "sha256_file",
    "split_text_file",
    "split_works",
    "tokenizer_from_dict",
]

if TYPE_CHECKING:
    from .checks import check_finite
    from .datasets import (
        DATASETS,
        ChecksumError,
        DatasetSpec,
        DownloadError,
        TextSplits,
        cache_dir,
        download_file,
        fetch_dataset,
        load_dataset,
        sha256_file,
        split_text_file,
        split_works,
    )
    from .text import (
        CharTokenizer,
        TBPTTStream,
        Tokenizer,
        WordTokenizer,
        decode_text,
        load_tokenizer,
        pad_batch,
        read_text,
        save_tokenizer,
        tokenizer_from_dict,
    )
    from .timeseries import SeriesDataset, read_ts


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
