"""Named UEA/UCR classification problems (``JapaneseVowels``, ``BasicMotions``, ``GunPoint``, ...) as
``.ts`` files: the ones the ``aeon`` wheel ships in its package data (offline), then rnnkit's cache, then
a download through aeon's own loader (``aeon.datasets.download_dataset``, from timeseriesclassification.com)
into the cache.

    train, test = uea.files("JapaneseVowels")        # two .ts paths, read with rnnkit.data.read_ts

aeon is found without being imported (importing it loads numba, seconds): only a download imports it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from ..errors import InputError
from .datasets import DownloadError, cache_dir

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def aeon_data_dir() -> Path | None:
    """The folder of aeon's shipped problems (``aeon/datasets/data``), or None without aeon."""
    try:
        spec = importlib.util.find_spec("aeon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return folder if folder.is_dir() else None


def _pair(folder: Path, name: str) -> tuple[Path, Path] | None:
    train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    return (train, test) if train.is_file() and test.is_file() else None


def shipped(name: str) -> tuple[Path, Path] | None:
    """(train, test) ``.ts`` files of ``name`` from aeon's package data, or None."""
    folder = aeon_data_dir()
    return _pair(folder / name, name) if folder is not None and _NAME.fullmatch(name) else None


def shipped_names() -> list[str]:
    """The problems aeon's wheel ships with both splits (offline)."""
    folder = aeon_data_dir()
    if folder is None:
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _pair(p, p.name) is not None)


def is_name(text: str | os.PathLike[str]) -> bool:
    """Whether ``text`` reads as a problem's name rather than a path (no separator, no suffix, absent)."""
    text = str(text)
    return bool(_NAME.fullmatch(text)) and not Path(text).exists()


def files(name: str, *, download: bool = True) -> tuple[Path, Path]:
    """The (train, test) ``.ts`` files of the UEA/UCR problem ``name``.

    Raises:
        InputError: ``name`` is not a problem's name.
        DownloadError: it is neither shipped with aeon nor cached, and could not be downloaded (no aeon,
            no network, or no such problem on the archive); the message says which and what to do.
    """
    if not _NAME.fullmatch(str(name)):
        raise InputError(f"{name!r} is not a UEA/UCR problem name (letters, digits, _), e.g. JapaneseVowels")
    found = shipped(name) or _pair(cache_dir() / "uea" / name, name)
    if found is not None:
        return found
    offline = ", ".join(shipped_names()) or "none (aeon is not installed)"
    if not download:
        raise DownloadError(f"{name} is not shipped with aeon nor cached; offline problems: {offline}")
    if aeon_data_dir() is None:
        raise DownloadError(
            f"{name}: named UEA datasets come from the aeon package, which is not installed "
            "(pip install 'rnnkit[timeseries]'); or pass the .ts files with --train/--test"
        )
    try:
        from aeon.datasets import download_dataset

        folder = Path(download_dataset(name, save_path=str(cache_dir() / "uea")))
    except Exception as e:  # aeon's loader raises URLError, HTTPError, ValueError, ... as it goes
        raise DownloadError(
            f"could not download the UEA problem {name!r} through aeon ({type(e).__name__}: {str(e)[:200]}); "
            f"offline problems: {offline}; or pass the .ts files with --train/--test"
        ) from e
    got = _pair(folder, name)
    if got is None:
        raise DownloadError(f"aeon downloaded {name} to {folder}, but it holds no {name}_TRAIN.ts/_TEST.ts")
    return got
