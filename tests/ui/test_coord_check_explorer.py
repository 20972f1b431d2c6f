"""The live coordinate-check explorer trains nothing until drawn, trains each setting once,
redraws steps from memory, and draws the numbers ``python -m toolkit coord-check --json``
prints for the same flags."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import polars as pl  # noqa: E402
import pytest  # noqa: E402

from toolkit.ui.coord_check_explorer import CoordCheckExplorer  # noqa: E402


@pytest.fixture(scope="module")
def explorer():
    explorer = CoordCheckExplorer(widths=(16, 32), seeds=1)
    explorer.redraw()
    return explorer


def test_building_it_trains_nothing():
    fresh = CoordCheckExplorer(widths=(16, 32), seeds=1)
    assert not fresh.results and not fresh.image.value
    with pytest.raises(TypeError):
        fresh.results["sp", "adam", 0.01] = pl.DataFrame()  # its state is its own


def test_starts_with_sp_and_mup_side_by_side(explorer):
    assert explorer.controls["parametrizations"].value == ("sp", "mup")
    assert not explorer.message and explorer.image.value
    assert [ax.get_title() for ax in explorer.figure.axes] == [
        "parametrization sp",
        "parametrization mup",
    ]
    assert sorted(explorer.results) == [("mup", "adam", 2**-7), ("sp", "adam", 2**-7)]


def test_the_step_slider_redraws_without_training(explorer):
    trained = dict(explorer.results)
    before = explorer.image.value
    explorer.controls["step"].value = 1
    assert explorer.image.value != before
    assert explorer.results == trained
    explorer.controls["optimizer"].value = "sgd"
    assert ("sp", "sgd", 2**-7) in explorer.results and not explorer.message
    explorer.controls["parametrizations"].value = ()
    assert "parametrizations=() is empty" in explorer.message


def test_width_ratios_are_one_at_the_smallest_width_for_each_parametrization(explorer):
    ratios = explorer.width_ratios(("sp", "mup"), "adam", 2**-7)
    assert set(ratios["parametrization"]) == {"sp", "mup"}
    smallest = ratios.filter(pl.col("width") == 16)["ratio"]
    assert smallest.len() > 0 and (smallest == 1.0).all()
    assert ratios.filter(pl.col("width") == 32).height == smallest.len()


def test_draws_what_the_cli_prints_for_the_same_flags(explorer):
    argv = ["coord-check", "--parametrization", "mup", "--optimizer", "adam", "--lr",
            str(2**-7), "--widths", "16,32", "--seeds", "1", "--json"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", *argv], capture_output=True, text=True, check=True
    )
    printed = pl.DataFrame(json.loads(result.stdout)).sort("width", "layer", "step", "stat")
    drawn = explorer.results["mup", "adam", 2**-7].sort("width", "layer", "step", "stat")
    assert printed["value"].to_list() == drawn["value"].to_list()
    assert printed.select("width", "layer", "step", "stat").equals(
        drawn.select("width", "layer", "step", "stat")
    )


def test_a_blow_up_is_drawn_as_diverged_with_a_message_and_fails_the_verdict():
    explorer = CoordCheckExplorer(widths=(16, 32, 64), seeds=2, parametrizations=("sp", "mup"))
    explorer.select(lr=2**-1, parametrizations=("sp",), step=3)
    assert not explorer.message
    texts = [t.get_text() for ax in explorer.figure.axes for t in ax.texts]
    assert any(t.startswith("x diverged: width") for t in texts), texts
    drawn = explorer.results["sp", "adam", 2**-1].filter(pl.col("step") == 3)
    assert drawn["diverged"].any() and (drawn["value"] != 0.0).all()
    table = explorer.verdict("sp", "adam", 2**-1)
    assert not table.filter(pl.col("step") == 3)["pass"].any()
    assert table.filter(pl.col("step") == 3)["reason"].str.starts_with("diverged").all()


def test_training_a_new_setting_says_so_and_disables_the_controls_meanwhile(explorer):
    explorer.select(parametrizations=("sp",), optimizer="adam")
    seen: list = []
    explorer.status.observe(
        lambda change: seen.append((change.new, explorer.controls["lr"].disabled)), "value"
    )
    explorer.controls["lr"].value = 2**-5
    assert ("<i>training sp, adam, LR 2^-5 at widths 16, 32...</i>", True) in seen
    assert explorer.status.value == "" and not explorer.controls["lr"].disabled
    assert ("sp", "adam", 2**-5) in explorer.results and not explorer.message
