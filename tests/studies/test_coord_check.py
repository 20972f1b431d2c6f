"""The coordinate check separates muP from SP, records blow-ups as they are (never as
zeros), and its CLI prints the same numbers and a verdict that fails SP and passes muP."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import polars as pl
import pytest

from toolkit.analysis.coord_check import width_ratios
from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig
from toolkit.studies.coord_check import coord_check, coord_check_seeds
from toolkit.ui.plots import coord_check_plot

matplotlib.use("Agg")

WIDTHS = (128, 512)  # 4x apart; at width 64 finite-width effects reach ~1.25x
LARGE_LR = {"adam": 0.01, "sgd": 0.5}


@pytest.fixture(scope="module")
def mnist1d():
    return load_task("mnist1d")


def _hidden_ratios(task, parametrization, optimizer):
    config = TrainConfig(
        task="mnist1d",
        parametrization=Parametrization(parametrization, base_width=WIDTHS[0]),
        optimizer=optimizer,
        depth=3,
        steps=3,
    )
    frame = coord_check(config, WIDTHS, lr=LARGE_LR[optimizer], seeds=range(4), task=task)
    ratios = width_ratios(frame).filter(
        pl.col("role") == "hidden", pl.col("width") == WIDTHS[1], pl.col("step") >= 1
    )
    assert ratios.height == 2 * 3  # two hidden layers, t = 1..3
    return ratios


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_under_mup_hidden_activations_do_not_change_with_width(mnist1d, optimizer):
    ratios = _hidden_ratios(mnist1d, "mup", optimizer)
    assert ratios["ratio"].is_between(1 / 1.2, 1.2).all(), ratios


def test_under_sp_with_adam_hidden_activations_grow_with_width(mnist1d):
    ratios = _hidden_ratios(mnist1d, "sp", "adam")
    assert (ratios["ratio"] >= 1.5).all(), ratios


def test_coord_check_plot_has_one_line_per_layer_and_panel_per_step(mnist1d):
    config = TrainConfig(
        task="mnist1d", parametrization=Parametrization("mup", base_width=32), steps=2
    )
    frame = coord_check(config, [32, 64], lr=0.01, task=mnist1d)
    fig = coord_check_plot(frame)
    assert len(fig.axes) == 3
    layers = frame["layer"].n_unique()
    assert all(len(ax.lines) == layers for ax in fig.axes)


def test_cli_json_prints_the_records_of_the_python_function(mnist1d):
    argv = [
        "coord-check", "--model", "mlp", "--task", "mnist1d", "--parametrization", "mup",
        "--optimizer", "adam", "--lr", "0.01", "--widths", "32,128", "--depth", "3",
        "--steps", "3", "--seed", "0", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", *argv], capture_output=True, text=True, check=True
    )
    records = json.loads(result.stdout)
    assert {tuple(sorted(r)) for r in records} == {
        ("diverged", "layer", "role", "seeds_diverged", "stat", "step", "value", "width")
    }
    assert {r["stat"] for r in records} >= {"l1", "rms"}
    assert {r["step"] for r in records} == {0, 1, 2, 3}
    config = TrainConfig(
        task="mnist1d", parametrization=Parametrization("mup", base_width=32), depth=3, steps=3
    )
    expected = coord_check(config, [32, 128], lr=0.01, seeds=range(4), task=mnist1d)
    got = pl.DataFrame(records).sort("width", "layer", "step", "stat")
    assert got["value"].to_list() == pytest.approx(
        expected.sort("width", "layer", "step", "stat")["value"].to_list()
    )


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit", "coord-check", *argv],
                          capture_output=True, text=True, check=True)  # fmt: skip


def test_a_member_that_blows_up_keeps_its_real_values_and_is_marked_diverged(mnist1d):
    config = TrainConfig(
        task="mnist1d", parametrization=Parametrization("sp", base_width=32), depth=3, steps=3
    )
    per_seed = coord_check_seeds(config, [32, 128], lr=1.0, seeds=[0, 1], task=mnist1d)
    readout = per_seed.filter(pl.col("layer") == "readout", pl.col("stat") == "l1")
    assert not readout.filter(pl.col("step") == 0)["diverged"].any()
    blown = readout.filter(pl.col("step") >= 1)
    assert blown["diverged"].all()
    assert (blown["value"] > 100).all()  # what it computed: huge, not frozen to zero
    assert (per_seed["value"] != 0.0).all()
    mean = coord_check(config, [32, 128], lr=1.0, seeds=[0, 1], task=mnist1d)
    assert mean.filter(pl.col("step") >= 1)["seeds_diverged"].to_list() == [2] * (
        mean.filter(pl.col("step") >= 1).height
    )


@pytest.mark.slow
def test_the_frozen_member_of_the_issue_reads_as_diverged_not_as_zeros():
    argv = ["--model", "mlp", "--parametrization", "sp", "--optimizer", "adam", "--lr", "0.01",
            "--widths", "512,2048", "--depth", "4", "--steps", "3", "--json"]  # fmt: skip
    records = pl.DataFrame(json.loads(_cli(*argv).stdout))
    exploded = records.filter(pl.col("width") == 2048, pl.col("step") >= 1)
    assert exploded.height and exploded["diverged"].all()
    assert (exploded["value"] != 0.0).all()
    step1 = exploded.filter(
        pl.col("layer") == "readout", pl.col("stat") == "l1", pl.col("step") == 1
    )
    assert step1["value"].item() > 100  # the blow-up itself, as the issue saw it
    assert not records.filter(pl.col("width") == 512)["diverged"].any()


@pytest.mark.slow
@pytest.mark.parametrize(("parametrization", "passes"), [("sp", False), ("mup", True)])
def test_the_verdict_fails_sp_and_passes_mup(parametrization, passes):
    argv = ["--model", "mlp", "--parametrization", parametrization, "--optimizer", "adam",
            "--lr", "0.01", "--widths", "256,512,1024,2048", "--depth", "4", "--seeds", "4",
            "--verdict"]  # fmt: skip
    result = json.loads(_cli(*argv, "--json").stdout)
    assert result["pass"] is passes and result["tolerance"] == 0.1
    layers = pl.DataFrame(result["layers"])
    assert layers.height == 5 * 4  # input, 3 hidden, readout at steps 0..3
    assert set(layers.columns) >= {"layer", "role", "step", "slope", "slope_lo", "slope_hi",
                                   "pass"}  # fmt: skip
    assert (layers["slope_lo"] <= layers["slope"]).all()
    assert (layers["slope"] <= layers["slope_hi"]).all()
    hidden = layers.filter(pl.col("role") == "hidden", pl.col("step") >= 1)
    if passes:
        assert result["diverged"] == [] and (hidden["slope"].abs() < 0.1).all()
    else:
        assert {d["width"] for d in result["diverged"]} == {2048}
        assert (hidden["slope"] > 0.3).all()  # SP with Adam: hidden layers grow with width
        assert "diverged at width 2048" in set(layers["reason"].drop_nulls())


def test_without_json_the_verdict_is_a_table_and_one_summary_line():
    argv = ["--parametrization", "mup", "--widths", "32,64,128", "--steps", "1", "--seeds", "2",
            "--verdict"]  # fmt: skip
    lines = _cli(*argv).stdout.strip().splitlines()
    assert "slope_lo" in "\n".join(lines[:5])
    assert lines[-1].startswith(("PASS:", "FAIL:")) and "tolerance |slope| < 0.1" in lines[-1]


def test_a_verdict_on_two_widths_is_refused_before_training():
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "coord-check", "--widths", "32,64", "--verdict"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "widths=[32, 64]: a verdict needs at least 3 widths" in result.stderr
