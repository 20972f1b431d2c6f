"""A user's mistake gets one clear error naming the value and what is allowed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toolkit.engine.data import load_task
from toolkit.engine.models import MLP
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import Member, TrainConfig, train
from toolkit.studies.coord_check import coord_check


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


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"widths": ()}, "widths=() is empty"),
        ({"widths": (32, -1)}, "widths=-1"),
        ({"lrs": (1e-3, 0.0)}, "lrs=0.0"),
        ({"weight_decays": (-0.1,)}, "weight_decays=-0.1"),
        ({"seeds": 0}, "seeds=0"),
        ({"parametrizations": ("sp", "mupp")}, "parametrization='mupp'"),
        ({"optimizers": ("sgdm",)}, "optimizer='sgdm'"),
        ({"task": "cifar10"}, "task='cifar10'"),
        ({"depth_rules": ("deep",)}, "depth_rule='deep'"),
        ({"max_members": 0}, "max_members=0"),
        ({"steps": (0,)}, "steps=0"),
    ],
)
def test_bad_sweep_spec_raises_value_error_naming_the_value(changes, needle):
    from toolkit.studies.sweep import SweepSpec

    with pytest.raises(ValueError) as error:
        SweepSpec(**changes)
    assert needle in str(error.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("2^-2:2^-14:3", "a <= b"),
        ("2^-14:2^-2:x", "2^-14:2^-2:x"),
        ("fast", "'fast'"),
        ("", "empty"),
    ],
)
def test_bad_lr_grids_are_refused(text, needle):
    from toolkit.studies.schema import parse_numbers

    with pytest.raises(ValueError) as error:
        parse_numbers("lrs", text)
    assert needle in str(error.value)


def test_bad_spec_files(tmp_path):
    from toolkit.studies.sweep import SweepSpec

    with pytest.raises(ValueError, match="does not exist"):
        SweepSpec.from_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("widths = [16,\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        SweepSpec.from_toml(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("widht = [16]\n")
    with pytest.raises(ValueError, match="unknown sweep setting 'widht'; allowed: .*widths"):
        SweepSpec.from_toml(unknown)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit", *argv], capture_output=True, text=True)


def _assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert needle in lines[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--lrs", "2^-2:2^-14:3"], "a <= b"),
        (["--widths", "16,x"], "'16,x'"),
        (["--parametrization", "sp,foo"], "'foo'"),
        (["--optimizer", "adam,lion"], "'lion'"),
        (["--seeds", "0"], "seeds=0"),
        (["--weight-decays", "-1"], "weight_decays=-1.0"),
        (["--task", "imagenet"], "task='imagenet'"),
        (["--depth-rule", "deep"], "'deep'"),
        (["--spec", "/nonexistent/spec.toml"], "does not exist"),
        ([], "--out"),
        (["--readout-zero-init", "yes"], "'yes'"),
        (["--widths", "16.0"], "'16.0'"),
        (["--batch-size", "32.5"], "'32.5'"),
        (["--output-alphas", ""], "empty"),
        (["--init-sigmas", "0.5,-1"], "init_sigmas=-1.0"),
        (["--momentums", "1"], "momentums=1.0"),
        (["--activation", "swish"], "activation='swish'"),
        (["--warmup-steps", "10", "--steps", "5"], "warmup_steps=10"),
        (["--lrs", "2^0:2^5000:3"], "overflows"),
        (["--probe-points", "0"], "probe_points=0"),
    ],
)
def test_cli_sweep_bad_input_exits_2_with_one_line(argv, needle, tmp_path):
    _assert_one_line_error(_cli("sweep", "--steps", "1", "--quiet", *argv), needle)


def test_cli_report_on_missing_or_foreign_directories(tmp_path):
    _assert_one_line_error(_cli("report", str(tmp_path / "nope")), "does not exist")
    (tmp_path / "notes.txt").write_text("not a store")
    _assert_one_line_error(_cli("report", str(tmp_path)), "not a results store")


def test_reading_a_store_from_a_newer_toolkit_fails_clearly(tmp_path):
    (tmp_path / "store.json").write_text('{"schema_version": 99}')
    _assert_one_line_error(_cli("report", str(tmp_path)), "newer toolkit")


def test_a_truncated_store_file_is_named_and_can_be_moved_aside(tmp_path):
    from toolkit.studies.sweep import SweepSpec, run_local

    run_local(SweepSpec(task="digits", widths=(16, 32), depths=(1,), lrs=(1e-2,), steps=(3,)),
              tmp_path, quiet=True)  # fmt: skip
    victim = sorted((tmp_path / "runs").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    _assert_one_line_error(_cli("report", str(tmp_path)), victim.name)
    moved = _cli("store", str(tmp_path), "--quarantine")
    assert moved.returncode == 0 and victim.name in moved.stdout
    report = _cli("report", str(tmp_path), "--json")
    assert report.returncode == 0 and len(json.loads(report.stdout)["runs"]) == 1
