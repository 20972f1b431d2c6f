"""The coordinate check's statistics: slope intervals cover at their nominal rate, the
verdict judges the mean slope against the tolerance, and a diverged member is never
averaged away."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from toolkit.analysis.coord_check import seed_mean, verdict
from toolkit.errors import InputError

WIDTHS = (256, 512, 1024, 2048)


def _per_seed(
    slopes: dict[str, float],
    *,
    seeds: int = 4,
    seed_scatter: float = 0.05,
    noise: float = 0.05,
    rng: np.random.Generator,
    role: str = "hidden",
) -> pl.DataFrame:
    """Synthetic coordinate-check rows: log2(l1) = c + (slope + seed's own deviation)
    * log2(width) + noise, one layer per entry of ``slopes``."""
    rows = []
    for layer, slope in slopes.items():
        for seed in range(seeds):
            own = slope + seed_scatter * rng.standard_normal()
            for width in WIDTHS:
                log_size = -1.0 + own * math.log2(width) + noise * rng.standard_normal()
                rows.append({"width": width, "seed": seed, "layer": layer, "role": role,
                             "step": 1, "stat": "l1", "value": 2.0**log_size,
                             "diverged": False})  # fmt: skip
    return pl.DataFrame(rows)


@pytest.mark.parametrize("level", [0.95, 0.90])
def test_the_slope_interval_covers_the_true_slope_at_its_nominal_rate(level):
    rng = np.random.default_rng(0)
    draws = 1000
    truth = {f"draw{i}": float(rng.uniform(-1, 1)) for i in range(draws)}
    frame = _per_seed(truth, rng=rng)
    table = verdict(frame, level=level)
    assert table.height == draws
    true = pl.Series([truth[layer] for layer in table["layer"]])
    covered = ((table["slope_lo"] <= true) & (true <= table["slope_hi"])).mean()
    assert abs(covered - level) < 0.03, covered


def test_the_verdict_judges_the_mean_slope_against_the_tolerance():
    rng = np.random.default_rng(1)
    frame = _per_seed({"flat": 0.0, "growing": 0.5, "shrinking": -0.5, "noisy": 0.0}, rng=rng)
    noisy = _per_seed({"noisy": 0.02}, seed_scatter=0.3, rng=rng)
    frame = pl.concat([frame.filter(pl.col("layer") != "noisy"), noisy])
    table = {row["layer"]: row for row in verdict(frame, tolerance=0.1).iter_rows(named=True)}
    assert table["flat"]["pass"] and table["flat"]["settled"]
    assert not table["growing"]["pass"] and table["growing"]["settled"]
    assert "changes with width" in table["growing"]["reason"]
    assert not table["shrinking"]["pass"]
    # a wide interval straddling the tolerance: judged on the mean, marked unsettled
    assert abs(table["noisy"]["slope"]) < 0.1 and table["noisy"]["pass"]
    assert not table["noisy"]["settled"] and table["noisy"]["slope_hi"] > 0.1


def test_a_shrinking_readout_passes_and_a_growing_one_fails():
    rng = np.random.default_rng(2)
    frame = _per_seed({"readout": -0.5}, rng=rng, role="output")
    assert verdict(frame)["pass"].all()
    frame = _per_seed({"readout": 0.3}, rng=rng, role="output")
    (row,) = verdict(frame).iter_rows(named=True)
    assert not row["pass"] and "grows with width" in row["reason"]


def test_a_diverged_member_fails_its_row_and_is_never_averaged_away():
    rng = np.random.default_rng(3)
    frame = _per_seed({"hidden1": 0.0}, rng=rng)
    blown = (pl.col("width") == 2048) & (pl.col("seed") == 1)
    frame = frame.with_columns(
        value=pl.when(blown).then(math.inf).otherwise(pl.col("value")), diverged=blown
    )
    (row,) = verdict(frame).iter_rows(named=True)
    assert not row["pass"] and row["diverged_widths"] == [2048]
    assert row["reason"] == "diverged at width 2048"
    assert row["seeds"] == 3  # the slope is fitted only where every value is finite
    mean = seed_mean(frame).filter(pl.col("width") == 2048).row(0, named=True)
    assert mean["value"] == math.inf and mean["diverged"] and mean["seeds_diverged"] == 1
    assert not seed_mean(frame).filter(pl.col("width") == 256)["diverged"].any()


def test_a_verdict_needs_three_widths_and_a_positive_tolerance():
    frame = _per_seed({"hidden1": 0.0}, rng=np.random.default_rng(4))
    with pytest.raises(InputError, match="at least 3 widths"):
        verdict(frame.filter(pl.col("width") <= 512))
    with pytest.raises(InputError, match="tolerance=-0.1"):
        verdict(frame, tolerance=-0.1)


def test_importing_the_statistics_imports_no_torch():
    code = "import sys, toolkit.analysis.coord_check; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
