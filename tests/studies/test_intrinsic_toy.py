"""Li et al.'s toy problem: its intrinsic dimension is the number of constraints, on every
projection the toolkit trains subspaces with."""

from __future__ import annotations

import pytest

from toolkit import store as results
from toolkit.analysis.intrinsic import toy_d_int
from toolkit.engine.catalogue import PROJECTIONS
from toolkit.errors import InputError
from toolkit.paths import DATA, STUDIES
from toolkit.studies.intrinsic_toy import measure, read_spec, run_spec
from toolkit.ui.cli import main

SPEC = """kind = "intrinsic-toy"
parameters = 120
groups = 6
projections = ["dense", "sparse", "fastfood"]
seeds = 3
max_d = 9
"""


@pytest.mark.parametrize("projection", sorted(PROJECTIONS))
def test_a_subspace_holds_an_exact_minimum_once_it_has_as_many_dimensions_as_constraints(
    projection,
):
    losses, initial = measure(projection, parameters=120, groups=6, seed=4, max_d=9)
    relative = {d: loss / initial for d, loss in losses}
    assert all(relative[d] > 1e-6 for d in range(1, 6))  # fewer dimensions: no solution
    assert all(relative[d] < 1e-20 for d in range(6, 10))
    assert relative[1] <= 1.0  # the best point of a subspace is no worse than theta0


def test_the_study_stores_every_projection_once_and_its_d_int_is_the_constraint_count(
    tmp_path,
):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC)
    out = tmp_path / "store"
    run_spec(spec, out, quiet=True)
    files = sorted(p.name for p in (out / "runs").glob("*.parquet"))
    assert len(files) == 3
    table = toy_d_int(results.open(out).runs().collect())
    assert table.height == 9 and table["d_int"].to_list() == [6] * 9
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    run_spec(spec, out, quiet=True)  # resumed: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")} == stamps


def test_too_few_dimensions_leave_d_int_null():
    import polars as pl

    rows = [{"projection": "dense", "seed": 0, "D": 10, "groups": 5, "d": d,
             "final_train_loss": 1.0, "initial_loss": 2.0} for d in (1, 2, 3)]  # fmt: skip
    assert toy_d_int(pl.DataFrame(rows))["d_int"].to_list() == [None]


@pytest.mark.parametrize(("change", "needle"), [
    (("groups = 6", "groups = 7"), "multiple of groups=7"),
    (('"fastfood"]', '"fastfood", "hadamard"]'), "hadamard"),
    (("max_d = 9", "max_d = 0"), "max_d"),
    (("seeds = 3", "seeds = 3\nsteps = 10"), "unknown setting 'steps'"),
])  # fmt: skip
def test_a_bad_spec_is_refused_by_name(tmp_path, change, needle):
    spec = tmp_path / "toy.toml"
    spec.write_text(SPEC.replace(*change))
    with pytest.raises(InputError, match=needle):
        read_spec(spec)
    assert main(["sweep", "--spec", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_the_shipped_store_is_the_shipped_spec():
    settings = read_spec(STUDIES / "intrinsic_toy.toml")
    table = toy_d_int(results.open(DATA / "intrinsic_toy").runs().collect())
    assert set(table["projection"]) == set(settings["projections"])
    assert table.height == settings["seeds"] * len(settings["projections"])
    assert table["d_int"].to_list() == [settings["groups"]] * table.height
