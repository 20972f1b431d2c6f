"""A shipped study that asks where an optimum moves must have located it: every optimum
the notebooks and the claims card read lies inside its grid (``fit == "ok"``), so its drift
is a measurement, not an artefact of where the grid stops. In
``data/weight_decay_transfer`` that holds for every (weight-decay rule, width) optimum of the
(LR, WD) grid on both axes."""

from __future__ import annotations

import json

import polars as pl
import pytest

from toolkit import store
from toolkit.analysis.optima import FIT_OK, joint_optimum, optimal_hyperparameter, swept
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


LR_SWEEPS = ("width_transfer", "depth_transfer", "horizon", "transformer_transfer",
             "transfer_diagnosis")  # fmt: skip
"""Stores whose every series sweeps the learning rate."""


@pytest.mark.parametrize(
    ("name", "x"),
    [*((name, "lr") for name in LR_SWEEPS),
     ("hyperparameter_transfer", "output_alpha"), ("hyperparameter_transfer", "init_sigma"),
     ("batch_size", "weight_decay")],
)  # fmt: skip
def test_every_optimum_of_a_shipped_sweep_is_inside_its_grid(name, x):
    runs = swept(store.open(shipped(name)).runs().collect(), x)
    loss = DECAY_OBJECTIVE if x == "weight_decay" else "final_train_loss"
    optima = optimal_hyperparameter(runs, x, loss=loss)
    assert optima.height >= 5
    outside = optima.filter(pl.col("fit") != FIT_OK)
    assert outside.height == 0, outside.drop(pl.selectors.by_dtype(pl.List)).to_dicts()


def test_muon_s_adamw_part_runs_at_mup_adam_s_tuned_lr():
    """Adam and Muon each at their own tuned LRs: Muon's AdamW part (embeddings, readout,
    norms) keeps one LR, muP Adam's best grid LR at the narrowest width of the same store."""
    runs = store.open(shipped("transformer_transfer")).runs().collect()
    adam = runs.filter(pl.col("optimizer") == "adam", pl.col("parametrization") == "mup",
                       pl.col("depth") == 2, pl.col("depth_rule") == "none",
                       pl.col("width") == runs["width"].min())  # fmt: skip
    best = optimal_hyperparameter(adam, "lr")["log2_lr_grid"].item()
    muon = runs.filter(pl.col("optimizer") == "muon")["config_json"]
    assert muon.len() > 0
    assert {json.loads(config)["adam_lr"] for config in muon} == {2.0**best}
