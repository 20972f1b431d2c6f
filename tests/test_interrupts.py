"""A Ctrl-C dropped on its way (raised inside a destructor, printed as "Exception ignored")
still stops the work at the next training step."""

import contextlib
import signal

import pytest

from toolkit import interrupts
from toolkit.engine.config import Member, TrainConfig
from toolkit.engine.train import train


def _swallowed_ctrl_c() -> None:
    """A Ctrl-C that arrives where Python drops it (what a destructor does to it)."""
    with contextlib.suppress(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_a_dropped_ctrl_c_is_raised_again_until_the_block_ends():
    with interrupts.remembered():
        _swallowed_ctrl_c()
        for _ in range(2):
            with pytest.raises(KeyboardInterrupt):
                interrupts.check()
    interrupts.check()  # forgotten once the command is over
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_training_stops_at_the_next_step_after_a_dropped_ctrl_c():
    config = TrainConfig(task="digits", width=8, depth=1, steps=5, eval_every=5)
    with interrupts.remembered():
        train(config, [Member(lr=0.01)])  # nothing pending: trains to the end
        _swallowed_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            train(config, [Member(lr=0.01)])


def test_without_the_block_a_ctrl_c_is_python_s_own():
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    interrupts.check()
