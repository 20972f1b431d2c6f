"""The optimum of any hyperparameter swept on a log2 grid is found as the learning rate's is:
grid minimum refined by a quadratic fit, an interval, censoring at the grid's edge, and a
drift with width; at each setting of the hyperparameters held."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from toolkit.analysis.optima import (
    FIT_EDGE,
    FIT_OK,
    FIT_TOO_FEW,
    grid_disagreement,
    hyperparameter_curves,
    joint_optimum,
    optimal_hyperparameter,
    optimal_lr,
    swept,
)
from toolkit.analysis.transfer import drift, transferred
from toolkit.errors import InputError

GRID = np.arange(-4.0, 5.0)  # log2 output multipliers


def multiplier_runs(
    optima: dict[tuple[int, float], float],
    rng: np.random.Generator,
    *,
    x: str = "output_alpha",
    seeds: int = 3,
    noise: float = 0.01,
    grid: np.ndarray = GRID,
) -> pl.DataFrame:
    """Runs at one LR per key ``(width, log2 lr)`` whose loss is
    ``0.5 + 0.05 * (log2 x - optimum)**2 + noise``; the other multipliers stay at 1."""
    rows = []
    for (width, log2_lr), x_opt in optima.items():
        for value in grid:
            for seed in range(seeds):
                rows.append(
                    {"parametrization": "mup", "optimizer": "adam", "width": width, "depth": 3,
                     "lr": 2.0**log2_lr, "init_sigma": 1.0, "input_alpha": 1.0,
                     "output_alpha": 1.0, x: 2.0**value, "seed": seed, "status": "ok",
                     "final_train_loss": 0.5 + 0.05 * (value - x_opt) ** 2
                     + rng.normal(0, noise)}
                )  # fmt: skip
    return pl.DataFrame(rows)


def test_the_optimal_output_multiplier_is_recovered_at_each_learning_rate_held():
    rng = np.random.default_rng(0)
    truth = {(64, -7.0): 1.3, (64, -9.0): -0.6}
    covered, draws = 0, 200
    for _ in range(draws):
        optima = optimal_hyperparameter(multiplier_runs(truth, rng), "output_alpha")
        assert optima.height == 2  # one optimum per learning rate held, not one in all
        for row in optima.iter_rows(named=True):
            x_true = truth[(row["width"], np.log2(row["lr"]))]
            assert row["fit"] == FIT_OK and row["measured"]
            assert abs(row["log2_output_alpha_opt"] - x_true) < 0.3
            assert row["output_alpha_opt"] == pytest.approx(2.0 ** row["log2_output_alpha_opt"])
            covered += row["log2_output_alpha_lo"] <= x_true <= row["log2_output_alpha_hi"]
    assert 0.90 <= covered / (2 * draws) <= 0.99, covered / (2 * draws)  # nominal 95%


def test_the_optimum_loss_is_an_observed_seed_mean_and_the_fit_value_is_apart():
    """An optimum between grid points: the quadratic's vertex lies below every observed
    loss, and ``loss_opt`` must not quote it as one (it is ``loss_fit``)."""
    runs = multiplier_runs({(64, -7.0): 0.5}, np.random.default_rng(1), noise=0.0)
    row = optimal_hyperparameter(runs, "output_alpha").row(0, named=True)
    observed = runs.group_by("output_alpha").agg(pl.col("final_train_loss").mean())
    assert row["loss_opt"] == pytest.approx(observed["final_train_loss"].min())
    assert row["loss_fit"] == pytest.approx(0.5)  # the true minimum, 0.0125 below the grid's
    assert row["loss_fit"] < row["loss_opt"]


def test_an_optimum_beyond_the_grid_is_censored_with_its_side_and_no_interval():
    runs = multiplier_runs({(64, -7.0): 6.5, (128, -7.0): -5.5}, np.random.default_rng(1))
    optima = optimal_hyperparameter(runs, "output_alpha").sort("width")
    above, below = optima.rows(named=True)
    assert (above["fit"], above["censored"], above["log2_output_alpha_grid"]) == (
        FIT_EDGE, "above", GRID[-1])  # fmt: skip
    assert (below["fit"], below["censored"], below["log2_output_alpha_grid"]) == (
        FIT_EDGE, "below", GRID[0])  # fmt: skip
    for row in (above, below):
        assert not row["measured"]
        assert row["log2_output_alpha_lo"] is None and row["log2_output_alpha_hi"] is None


def test_the_learning_rate_is_one_case_of_the_general_finder():
    """A sweep whose LR column is renamed ``init_sigma`` gives the LR's optima, renamed."""
    rng = np.random.default_rng(2)
    runs = multiplier_runs({(64, -7.0): 0.7, (128, -7.0): 5.0}, rng, x="lr").drop("init_sigma")
    as_lr = optimal_lr(runs)
    as_sigma = optimal_hyperparameter(runs.rename({"lr": "init_sigma"}), "init_sigma")
    renamed = {c: c.replace("init_sigma", "lr") for c in as_sigma.columns}
    assert as_sigma.rename(renamed).select(as_lr.columns).equals(as_lr)
    assert as_lr["fit"].to_list() == [FIT_OK, FIT_EDGE]


def test_drift_of_the_init_scale_with_width_is_fitted_like_the_lrs():
    rng = np.random.default_rng(3)
    widths = (32, 64, 128, 256, 512)
    sp = multiplier_runs({(w, -7.0): 2.0 - 0.5 * (np.log2(w) - 5) for w in widths}, rng,
                         x="init_sigma").with_columns(parametrization=pl.lit("sp"))  # fmt: skip
    mup = multiplier_runs({(w, -7.0): 0.5 for w in widths}, rng, x="init_sigma")
    optima = optimal_hyperparameter(pl.concat([sp, mup]), "init_sigma")
    slopes = drift(optima, axis="width").sort("parametrization")
    mup_row, sp_row = slopes.rows(named=True)
    assert sp_row["slope_lo"] <= -0.5 <= sp_row["slope_hi"] and sp_row["slope_hi"] < 0
    assert mup_row["slope_lo"] <= 0.0 <= mup_row["slope_hi"]
    assert sp_row["points"] == mup_row["points"] == 5 and sp_row["lr"] == 2.0**-7


def test_drift_counts_censored_multiplier_optima_as_bounds():
    widths = (32, 64, 128, 256, 512)
    truth = {(w, -7.0): 3.0 - 2.0 * (np.log2(w) - 5) for w in widths}  # -5 at 512: off the grid
    optima = optimal_hyperparameter(multiplier_runs(truth, np.random.default_rng(4)),
                                    "output_alpha")  # fmt: skip
    (row,) = drift(optima, axis="width").rows(named=True)
    assert row["points"] == 4 and row["censored"] == 1 and row["contradicting"] == 0
    assert row["slope_lo"] <= -2.0 <= row["slope_hi"]


def test_swept_keeps_the_configurations_that_vary_the_hyperparameter():
    rng = np.random.default_rng(5)
    alpha = multiplier_runs({(64, -7.0): 0.0}, rng)
    sigma = multiplier_runs({(64, -7.0): 0.0}, rng, x="init_sigma")
    runs = pl.concat([alpha, sigma])
    every = optimal_hyperparameter(runs, "output_alpha")
    assert sorted(every["fit"].unique().to_list()) == [FIT_OK, FIT_TOO_FEW]  # one point each
    kept = optimal_hyperparameter(swept(runs, "output_alpha"), "output_alpha")
    assert kept.height == 1 and kept["init_sigma"].to_list() == [1.0]
    assert kept["fit"].to_list() == [FIT_OK]


def test_curves_are_per_value_with_seed_statistics():
    runs = multiplier_runs({(64, -7.0): 0.0}, np.random.default_rng(6))
    curves = hyperparameter_curves(runs, "output_alpha")
    assert curves.height == len(GRID)
    assert curves["log2_output_alpha"].to_list() == GRID.tolist()
    assert (curves["seeds_ok"] == 3).all() and not curves["diverged"].any()
    assert curves["lr"].unique().to_list() == [2.0**-7]  # the LR held is a key


def test_a_setting_recorded_only_in_config_json_can_be_the_hyperparameter():
    runs = multiplier_runs({(64, -7.0): 4.3}, np.random.default_rng(7), grid=np.arange(0.0, 9.0))
    recorded = runs.with_columns(
        config_json=pl.col("output_alpha").map_elements(
            lambda v: json.dumps({"warmup_steps": int(v)}), return_dtype=pl.String
        )
    ).drop("output_alpha")
    row = optimal_hyperparameter(recorded, "warmup_steps").row(0, named=True)
    assert row["fit"] == FIT_OK and abs(row["log2_warmup_steps_opt"] - 4.3) < 0.3
    assert swept(recorded, "warmup_steps").height == recorded.height


@pytest.mark.parametrize(
    ("x", "change", "needles"),
    [
        ("weight_decay", {"weight_decay": 0.0}, ["weight_decay", "0.0", "> 0"]),
        ("momentum", {}, ["momentum", "not a column"]),
        ("seed", {}, ["seed", "not a hyperparameter"]),
    ],
)
def test_a_hyperparameter_off_a_log2_axis_is_refused_by_name(x, change, needles):
    runs = multiplier_runs({(64, -7.0): 0.0}, np.random.default_rng(8))
    runs = runs.with_columns(weight_decay=pl.lit(0.1)).with_columns(
        **{k: pl.lit(v) for k, v in change.items()}
    )
    with pytest.raises(InputError) as error:
        optimal_hyperparameter(runs, x)
    assert all(needle in str(error.value) for needle in needles), str(error.value)


def test_a_multiplier_tuned_at_the_base_width_costs_its_regret_at_the_widest():
    truth = {(32, -7.0): 2.0, (64, -7.0): 1.0, (128, -7.0): 0.0}
    runs = multiplier_runs(truth, np.random.default_rng(9), noise=0.0)
    frame = transferred(runs, x="output_alpha").sort("width")
    assert frame["log2_output_alpha_transferred"].to_list() == [2.0, 2.0, 2.0]
    assert frame["regret"].to_list() == pytest.approx([0.0, 0.05, 0.2])


def test_an_interval_nearer_another_grid_value_than_its_grid_minimum_is_flagged():
    """A loss that jumps just above its optimum (as above the largest stable init scale)
    pulls the quadratic refinement to the gentle side, away from the grid minimum; an
    optimum merely between two grid points is not flagged."""
    rng = np.random.default_rng(10)
    half_octaves = np.arange(-2.0, 3.0, 0.5)
    smooth = multiplier_runs({(64, -7.0): 0.3}, rng, x="init_sigma", grid=half_octaves)
    cliff = multiplier_runs({(128, -7.0): 2.0}, rng, x="init_sigma", grid=half_octaves)
    cliff = cliff.with_columns(  # 20x the loss one step past the optimum
        final_train_loss=pl.when(pl.col("init_sigma") > 2.0**2.1)
        .then(pl.col("final_train_loss") * 20)
        .otherwise("final_train_loss")
    )
    runs = pl.concat([smooth, cliff])
    optima = optimal_hyperparameter(runs, "init_sigma")
    flagged = grid_disagreement(optima, hyperparameter_curves(runs, "init_sigma")).sort("width")
    assert flagged["log2_init_sigma_grid"].to_list() == pytest.approx([0.5, 2.0])
    assert flagged["fit"].to_list() == [FIT_OK, FIT_OK]
    assert flagged["off_grid"].to_list() == [False, True]
    assert flagged["log2_init_sigma_hi"][1] < 1.75  # the refinement left the grid minimum


def lr_wd_runs(optima: dict[int, tuple[float, float]], rng: np.random.Generator, *,
               noise: float = 0.005) -> pl.DataFrame:
    """AdamW runs on a 5 x 5 (log2 lr, log2 wd) grid per width whose validation loss is a
    tilted bowl ``0.6 + 0.05 (u**2 + v**2 + u v)``, ``u``, ``v`` the distances of log2 lr and
    log2 wd from the width's optimum, plus noise; two seeds."""
    rows = []
    for width, (lr_opt, wd_opt) in optima.items():
        for log2_lr in np.arange(-8.0, -3.0):
            for log2_wd in np.arange(-5.0, 0.0):
                u, v = log2_lr - lr_opt, log2_wd - wd_opt
                for seed in range(2):
                    rows.append({"parametrization": "mup", "optimizer": "adamw", "width": width,
                                 "weight_decay_scaling": "sqrt_width", "lr": 2.0**log2_lr,
                                 "weight_decay": 2.0**log2_wd, "seed": seed, "status": "ok",
                                 "final_val_loss": 0.6 + 0.05 * (u * u + v * v + u * v)
                                 + rng.normal(0, noise)})  # fmt: skip
    return pl.DataFrame(rows)


def test_the_joint_lr_wd_optimum_is_found_on_both_axes_and_its_drift_fitted():
    truth = {64: (-6.2, -3.0), 128: (-6.2, -2.5), 256: (-6.2, -2.0)}  # wd* grows 0.5/doubling
    runs = lr_wd_runs(truth, np.random.default_rng(1))
    lr = joint_optimum(runs, "lr", "weight_decay", loss="final_val_loss")
    wd = joint_optimum(runs, "weight_decay", "lr", loss="final_val_loss")
    assert lr.height == wd.height == 3 and "weight_decay" not in lr.columns
    for row in lr.iter_rows(named=True):
        assert row["fit"] == FIT_OK
        # the line through the best cell: the bowl's minimum along lr at the held wd
        held = np.log2(row["weight_decay_at_best"])
        lr_true, wd_true = truth[row["width"]]
        assert row["log2_lr_opt"] == pytest.approx(lr_true - (held - wd_true) / 2, abs=0.15)
    for row in wd.iter_rows(named=True):
        assert row["fit"] == FIT_OK
        assert row["log2_weight_decay_lo"] < row["log2_weight_decay_opt"]
    slope = drift(wd, axis="width").row(0, named=True)
    assert slope["points"] == 3 and slope["slope_lo"] < 0.5 < slope["slope_hi"]
    assert drift(lr, axis="width").height == 1  # one series although wd* differs by width


def test_a_joint_optimum_in_a_grid_corner_is_censored_on_that_axis():
    runs = lr_wd_runs({64: (-6.0, -6.0)}, np.random.default_rng(2))  # wd* below the grid
    wd = joint_optimum(runs, "weight_decay", "lr", loss="final_val_loss").row(0, named=True)
    assert wd["fit"] == FIT_EDGE and wd["censored"] == "below"
    lr = joint_optimum(runs, "lr", "weight_decay", loss="final_val_loss").row(0, named=True)
    assert lr["weight_decay_at_best"] == 2.0**-5


def test_a_joint_optimum_needs_two_different_hyperparameters():
    runs = lr_wd_runs({64: (-6.0, -3.0)}, np.random.default_rng(3))
    with pytest.raises(InputError, match="held='lr'"):
        joint_optimum(runs, "lr", "lr")
