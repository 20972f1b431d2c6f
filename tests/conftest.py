"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch

from toolkit.engine.data import Task, load_task


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    for tiny problems on a shared machine a second thread costs more than it gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> Task:
    """The scikit-learn digits task, loaded once per module."""
    return load_task("digits")
