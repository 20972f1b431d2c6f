"""The intrinsic-dimension study: measurements kept in a results store, resumed, re-estimated."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import polars as pl
import pytest

from toolkit.analysis import intrinsic
from toolkit.studies.intrinsic import read_spec, run_spec, run_study
from toolkit.ui.cli import main

SPEC = """
kind = "intrinsic-dimension"
model = "mlp"
task = "digits"
optimizers = ["adam"]
lrs = "2^-9:2^-5:3"
seeds = 2
steps = [20]
batch_sizes = [64]
base_width = 8

[[grid]]
parametrizations = ["sp"]
widths = [8]
depths = [1]
projections = ["dense", "fastfood"]

[[grid]]
parametrizations = ["mup"]
widths = [8, 16]
depths = [1]
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("intrinsic")
    (root / "spec.toml").write_text(SPEC)
    out = root / "measurements"
    argv = ["intrinsic-dim", "--spec", str(root / "spec.toml"), "--out", str(out), "--json"]
    first = subprocess.run([sys.executable, "-m", "toolkit", *argv], capture_output=True,
                           text=True, check=True)  # fmt: skip
    files = sorted((out / "runs").glob("*.parquet"))
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*.parquet")}
    second = subprocess.run([sys.executable, "-m", "toolkit", *argv], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return {"out": out, "files": files, "stamps": stamps, "first": first, "second": second}


def _spec_file(directory, text=SPEC):
    path = directory / "spec.toml"
    path.write_text(text)
    return path


def _copy_store(study, out):
    for file in study["out"].rglob("*"):
        if file.is_file():
            target = out / file.relative_to(study["out"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())


def test_every_measurement_of_the_spec_is_stored_once_and_not_repeated(study):
    names = sorted(f.name.rsplit("-", 1)[0] for f in study["files"])
    assert names == ["digits-mup-fastfood-w16-d1", "digits-mup-fastfood-w8-d1",
                     "digits-sp-dense-w8-d1", "digits-sp-fastfood-w8-d1"]  # fmt: skip
    assert {f: f.stat().st_mtime_ns for f in study["out"].rglob("*.parquet")} == study["stamps"]
    assert "D = " in study["first"].stderr
    assert "D = " not in study["second"].stderr  # nothing measured the second time
    first, second = json.loads(study["first"].stdout), json.loads(study["second"].stdout)
    assert first == second
    keys = {"width", "depth", "parametrization", "projection", "D", "baseline", "d_int90",
            "d_int90_lo", "d_int90_hi"}  # fmt: skip
    assert all(set(r) == keys for r in first) and len(first) == 4
    assert not list(study["out"].rglob(".*.tmp"))


def test_measurements_are_groups_of_the_results_store_with_the_run_contract_columns(study):
    from toolkit.store import SCHEMAS, open

    runs = open(study["out"]).runs().collect()
    assert set(SCHEMAS["runs"]) <= set(runs.columns)
    assert runs["run_id"].n_unique() == runs.height
    assert set(runs["study"]) == {"intrinsic_dimension"}
    assert set(runs["measurement"]) == {f.stem for f in study["files"]}
    baseline = runs.filter(pl.col("kind") == "baseline")
    assert baseline.height == 4 * 2  # one row per seed of each measurement
    assert runs.filter(pl.col("kind") == "subspace")["d"].is_not_null().all()
    assert (runs["wall_s"] > 0).all() and runs["created_at"].is_not_null().all()


def test_stored_seeds_reproduce_the_estimate_and_lower_thresholds_need_fewer_dimensions(study):
    frame = intrinsic.load_measurements(study["out"])
    assert set(frame["kind"]) == {"baseline", "subspace"}
    assert frame.filter(pl.col("kind") == "baseline")["d"].is_null().all()
    printed = {(r["parametrization"], r["projection"], r["width"]): r
               for r in json.loads(study["first"].stdout)}  # fmt: skip
    table = intrinsic.d_int_table(frame, threshold=0.9)

    def as_json(value: float) -> float | None:  # the command line prints infinities as null
        return value if math.isfinite(value) else None

    for row in table.iter_rows(named=True):
        record = printed[(row["parametrization"], row["projection"], row["width"])]
        assert as_json(row["d_int"]) == record["d_int90"]
        assert (as_json(row["d_int_lo"]), as_json(row["d_int_hi"])) == (
            record["d_int90_lo"], record["d_int90_hi"])  # fmt: skip
        assert row["d_int_lo"] <= row["d_int"] <= row["d_int_hi"]
        assert row["D"] == record["D"]
    lower = intrinsic.d_int_table(frame, threshold=0.5)
    assert (lower["d_int"] <= table["d_int"]).all()
    assert (lower["d_int"] < table["d_int"]).any()


def test_performance_curves_are_fractions_of_the_seed_mean_baseline(study):
    frame = intrinsic.load_measurements(study["out"])
    curves = intrinsic.performance_curves(frame)
    one = frame.filter(pl.col("parametrization") == "mup", pl.col("width") == 16)
    baseline = one.filter(pl.col("kind") == "baseline")["metric"].mean()
    row = curves.filter(pl.col("parametrization") == "mup", pl.col("width") == 16).row(
        0, named=True
    )
    seeds = one.filter(pl.col("d") == row["d"], pl.col("lr") == row["lr"])["metric"]  # its LR
    assert row["metric"] == pytest.approx(seeds.mean())
    assert row["metric_lo"] == seeds.min() and row["metric_hi"] == seeds.max()
    assert row["fraction"] == pytest.approx(seeds.mean() / baseline)


def test_a_damaged_measurement_is_named_and_the_cli_exits_2(study, tmp_path, capsys):
    damaged = tmp_path / "measurements"
    _copy_store(study, damaged)
    good = study["files"][0]
    bad = damaged / "runs" / "digits-sp-dense-w8-d1-0000000000.parquet"
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match=bad.name):
        intrinsic.load_measurements(damaged)
    with pytest.raises(ValueError, match="'.*nothing' is not a directory"):
        intrinsic.load_measurements(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no d_int measurements"):
        intrinsic.load_measurements(tmp_path / "empty")
    spec = _spec_file(tmp_path, SPEC.replace('["dense", "fastfood"]', '["dense", "hadamard"]'))
    assert main(["intrinsic-dim", "--spec", str(spec), "--out", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'hadamard'" in err[0] and "fastfood" in err[0]
    assert str(spec) in err[0]  # the file is named
    assert bad.read_bytes() == good.read_bytes()[:-100]  # nothing touched


def test_measurements_in_the_layout_before_the_store_are_explained(study, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "digits-sp-dense-w8-d1-0123456789.parquet").write_bytes(study["files"][0].read_bytes())
    with pytest.raises(ValueError, match="one parquet file per measurement"):
        intrinsic.load_measurements(old)


def test_spec_settings_are_crossed_per_grid_and_flags_override_them(tmp_path):
    spec = _spec_file(tmp_path)
    plan = read_spec(spec)
    assert [(m.parametrization, m.projection, m.width) for m in plan] == [
        ("sp", "dense", 8), ("sp", "fastfood", 8), ("mup", "fastfood", 8), ("mup", "fastfood", 16)
    ]  # fmt: skip
    assert {m.base_width for m in plan} == {8} and {m.seeds for m in plan} == {2}
    assert {m.projection for m in read_spec(spec, overrides={"projections": ["sparse"]})} == {
        "sparse"
    }
    several = read_spec(_spec_file(tmp_path, SPEC.replace("steps = [20]", "steps = [20, 40]")))
    assert len(several) == 2 * len(plan)  # each value of a list is a measurement of its own
    with pytest.raises(ValueError, match="projections='dense' must be a non-empty list"):
        read_spec(_spec_file(tmp_path, SPEC.replace('["dense", "fastfood"]', '"dense"')))


def test_a_spec_with_an_unknown_key_or_kind_is_refused_naming_the_file(tmp_path):
    spec = _spec_file(tmp_path, SPEC.replace("seeds = 2", "seeds = 2\nweight_decays = [0.1]"))
    with pytest.raises(ValueError, match="unknown intrinsic-dimension setting") as e:
        read_spec(spec)
    assert "'weight_decays'" in str(e.value) and str(spec) in str(e.value)
    assert "projections" in str(e.value)  # the known keys are listed
    sweep = _spec_file(tmp_path, SPEC.replace('kind = "intrinsic-dimension"', ""))
    with pytest.raises(ValueError, match="kind=None"):
        read_spec(sweep)


def test_explorer_draws_every_view_and_redraws_on_a_new_threshold(study):
    import matplotlib

    matplotlib.use("Agg")
    from toolkit.ui.widgets import INTRINSIC_VIEWS, intrinsic_explorer

    explorer = intrinsic_explorer(intrinsic.load_measurements(study["out"]))
    controls = explorer.controls
    assert controls["threshold"].continuous_update is False
    assert controls["width"].options == (8, 16) and controls["projection"].value == "fastfood"
    for across in ("width", "depth"):
        controls["across"].value = across
        for view in INTRINSIC_VIEWS:
            controls["view"].value = view
            before = explorer.image.value
            controls["threshold"].value = 0.6
            assert explorer.image.value != before and not explorer.message
            controls["threshold"].value = 0.9
    controls["task"].options = ["digits", "mnist1d"]
    controls["task"].value = "mnist1d"  # not measured: said in the figure area
    assert "nothing measured for mnist1d" in explorer.message


def test_a_new_baseline_lr_grid_is_a_new_measurement(study, tmp_path):
    out = tmp_path / "copy"
    _copy_store(study, out)
    stamps = {f: f.stat().st_mtime_ns for f in out.rglob("*.parquet")}
    sp = [m for m in read_spec(_spec_file(tmp_path)) if m.parametrization == "sp"]
    assert set(run_study(sp, out, quiet=True)) == {
        f.stem for f in study["files"] if "-sp-" in f.name
    }  # the same settings: found, nothing trained
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*.parquet")} == stamps
    changed = replace(sp[0], lrs=(2.0**-7,))
    ids = run_study([changed], out, quiet=True)
    assert len(ids) == 1 and ids[0] not in {f.stem for f in study["files"]}
    assert len(list((out / "runs").glob("*.parquet"))) == len(study["files"]) + 1


def test_run_spec_resumes_the_shipped_store_without_training(tmp_path, capsys):
    from toolkit.paths import study_spec

    out = tmp_path / "shipped"
    _copy_store({"out": intrinsic.SHIPPED}, out)
    run_spec(study_spec("intrinsic_dimension"), out)
    assert "D = " not in capsys.readouterr().err
    assert len(list((out / "runs").glob("*.parquet"))) == 26
