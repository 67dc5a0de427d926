"""Shared by every test file: one torch thread per test process.

On a busy 2-core machine several multi-threaded processes slow each other down tenfold, and a fixed thread
count is also what makes CPU runs bit-for-bit reproducible (resume equality, the float64 references)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
