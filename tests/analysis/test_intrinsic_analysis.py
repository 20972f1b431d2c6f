"""d_int from stored measurements: bootstrap intervals, scaling exponents, the shipped numbers."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from toolkit.analysis import intrinsic


def test_bootstrap_interval_widens_with_seed_noise():
    frame = pl.DataFrame(
        {
            "d": [8, 8, 16, 16, 32, 32] * 2,
            "seed": [0, 1] * 6,
            "metric": [0.1, 0.2, 0.5, 0.95, 0.9, 1.0] + [0.1, 0.2, 0.5, 0.95, 0.9, 1.0],
        }
    ).with_columns(seed=pl.col("seed") + 2 * (pl.int_range(pl.len()) >= 6))
    baseline = pl.DataFrame({"seed": [0, 1, 2, 3], "metric": [1.0] * 4})
    result = intrinsic.estimate_intrinsic_dim(frame, baseline, D=100, threshold=0.7)
    assert result.estimate == 16  # mean 0.725 at d = 16
    assert (result.lo, result.hi) == (16, 32)
    unreachable = intrinsic.estimate_intrinsic_dim(frame, baseline, D=100, threshold=1.0)
    assert unreachable.estimate == math.inf


def test_scaling_exponent_recovers_a_known_power_law():
    D = np.array([1000, 4000, 16000, 64000])
    table = pl.DataFrame({
        "task": "digits", "parametrization": "sp", "projection": "fastfood", "depth": 2,
        "D": D, "d_int": 7.0 * D**0.25,
    })  # fmt: skip
    table = pl.concat([table, table.head(1).with_columns(d_int=pl.lit(math.inf))])
    fit = intrinsic.d_int_scaling(table).row(0, named=True)
    assert fit["exponent"] == pytest.approx(0.25)
    assert fit["exponent_lo"] == pytest.approx(0.25) and fit["points"] == 4  # inf left out
    assert fit["intercept"] == pytest.approx(math.log2(7.0))


def test_d_int_vs_D_gives_finite_points_and_a_fit_per_series():
    D = np.array([1000, 4000, 16000])
    table = pl.DataFrame({
        "task": "digits", "parametrization": ["sp"] * 3 + ["mup"] * 3, "D": np.tile(D, 2),
        "d_int": [100.0, 200.0, 400.0, 50.0, 50.0, math.inf],
        "d_int_lo": [90.0, 180.0, 350.0, 40.0, 45.0, math.inf],
        "d_int_hi": [110.0, 220.0, 450.0, 60.0, 55.0, math.inf],
    })  # fmt: skip
    points, fits = intrinsic.d_int_vs_D(table, series=("task", "parametrization"))
    assert points.columns == ["series", "D", "value", "lo", "hi"]
    assert points.height == 5 and set(points["series"]) == {"digits sp", "digits mup"}
    exponents = dict(fits.select("series", "exponent").iter_rows())
    assert exponents["digits sp"] == pytest.approx(0.5)
    assert exponents["digits mup"] == pytest.approx(0.0, abs=1e-12)  # two points: no interval


def test_threshold_keys_name_the_percentage():
    assert intrinsic.threshold_key(0.9) == "d_int90"
    assert intrinsic.threshold_key(0.875) == "d_int87.5"


def test_reading_measurements_imports_no_torch():
    code = (
        "import sys, toolkit.analysis.intrinsic as a; a.d_int_table(a.load_measurements()); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_shipped_numbers_the_notebook_quotes():
    table = intrinsic.d_int_table(intrinsic.load_measurements(), threshold=0.9)

    def d_int(task, parametrization, width, depth=2, projection="fastfood"):
        row = table.filter(pl.col("task") == task, pl.col("parametrization") == parametrization,
                           pl.col("width") == width, pl.col("depth") == depth,
                           pl.col("projection") == projection)  # fmt: skip
        return row["d_int"].item()

    assert [d_int("mnist1d", "sp", w) for w in (32, 64, 128, 256)] == [1741, 3797, 11337, math.inf]
    assert [d_int("mnist1d", "mup", w) for w in (64, 128, 256)] == [2991, 10284, 11585]
    assert [d_int("digits", "sp", 64, depth) for depth in (1, 2, 3, 4)] == [166, 208, 248, 285]
    projections = ("dense", "sparse", "fastfood")
    assert [d_int("digits", "sp", 32, 2, p) for p in projections] == [220, 217, 227]
    assert [d_int("digits", "sp", 64, 2, p) for p in projections] == [227, 193, 208]


def test_a_best_subspace_lr_at_the_grid_edge_is_censored_and_best_only_stores_say_unknown():
    from toolkit.analysis.intrinsic_interval import lr_choices

    frame = pl.DataFrame({
        "d": [8] * 3 + [16] * 3, "seed": 0, "lr": [0.01, 0.1, 1.0] * 2,
        "metric": [0.5, 0.4, 0.3, 0.5, 0.7, 0.6],
    })  # fmt: skip
    choices = lr_choices(frame, every_lr=True)
    assert choices.select("d", "lr", "lr_fit", "censored").rows() == [
        (8, 0.01, "grid-edge", "below"), (16, 0.1, "ok", None)]  # fmt: skip
    assert set(lr_choices(frame, every_lr=False)["lr_fit"]) == {"unknown"}
    shipped = intrinsic.d_int_table(intrinsic.load_measurements())  # keeps every LR's runs
    assert shipped["every_lr"].all()
    assert set(shipped["lr_fit"].drop_nulls()) <= {"ok", "grid-edge"}


def test_each_seed_is_read_at_the_lr_the_other_seeds_pick():
    from toolkit.analysis.intrinsic_interval import cross_fitted

    # LRs x seeds. Seeds 1 and 2 favour LR 0; seed 0's lucky 0.99 at LR 1 makes LR 1
    # the seed-mean best, but seed 0 is read where seeds 1 and 2 point (LR 0).
    values = np.array([[0.80, 0.90, 0.90],
                       [0.99, 0.70, 0.85],
                       [-np.inf, 0.60, 0.60]])  # fmt: skip
    assert cross_fitted(values).tolist() == [[0.80, 0.70, 0.90]]
    assert cross_fitted(values[:, :1]).tolist() == [[0.99]]  # one seed: its own best


def test_the_jackknife_corrects_the_best_seed_mean_for_its_selection():
    from toolkit.analysis.intrinsic_interval import jackknifed

    values = np.array([[0.80, 0.90, 0.90],
                       [0.99, 0.70, 0.85],
                       [-np.inf, 0.60, 0.60]])  # fmt: skip
    # Best mean 0.8667 (LR 0); without seed 0 the best is LR 0 (0.90), without seed 1
    # LR 1 (0.92), without seed 2 LR 0 (0.85): pseudo-values 3 * 0.8667 - 2 * those.
    pseudo = jackknifed(values)[0]
    np.testing.assert_allclose(pseudo, [2.6 - 1.8, 2.6 - 1.84, 2.6 - 1.7])
    assert pseudo.mean() < values.mean(1).max()  # the winner's curse is taken off
    np.testing.assert_array_equal(jackknifed(values[:1]), values[:1])  # one LR: the seeds
    assert jackknifed(values[:, :1]).tolist() == [[0.99]]  # one seed: its own best
    assert jackknifed(np.full((2, 3), -np.inf)).tolist() == [[-np.inf] * 3]
