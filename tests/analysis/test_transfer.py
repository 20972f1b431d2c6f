"""Fits recover known optima, slopes and scaling laws; intervals cover at their nominal rate."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from toolkit.analysis.fits import fit_slope
from toolkit.analysis.optima import (
    FIT_EDGE,
    FIT_OK,
    FIT_TOO_FEW,
    lr_curves,
    optimal_hyperparameter,
    optimal_lr,
)
from toolkit.analysis.transfer import (
    drift,
    power_law_exponent,
    predict_loss,
    transfer_regret,
    transferred,
    wider_is_better,
)
from toolkit.errors import InputError

GRID = np.arange(-12.0, -1.0)  # log2 LRs


def synthetic_runs(
    optima: dict[int, float],
    rng: np.random.Generator,
    *,
    seeds: int = 3,
    noise: float = 0.01,
    curvature: float = 0.05,
    floor: dict[int, float] | None = None,
    diverge_above: float | None = None,
) -> pl.DataFrame:
    """Runs whose loss is ``floor + curvature * (log2 lr - optimum)**2 + noise`` per width."""
    rows = []
    for width, x_opt in optima.items():
        base = (floor or {}).get(width, 0.5)
        for x in GRID:
            for seed in range(seeds):
                diverged = diverge_above is not None and x > diverge_above
                loss = base + curvature * (x - x_opt) ** 2 + rng.normal(0, noise)
                rows.append(
                    {"parametrization": "mup", "optimizer": "adam", "width": width, "depth": 2,
                     "lr": 2.0**x, "seed": seed, "status": "diverged" if diverged else "ok",
                     "final_train_loss": None if diverged else loss}
                )  # fmt: skip
    return pl.DataFrame(rows)


def test_optimal_lr_recovers_the_optimum_and_its_interval_covers_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    truth = -7.3
    draws = 300
    covered, errors = 0, []
    for _ in range(draws):
        row = optimal_lr(synthetic_runs({64: truth}, rng)).row(0, named=True)
        assert row["fit"] == FIT_OK
        errors.append(row["log2_lr_opt"] - truth)
        covered += row["log2_lr_lo"] <= truth <= row["log2_lr_hi"]
    assert abs(np.mean(errors)) < 0.05  # unbiased to a twentieth of an octave
    assert np.std(errors) < 0.3
    assert 0.90 <= covered / draws <= 0.99, covered / draws  # nominal 95%


def test_drift_recovers_the_slope_and_its_interval_covers_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    widths = np.array([32, 64, 128, 256, 512])
    covered, slopes = 0, []
    for _ in range(500):
        y = -6.0 - 1.0 * (np.log2(widths) - 5) + rng.normal(0, 0.3, len(widths))
        slope, lo, hi, _ = fit_slope(np.log2(widths), y)
        slopes.append(slope)
        covered += lo <= -1.0 <= hi
    assert abs(np.mean(slopes) + 1.0) < 0.03
    assert 0.92 <= covered / 500 <= 0.98


def test_drift_of_optima_under_sp_like_and_mup_like_scaling():
    rng = np.random.default_rng(2)
    sp = synthetic_runs({32: -6, 64: -7, 128: -8, 256: -9}, rng).with_columns(
        parametrization=pl.lit("sp")
    )
    mup = synthetic_runs({32: -6, 64: -6, 128: -6, 256: -6}, rng)
    slopes = drift(optimal_lr(pl.concat([sp, mup]))).sort("parametrization")
    mup_row, sp_row = slopes.rows(named=True)
    assert sp_row["slope_lo"] <= -1.0 <= sp_row["slope_hi"]
    assert mup_row["slope_lo"] <= 0.0 <= mup_row["slope_hi"]
    assert sp_row["points"] == mup_row["points"] == 4


def test_an_optimum_at_the_grid_edge_is_flagged_without_an_interval():
    row = optimal_lr(synthetic_runs({64: -13.0}, np.random.default_rng(3))).row(0, named=True)
    assert row["fit"] == FIT_EDGE
    assert row["log2_lr_grid"] == GRID[0]
    assert row["log2_lr_lo"] is None and row["log2_lr_hi"] is None


def test_too_few_usable_points_says_so_instead_of_a_confident_number():
    runs = synthetic_runs({64: -11.0}, np.random.default_rng(4), diverge_above=-11.5)
    row = optimal_lr(runs).row(0, named=True)
    assert row["points"] == 1 and row["diverged_lrs"] == len(GRID) - 1
    assert row["fit"] == FIT_TOO_FEW
    assert row["log2_lr_lo"] is None


def test_diverged_points_are_kept_and_marked_not_dropped():
    runs = synthetic_runs({64: -7.0}, np.random.default_rng(5), diverge_above=-4.5)
    curves = lr_curves(runs)
    assert curves.height == len(GRID)
    assert curves.filter(pl.col("diverged"))["log2_lr"].to_list() == [-4.0, -3.0, -2.0]
    assert curves.filter(pl.col("diverged"))["loss_mean"].is_null().all()
    assert abs(optimal_lr(runs)["log2_lr_opt"][0] + 7.0) < 0.3


def test_transfer_regret_is_the_loss_gap_at_the_transferred_lr():
    # Noise-free: width 32 optimum at 2^-6, width 128 optimum at 2^-8, curvature 0.05.
    runs = synthetic_runs({32: -6.0, 128: -8.0}, np.random.default_rng(6), noise=0.0)
    regret = transfer_regret(runs).sort("width")
    assert regret["regret"].to_list() == pytest.approx([0.0, 0.05 * 2.0**2])


def test_regret_is_infinite_where_the_target_diverges_at_the_transferred_lr():
    rng = np.random.default_rng(7)
    small = synthetic_runs({32: -3.0}, rng)
    wide = synthetic_runs({256: -9.0}, rng, diverge_above=-5.5)
    regret = transfer_regret(pl.concat([small, wide])).sort("width")
    assert regret["regret"][1] == math.inf


def test_wider_is_better_at_the_transferred_lr():
    rng = np.random.default_rng(8)
    floors = {32: 0.9, 64: 0.7, 128: 0.6, 256: 0.55}
    good = synthetic_runs({w: -6.0 for w in floors}, rng, floor=floors, noise=0.0)
    assert wider_is_better(good)["wider_is_better"].item() is True
    # Optima drifting away: at the transferred 2^-6 the losses are 0.9, 0.75, 0.8, 1.0.
    bad = synthetic_runs({32: -6.0, 64: -7.0, 128: -8.0, 256: -9.0}, rng, floor=floors, noise=0)
    row = wider_is_better(bad).row(0, named=True)
    assert row["losses"] == pytest.approx([0.9, 0.75, 0.8, 1.0])
    assert row["wider_is_better"] is False


def test_power_law_prediction_recovers_the_law_and_its_interval_covers():
    rng = np.random.default_rng(9)
    widths = np.array([32.0, 48, 64, 96, 128, 256, 512, 1024])
    a, b, c = 4.0, 0.6, 0.3
    covered, trials = 0, 300
    for _ in range(trials):
        loss = a * widths**-b + c + rng.normal(0, 0.002, len(widths))
        frame = pl.DataFrame({"width": widths, "loss_transferred": loss})
        out = predict_loss(frame, size="width", se=None, fit_up_to=128)
        far = out.filter(pl.col("width") == 1024).row(0, named=True)
        truth = a * 1024**-b + c
        assert abs(far["predicted"] - truth) < 0.05
        covered += far["predicted_lo"] <= truth <= far["predicted_hi"]
    assert out["fitted"].to_list() == [True] * 5 + [False] * 3
    assert 0.85 <= covered / trials <= 1.0, covered / trials


def test_power_law_needs_three_points():
    frame = pl.DataFrame({"width": [32.0, 64.0, 128.0], "loss_transferred": [1.0, 0.8, 0.7]})
    with pytest.raises(ValueError, match="fit_up_to=64"):
        predict_loss(frame, size="width", se=None, fit_up_to=64)
    out = predict_loss(frame, size="width", se=None, fit_up_to=128)
    assert out["interval"].to_list() == [False] * 3


@pytest.mark.slow
def test_in_a_real_sweep_sp_drifts_to_smaller_lrs_than_mup(tmp_path):
    """MLP, 3 hidden layers, MNIST-1D, Adam: SP's log2(lr*) falls with width, muP's does not."""
    from toolkit import store as results
    from toolkit.studies.sweep import SweepSpec, run_local

    spec = SweepSpec(
        task="mnist1d",
        parametrizations=("sp", "mup"),
        widths=(32, 64, 128),
        depths=(3,),
        lrs=tuple(2.0**k for k in range(-12, -3)),
        steps=(150,),
        base_width=32,
        readout_zero_init=True,
        eval_every=150,
    )
    run_local(spec, tmp_path, quiet=True)
    slopes = drift(optimal_lr(results.open(tmp_path).runs().collect()))
    by_name = dict(zip(slopes["parametrization"], slopes["slope"], strict=True))
    assert by_name["sp"] < by_name["mup"] - 0.25, by_name


def test_drift_through_censored_optima_uses_only_measured_ones():
    """True slope -1; the two widest optima lie below the grid (grid-edge bounds)."""
    rng = np.random.default_rng(21)
    optima = {32: -9.3, 64: -10.3, 128: -11.3, 256: -12.3, 512: -13.3}
    fits = optimal_lr(synthetic_runs(optima, rng))
    assert fits.filter(pl.col("width") >= 256)["censored"].to_list() == ["below", "below"]
    assert fits.filter(pl.col("width") >= 256)["measured"].to_list() == [False, False]
    row = drift(fits).row(0, named=True)
    assert abs(row["slope"] + 1.0) < 0.1, row
    assert row["points"] == 3 and row["censored"] == 2 and row["contradicting"] == 0
    assert row["method"] == "meta-regression"


def test_a_censored_bound_that_contradicts_the_line_is_reported():
    rng = np.random.default_rng(22)
    optima = {32: -6.0, 64: -6.0, 128: -6.0, 256: -13.0, 512: -14.0}
    row = drift(optimal_lr(synthetic_runs(optima, rng))).row(0, named=True)
    assert row["contradicting"] == 2


def test_drift_refuses_with_too_few_measured_optima():
    rng = np.random.default_rng(23)
    optima = {32: -8.0, 64: -9.0, 128: -13.0, 256: -14.0}
    row = drift(optimal_lr(synthetic_runs(optima, rng))).row(0, named=True)
    assert row["status"] == "too-few-measured"
    assert row["slope"] is None and row["slope_lo"] is None
    assert row["points"] == 2 and row["censored"] == 2


def test_the_horizon_power_law_recovers_its_exponent_and_counts_censored_optima():
    """lr* = 2^-4 * (steps / 100)^-0.4 over 125-2000 steps; the longest horizon's optimum
    is pushed below the grid, so it is a bound: counted (and, lying far below the line,
    counted as contradicting it), not fitted."""
    rng = np.random.default_rng(24)
    steps = [125, 177, 250, 354, 500, 707, 1000, 1414, 2000]
    truth = {t: -4.0 - 0.4 * math.log2(t / 100) - (7.0 if t == 2000 else 0.0) for t in steps}
    runs = synthetic_runs(truth, rng).rename({"width": "steps"})
    optima = optimal_lr(runs)
    row = power_law_exponent(optima).row(0, named=True)
    line = drift(optima, axis="steps").row(0, named=True)
    assert row["alpha_lo"] <= 0.4 <= row["alpha_hi"] and abs(row["alpha"] - 0.4) < 0.05, row
    assert (row["alpha"], row["alpha_lo"], row["alpha_hi"]) == (
        -line["slope"], -line["slope_hi"], -line["slope_lo"]
    )
    assert row["points"] == 8 and row["censored"] == 1 and row["contradicting"] == 1


def test_a_horizon_power_law_through_too_few_optima_has_no_exponent():
    rng = np.random.default_rng(25)
    runs = synthetic_runs({125: -5.0, 250: -13.0, 500: -14.0}, rng).rename({"width": "steps"})
    row = power_law_exponent(optimal_lr(runs)).row(0, named=True)
    assert row["status"] == "too-few-measured" and row["alpha"] is None
    assert row["censored"] == 2


def test_a_lucky_survivor_cannot_make_an_unstable_lr_the_optimum():
    """At 2^-4 two of three seeds diverge and the third reaches a very low loss."""
    rng = np.random.default_rng(24)
    runs = synthetic_runs({64: -7.0}, rng)
    unstable = (pl.col("lr") == 2.0**-4) & (pl.col("seed") < 2)
    lucky = (pl.col("lr") == 2.0**-4) & (pl.col("seed") == 2)
    runs = runs.with_columns(
        status=pl.when(unstable).then(pl.lit("diverged")).otherwise(pl.col("status")),
        final_train_loss=pl.when(unstable)
        .then(None)
        .when(lucky)
        .then(0.01)
        .otherwise(pl.col("final_train_loss")),
    )
    curve = lr_curves(runs).filter(pl.col("lr") == 2.0**-4).row(0, named=True)
    assert curve["diverged"] and curve["diverged_share"] == pytest.approx(2 / 3)
    assert abs(optimal_lr(runs)["log2_lr_grid"][0] + 7.0) <= 1.0
    survivors = optimal_lr(runs, divergence="all")  # asked for explicitly
    assert survivors["log2_lr_grid"][0] == -4.0


def test_optimal_lr_interval_covers_at_the_nominal_rate_over_500_draws():
    rng = np.random.default_rng(25)
    covered = 0
    for _ in range(500):
        row = optimal_lr(synthetic_runs({64: -7.3}, rng)).row(0, named=True)
        covered += row["log2_lr_lo"] <= -7.3 <= row["log2_lr_hi"]
    assert abs(covered / 500 - 0.95) <= 0.03, covered / 500


def test_drift_interval_covers_the_true_slope_over_500_sweeps():
    rng = np.random.default_rng(26)
    widths = [32, 64, 128, 256, 512]
    covered = 0
    for _ in range(500):
        optima = {w: -6.0 - (np.log2(w) - 5) + rng.normal(0, 0.15) for w in widths}
        row = drift(optimal_lr(synthetic_runs(optima, rng, noise=0.02))).row(0, named=True)
        covered += row["slope_lo"] <= -1.0 <= row["slope_hi"]
    assert abs(covered / 500 - 0.95) <= 0.03, covered / 500


def test_loss_prediction_defaults_to_parameter_count_and_seed_noise():
    rng = np.random.default_rng(27)
    floors = {32: 0.9, 64: 0.7, 128: 0.6, 256: 0.55, 512: 0.53, 1024: 0.52}
    runs = synthetic_runs({w: -6.0 for w in floors}, rng, floor=floors, noise=0.005)
    runs = runs.with_columns(n_params=pl.col("width") ** 2 + 100 * pl.col("width"))
    frame = transferred(runs)
    assert frame["loss_transferred_se"].is_not_null().all()
    out = predict_loss(frame, fit_up_to=256**2 + 100 * 256)
    assert "n_params" in out.columns and out["interval"].all()
    far = out.filter(pl.col("n_params") == out["n_params"].max()).row(0, named=True)
    assert far["predicted_lo"] <= far["loss"] <= far["predicted_hi"]


def test_a_drift_with_no_two_sizes_is_empty_but_has_every_column():
    from toolkit.analysis.transfer import drift

    optima = pl.DataFrame({"parametrization": ["mup"], "width": [64], "fit": ["ok"],
                           "censored": [None], "log2_lr_opt": [-7.0], "log2_lr_grid": [-7.0],
                           "log2_lr_se": [0.2], "log2_lr_df": [3.0]})  # fmt: skip
    out = drift(optima, axis="width")
    assert out.height == 0
    assert {"parametrization", "axis", "slope", "slope_lo", "status"} <= set(out.columns)
    assert out.filter(pl.col("parametrization") == "mup").height == 0  # what plots do


def _decay_runs(steps_of) -> pl.DataFrame:
    """AdamW runs whose best weight decay is ``B / 2^9`` at each batch size ``B`` (two
    seeds, a little seed noise), at ``steps_of(B)`` steps."""
    rng = np.random.default_rng(3)
    return pl.DataFrame(
        {"parametrization": "mup", "optimizer": "adamw", "width": 128, "lr": 2.0**-6,
         "batch_size": b, "steps": steps_of(b), "weight_decay": 2.0**x, "seed": s,
         "status": "ok",
         "final_train_loss": 1.0 + 0.02 * (x - math.log2(b) + 9) ** 2 + 1e-3 * rng.normal()}
        for b in (32, 64, 128, 256, 512) for x in range(-8, 3) for s in (0, 1)
    )  # fmt: skip


def test_along_the_batch_size_at_fixed_examples_the_optimal_weight_decay_grows_with_it():
    runs = _decay_runs(lambda b: 256_000 // b)
    optima = optimal_hyperparameter(runs, "weight_decay")
    line = drift(optima, axis="batch_size").row(0, named=True)
    assert line["points"] == 5 and line["status"] == "ok"
    assert line["slope_lo"] < 1.0 < line["slope_hi"] and abs(line["slope"] - 1.0) < 0.05


def test_along_the_batch_size_steps_that_do_not_fix_the_examples_are_refused():
    runs = _decay_runs(lambda b: 2000 if b < 256 else 1000)
    optima = optimal_hyperparameter(runs, "weight_decay")
    with pytest.raises(InputError, match="steps x batch_size fixed"):
        drift(optima, axis="batch_size")
