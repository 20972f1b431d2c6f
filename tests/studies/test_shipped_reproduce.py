"""The shipped stores are what the engine computes today: the cheapest group of every
shipped sweep, trained again from its spec, reproduces its stored batch losses.

Only the first steps are compared, at a relative tolerance: floating-point sums may differ
in the last digits on another machine, and training amplifies such differences over the
steps (most at large learning rates). A change of the engine that changes what a run
computes (a rule, an initialisation, the data order) moves the first steps by far more,
and then the stores must be regenerated (``make data``)."""

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
"""Relative tolerance on each of them."""
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
    both = again.join(shipped, on=["run_id", "step"], suffix="_shipped")
    steps = min(EARLY_STEPS, group.config.steps)
    assert both.height == again.height == len(group.members) * steps
    off = both.filter(
        (pl.col("value") - pl.col("value_shipped")).abs() > RTOL * pl.col("value_shipped").abs()
    )
    assert off.is_empty(), off.head()
