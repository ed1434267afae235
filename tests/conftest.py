"""Fixtures shared by the test modules."""

import os

import pytest
import torch

# impl="auto" follows the static rules in tests (deterministic, no timing): measured dispatch is
# switched on only by the tuning tests themselves (tests/test_tuning.py). Subprocesses inherit it.
os.environ["RNNKIT_TUNE"] = "0"

# Without a GPU, Triton's kernels (kernels/gpu_triton.py) run on CPU tensors in its interpreter, which
# has to be chosen before triton is first imported (torch itself may import it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def one_thread():
    """torch on one thread for the test: bit-exact resume needs a fixed summation order, and one thread
    is also the fastest for the small models the tests train."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
