"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch

from toolkit.engine.data import Task, load_task
from toolkit.engine.train import train


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


def _final_state(config, members, task):
    """Train; return (records, every parameter after the last step, read by a probe)."""
    states = {}

    def grab(ctx):
        states.update({name: p.detach().clone() for name, p in ctx.model.named_parameters()})
        return []

    records = train(config, members, task=task, probes=[grab], probe_steps=[config.steps])
    return records, states


@pytest.fixture
def final_state():
    """``final_state(config, members, task) -> (records, parameters after training)``."""
    return _final_state


@pytest.fixture
def two_by_two_spec():
    """A small sweep on digits: SP and muP, widths 16 and 32, depth 1, 3 LRs, 2 seeds."""
    from toolkit.studies.spec import SweepSpec

    return SweepSpec(task="digits", parametrizations=("sp", "mup"), widths=(16, 32), depths=(1,),
                     lrs=(1e-3, 1e-2, 1e-1), seeds=2)  # fmt: skip
