"""The shipped stores are what the engine computes today: the cheapest group of every
shipped sweep, trained again from its spec, reproduces its stored batch losses.

Floating-point sums differ in the last digits between machines (another CPU takes other
matrix-product kernels), and training amplifies such differences: Adam turns a gradient
coordinate's sign, flipped by rounding, into a whole step, so on another machine a single
run of a group can leave its stored curve by a percent within 20 steps while its siblings
agree to 1e-7 (measured on an AMD EPYC machine against stores made on an Intel Xeon). So
the check has two parts, each far beyond what rounding does and far inside what a change
of the engine does (a rule, an initialisation, the data order): every run agrees on its
first steps, before amplification, and most runs agree on all the compared steps.
"""

from __future__ import annotations

import polars as pl
import pytest

from toolkit import store as results
from toolkit.paths import DATA, STUDIES
from toolkit.studies.kinds import spec_kind
from toolkit.studies.sweep import SweepSpec, plan, train_group

EARLY_STEPS = 20
"""Steps of each run's batch loss compared (all of a shorter run's)."""
RTOL = 1e-3
"""Relative tolerance on each of them, for most runs (:data:`AGREEING`)."""
AGREEING = 0.75
"""Share of a group's runs that must agree on every compared step."""
FIRST_STEPS = 5
"""Steps on which every run must agree, at :data:`FIRST_RTOL`."""
FIRST_RTOL = 1e-4
"""Relative tolerance of the first steps (rounding moved them by at most 7e-6)."""
SLOW = {"transformer_transfer"}
"""Studies whose cheapest group takes more than a few seconds (slow tests)."""

SWEEPS = [
    pytest.param(p, marks=[pytest.mark.slow] if p.stem in SLOW else [], id=p.stem)
    for p in sorted(STUDIES.glob("*.toml"))
    if spec_kind(p) == "sweep" and (DATA / p.stem / "store.json").exists()
]


def _early(curves: pl.DataFrame) -> pl.DataFrame:
    return curves.filter(pl.col("split") == "batch", pl.col("step") < EARLY_STEPS).select(
        "run_id", "step", "value"
    )


@pytest.mark.parametrize("path", SWEEPS)
def test_the_cheapest_group_of_a_shipped_study_trains_again_to_its_stored_losses(path, tmp_path):
    group = min(plan(SweepSpec.from_toml(path)).groups, key=lambda g: g.seconds)
    train_group(group, results.Store(tmp_path / "again"))
    again = _early(results.open(tmp_path / "again").curves().collect())
    shipped = _early(results.open(DATA / path.stem).curves().collect())
    both = again.join(shipped, on=["run_id", "step"], suffix="_shipped").with_columns(
        off=(pl.col("value") - pl.col("value_shipped")).abs() / pl.col("value_shipped").abs()
    )
    steps = min(EARLY_STEPS, group.config.steps)
    assert both.height == again.height == len(group.members) * steps
    first = both.filter(pl.col("step") < FIRST_STEPS, pl.col("off") > FIRST_RTOL)
    assert first.is_empty(), first.head()
    worst = both.group_by("run_id").agg(pl.col("off").max())
    agreeing = worst.filter(pl.col("off") <= RTOL).height
    assert agreeing >= AGREEING * worst.height, worst.sort("off", descending=True).head()
