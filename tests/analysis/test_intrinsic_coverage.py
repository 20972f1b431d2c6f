"""Coverage of the d_int interval and of the d_int scaling exponent on synthetic truths."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from toolkit.analysis import intrinsic
from toolkit.studies.intrinsic_search import sweep_intrinsic_dim
from toolkit.studies.intrinsic_settings import DSearch, log_grid

TRUE_CROSSING = 300.0
"""``d`` where the synthetic curve's best LR reaches 90% of the baseline."""


def plateau_draw(rng: np.random.Generator, *, lrs: int, curvature: float) -> tuple[bool, bool]:
    """One refined d-search on a curve like the shipped plateaus, 3 seeds.

    Performance ``0.98 * (0.9 + 0.08 log2(d / 300))`` (slope and level of the
    shipped curves near their crossing), minus ``curvature * (steps from the LR
    optimum)**2`` over a grid of ``lrs`` LRs two octaves apart, plus a seed effect
    shared by every run of the seed (sd 0.01) and run noise (sd 0.01): total
    seed sd 0.014 as in the shipped measurements. Returns ``(covered, below)``.
    """
    seeds, grid = 3, np.arange(lrs) - lrs // 2
    optimum = rng.uniform(-0.5, 0.5)
    effect = rng.normal(0.0, 0.01, seeds)
    baseline = pl.DataFrame({"seed": range(seeds), "metric": 0.98 + rng.normal(0, 0.01, seeds)})

    def mean(d: float, step: float) -> float:
        level = np.clip(0.9 + 0.08 * np.log2(d / TRUE_CROSSING), 0.05, 1.0)
        return 0.98 * level - curvature * (step - optimum) ** 2

    def measure(ds: list[int]) -> pl.DataFrame:
        return pl.DataFrame([
            {"d": d, "seed": s, "lr": 2.0 ** (2 * step),
             "metric": mean(d, step) + effect[s] + rng.normal(0.0, 0.01)}
            for d in ds for s in range(seeds) for step in grid
        ])  # fmt: skip

    search = DSearch(grid=tuple(log_grid(5000)), confidence=0.9)
    result = sweep_intrinsic_dim(measure, baseline, D=5000, search=search)
    ds = np.sort(result.frame["d"].unique().to_numpy())
    best = np.array([max(mean(d, step) for step in grid) for d in ds])
    truth = ds[np.argmax(best >= 0.9 * 0.98)]
    return result.lo <= truth <= result.hi, truth < result.lo


@pytest.mark.slow
def test_the_90_percent_interval_covers_d_int_at_the_default_three_seeds():
    rng = np.random.default_rng(0)
    covered = np.mean([plateau_draw(rng, lrs=1, curvature=0.0)[0] for _ in range(500)])
    assert abs(covered - 0.9) <= 0.03


@pytest.mark.slow
@pytest.mark.parametrize("curvature", [0.01, 0.003], ids=["clear-optimum", "nearly-tied"])
def test_the_90_percent_interval_covers_d_int_with_the_lr_chosen_among_five(curvature):
    rng = np.random.default_rng(1)
    covered = np.mean([plateau_draw(rng, lrs=5, curvature=curvature)[0] for _ in range(500)])
    assert abs(covered - 0.9) <= 0.03


def test_the_exponent_interval_covers_the_true_exponent():
    rng = np.random.default_rng(2)
    D = 1000.0 * 2.0 ** np.arange(6)
    hits = []
    for _ in range(500):
        se = rng.uniform(0.05, 0.3, len(D))  # log2 d_int errors like the shipped intervals'
        log2_d = math.log2(50.0) + 0.25 * np.log2(D) + rng.normal(0.0, se)
        z = 1.6448536269514722  # the 90% normal quantile of the d_int intervals
        table = pl.DataFrame({
            "task": "digits", "parametrization": "sp", "projection": "fastfood", "depth": 2,
            "D": D, "d_int": 2.0**log2_d, "d_int_lo": 2.0 ** (log2_d - z * se),
            "d_int_hi": 2.0 ** (log2_d + z * se), "confidence": 0.9,
        })  # fmt: skip
        fit = intrinsic.d_int_scaling(table, level=0.95).row(0, named=True)
        hits.append(fit["exponent_lo"] <= 0.25 <= fit["exponent_hi"])
    assert fit["method"] == "meta-regression"
    assert abs(np.mean(hits) - 0.95) <= 0.03


def test_the_exponent_interval_is_at_least_as_wide_as_its_points_imply():
    D = np.array([1000.0, 4000.0, 16000.0])
    table = pl.DataFrame({
        "task": "digits", "parametrization": "sp", "projection": "fastfood", "depth": 2,
        "D": D, "d_int": [100.0, 200.0, 400.0], "d_int_lo": [50.0, 100.0, 200.0],
        "d_int_hi": [200.0, 400.0, 800.0], "confidence": 0.9,
    })  # fmt: skip
    fit = intrinsic.d_int_scaling(table).row(0, named=True)
    assert fit["exponent"] == pytest.approx(0.5)
    assert fit["exponent_hi"] - fit["exponent_lo"] > 0.5  # points are +-1 octave, 2 octaves apart
