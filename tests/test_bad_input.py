"""A user's mistake gets one clear error naming the value and what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from toolkit.coord_check import coord_check
from toolkit.data import load_task
from toolkit.models import MLP
from toolkit.parametrization import Parametrization
from toolkit.train import Member, TrainConfig, train


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: TrainConfig(width=0), "width=0"),
        (lambda: TrainConfig(width=-8), "width=-8"),
        (lambda: TrainConfig(depth=0), "depth=0"),
        (lambda: TrainConfig(steps=2.5), "steps=2.5"),
        (lambda: TrainConfig(model="cnn"), "model='cnn'"),
        (lambda: TrainConfig(optimizer="lion"), "optimizer='lion'"),
        (lambda: TrainConfig(schedule="step"), "schedule='step'"),
        (lambda: TrainConfig(warmup_steps=10, steps=5), "warmup_steps=10"),
        (lambda: Parametrization("mupp"), "parametrization='mupp'"),
        (lambda: Parametrization(base_width=0), "base_width=0"),
        (lambda: Parametrization(depth_rule="deep"), "depth_rule='deep'"),
        (lambda: Parametrization(weight_decay_scaling="linear"), "weight_decay_scaling='linear'"),
        (lambda: Parametrization(init_sigma=float("nan")), "init_sigma=nan"),
        (
            lambda: MLP(
                d_in=4, d_out=2, width=8, depth=1, parametrization=Parametrization(), seeds=[]
            ),
            "seeds=[]",
        ),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_value(make, needle):
    with pytest.raises(ValueError) as error:
        make()
    assert needle in str(error.value)


def test_unknown_name_lists_what_is_allowed():
    with pytest.raises(ValueError) as error:
        Parametrization("mupp")
    for allowed in ("'sp'", "'mup'", "'ntk'", "'mf'"):
        assert allowed in str(error.value)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([], "members=[]"),
        ([Member(lr=0.0)], "lr=0.0"),
        ([Member(lr=-1e-3)], "lr=-0.001"),
        ([Member(lr=float("inf"))], "lr=inf"),
        ([Member(lr=1e-3, weight_decay=-1.0)], "weight_decay=-1.0"),
        ([Member(lr=1e-3, seed=-1)], "seed=-1"),
    ],
)
def test_bad_members_raise_before_training(digits, members, needle):
    with pytest.raises(ValueError) as error:
        train(TrainConfig(task="digits", steps=1), members, task=digits)
    assert needle in str(error.value)


def test_base_width_above_the_widths_is_refused_by_the_coordinate_check(digits):
    config = TrainConfig(
        task="digits", parametrization=Parametrization("mup", base_width=512), steps=1
    )
    with pytest.raises(ValueError, match="base_width=512"):
        coord_check(config, [128, 256], lr=0.01, task=digits)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--widths", "0,128"], "widths=0"),
        (["--widths", "a,b"], "'a,b'"),
        (["--parametrization", "foo"], "'foo'"),
        (["--optimizer", "lion"], "'lion'"),
        (["--lr", "-1"], "lr=-1.0"),
        (["--steps", "0"], "steps=0"),
        (["--seeds", "0"], "seeds=0"),
        (["--widths", "128", "--base-width", "512"], "base_width=512"),
        (["--depth", "0"], "depth=0"),
        (["--bogus"], "--bogus"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(argv, needle):
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "coord-check", "--task", "digits", *argv],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
