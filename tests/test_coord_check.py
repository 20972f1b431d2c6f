"""The coordinate check separates muP from SP, and its CLI prints the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import polars as pl
import pytest

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig
from toolkit.studies.coord_check import coord_check, width_ratios
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
        ("layer", "role", "stat", "step", "value", "width")
    }
    assert {r["stat"] for r in records} >= {"l1", "rms"}
    assert {r["step"] for r in records} == {0, 1, 2, 3}
    config = TrainConfig(
        task="mnist1d", parametrization=Parametrization("mup", base_width=32), depth=3, steps=3
    )
    expected = coord_check(config, [32, 128], lr=0.01, seeds=[0], task=mnist1d)
    got = pl.DataFrame(records).sort("width", "layer", "step", "stat")
    assert got["value"].to_list() == pytest.approx(
        expected.sort("width", "layer", "step", "stat")["value"].to_list()
    )
