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


#: The shipped store holds one seed, and coupled / sqrt(width) only on the cross through the
#: grid's centre (studies/weight_decay_transfer.toml): coupled's best cell at width 128 is on
#: the LR line, off the centre, so no WD line runs through it. Strict: once the full grid is
#: trained and every optimum is inside, the unexpected pass fails until this mark is removed.
_CROSS_ONLY = pytest.mark.xfail(strict=True, reason="coupled width 128: best cell off the cross")


@pytest.mark.parametrize(("x", "held"), [
    ("lr", "weight_decay"),
    pytest.param("weight_decay", "lr", marks=_CROSS_ONLY),
])  # fmt: skip
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


@pytest.mark.xfail(strict=True, reason="the shipped store holds one seed (generation budget)")
def test_the_weight_decay_study_has_two_seeds(decay_runs):
    assert decay_runs["seed"].n_unique() >= 2
