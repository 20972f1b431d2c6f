"""Claims about the sharpness-across-width analysis, on synthetic runs with a known exponent."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from toolkit.analysis.sharpness import (
    FIT_OK,
    FIT_TOO_FEW,
    seed_means,
    sharpness_frame,
    width_exponent,
)
from toolkit.errors import InputError

WIDTHS = (32, 64, 128, 256, 512)


def _frame(exponents: dict[str, float], *, draws: int = 1, seeds: int = 2, noise: float = 0.1,
           scatter: float = 0.0, seed: int = 0) -> pl.DataFrame:  # fmt: skip
    """:func:`sharpness_frame`-shaped rows: ``lambda_max = 3 * width**k`` per
    parametrization, times a per-width departure (sd ``scatter`` in log2) and per-seed noise
    (sd ``noise`` in log2); each draw is one ``step``."""
    rng = np.random.default_rng(seed)
    rows = []
    for parametrization, k in exponents.items():
        for step in range(draws):
            for width in WIDTHS:
                centre = math.log2(3.0) + k * math.log2(width) + rng.normal(0, scatter)
                for s in range(seeds):
                    rows.append({"run_id": f"{parametrization}-{step}-{width}-{s}", "step": step,
                                 "parametrization": parametrization, "optimizer": "adam",
                                 "lr": 0.01, "width": width, "seed": s, "iterations": 10,
                                 "converged": True,
                                 "sharpness": 2.0 ** (centre + rng.normal(0, noise))})  # fmt: skip
    return pl.DataFrame(rows)


def test_the_exponent_recovers_a_known_slope_per_parametrization():
    fits = width_exponent(_frame({"mup": 0.0, "sp": 0.5}, noise=0.01))
    by = {row["parametrization"]: row for row in fits.iter_rows(named=True)}
    assert by["mup"]["exponent"] == pytest.approx(0.0, abs=0.02)
    assert by["mup"]["intercept"] == pytest.approx(math.log2(3.0), abs=0.1)
    assert by["sp"]["exponent"] == pytest.approx(0.5, abs=0.02)
    for row in by.values():
        assert row["status"] == FIT_OK and row["widths"] == 5 and row["seeds"] == 10
        assert row["exponent_lo"] < row["exponent"] < row["exponent_hi"]
    assert by["sp"]["exponent_lo"] > by["mup"]["exponent_hi"]


def test_the_interval_covers_the_true_exponent_at_the_nominal_rate():
    """The study's shape (5 widths, 2 seeds), seed noise and a per-width departure."""
    draws = 600
    for scatter in (0.0, 0.1):
        fits = width_exponent(_frame({"mup": 0.25}, draws=draws, noise=0.2, scatter=scatter,
                                     seed=7))  # fmt: skip
        covered = ((fits["exponent_lo"] <= 0.25) & (fits["exponent_hi"] >= 0.25)).mean()
        assert abs(covered - 0.95) <= 0.03, (scatter, covered)


def test_unconverged_and_diverged_runs_are_left_out_and_counted():
    frame = _frame({"mup": 0.0}, noise=0.0)
    drop = pl.col("width").is_in([32, 64, 128]) & (pl.col("seed") == 0)
    frame = frame.with_columns(
        converged=pl.when(drop).then(False).otherwise(pl.col("converged")),
        sharpness=pl.when((pl.col("width") == 256) & (pl.col("seed") == 1))
        .then(math.nan).otherwise(pl.col("sharpness")),
    )  # fmt: skip
    means = seed_means(frame)
    assert means["seeds"].to_list() == [1, 1, 1, 1, 2]
    assert means["excluded"].to_list() == [1, 1, 1, 1, 0]
    assert means["value"].to_list() == pytest.approx([3.0] * 5)
    assert means["lo"].to_list() == pytest.approx([3.0] * 5)
    fit = width_exponent(frame).row(0, named=True)
    assert fit["excluded"] == 4 and fit["seeds"] == 6 and fit["status"] == FIT_OK
    few = width_exponent(frame.filter(pl.col("width") <= 64)).row(0, named=True)
    assert few["status"] == FIT_TOO_FEW and math.isnan(few["exponent"])


def test_the_frame_is_read_from_probe_rows_and_runs():
    stats = ["sharpness", "sharpness_iters", "sharpness_converged"]
    probes = pl.DataFrame({
        "run_id": ["a"] * 6 + ["b"] * 6, "step": [5] * 12, "layer": ["model"] * 12,
        "role": ["model"] * 12, "stat": (stats + [f"preconditioned_{s}" for s in stats]) * 2,
        "value": [2.0, 12.0, 1.0, 0.02, 11.0, 1.0, 4.0, 64.0, 0.0, 0.04, 9.0, 1.0],
    })  # fmt: skip
    runs = pl.DataFrame({"run_id": ["a", "b"], "parametrization": ["mup", "sp"],
                         "optimizer": ["adam"] * 2, "lr": [0.01] * 2, "width": [32, 64],
                         "seed": [0, 0]})  # fmt: skip
    frame = sharpness_frame(probes, runs, stat="sharpness")
    assert frame["sharpness"].to_list() == [2.0, 4.0]
    assert frame["converged"].to_list() == [True, False]
    assert frame["iterations"].to_list() == [12, 64]
    assert frame["width"].to_list() == [32, 64]
    scaled = sharpness_frame(probes, runs)
    assert scaled["sharpness"].to_list() == [0.02, 0.04]
    assert scaled["iterations"].to_list() == [11, 9]
    assert set(scaled["stat"]) == {"preconditioned_sharpness"}
    with pytest.raises(InputError, match="stat='hessian'"):
        sharpness_frame(probes, runs, stat="hessian")
