"""Fixtures shared by the test modules."""

import os

import pytest
import torch

# impl="auto" follows the static rules in tests (deterministic, no timing): measured dispatch is
# switched on only by the tuning tests themselves (tests/test_tuning.py). Subprocesses inherit it.
os.environ["RNNKIT_TUNE"] = "0"


@pytest.fixture
def one_thread():
    """torch on one thread for the test: bit-exact resume needs a fixed summation order, and one thread
    is also the fastest for the small models the tests train."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
