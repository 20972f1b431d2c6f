"""A shipped study that asks where an optimum moves must have located it: in
``data/weight_decay_transfer`` every (weight-decay rule, width) optimum of the (LR, WD) grid
lies inside the grid on both axes, so its drift across widths is a measurement, not an
artefact of where the grid stops."""

from __future__ import annotations

import polars as pl
import pytest

from toolkit import store
from toolkit.analysis.optima import FIT_OK, joint_optimum
from toolkit.analysis.spectra import DECAY_OBJECTIVE
from toolkit.paths import shipped


@pytest.fixture(scope="module")
def decay_runs() -> pl.DataFrame:
    return store.open(shipped("weight_decay_transfer")).runs().collect()


@pytest.mark.parametrize(("x", "held"), [("lr", "weight_decay"), ("weight_decay", "lr")])
def test_every_rule_and_width_has_its_lr_wd_optimum_inside_the_grid(decay_runs, x, held):
    optima = joint_optimum(decay_runs, x, held, loss=DECAY_OBJECTIVE)
    cells = decay_runs.select("weight_decay_scaling", "width").unique()
    assert optima.height == cells.height >= 9
    outside = optima.filter(pl.col("fit") != FIT_OK)
    assert outside.height == 0, outside.select("weight_decay_scaling", "width", f"log2_{x}_grid",
                                               "fit", "censored").to_dicts()  # fmt: skip


def test_the_weight_decay_study_has_three_rules_at_three_widths(decay_runs):
    per_rule = decay_runs.group_by("weight_decay_scaling").agg(
        pl.col("width").n_unique().alias("widths")
    )
    assert per_rule.height == 3 and (per_rule["widths"] >= 3).all(), per_rule.to_dicts()


def test_the_weight_decay_study_has_two_seeds(decay_runs):
    assert decay_runs["seed"].n_unique() >= 2
