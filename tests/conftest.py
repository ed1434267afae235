"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """torch on one thread for the test: bit-exact resume needs a fixed summation order, and one thread
    is also the fastest for the small models the tests train."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
