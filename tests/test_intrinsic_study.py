"""The intrinsic-dimension study: measurements kept on disk, resumed, and re-estimated."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from toolkit.studies import intrinsic_study
from toolkit.studies.sweep import SweepSpec
from toolkit.ui.cli import main

SPEC = """
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
    files = sorted(out.glob("*.parquet"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    second = subprocess.run([sys.executable, "-m", "toolkit", *argv], capture_output=True,
                            text=True, check=True)  # fmt: skip
    return {"out": out, "files": files, "stamps": stamps, "first": first, "second": second}


def test_every_measurement_of_the_spec_is_stored_once_and_not_repeated(study):
    names = sorted(f.name.rsplit("-", 1)[0] for f in study["files"])
    assert names == ["digits-mup-fastfood-w16-d1", "digits-mup-fastfood-w8-d1",
                     "digits-sp-dense-w8-d1", "digits-sp-fastfood-w8-d1"]  # fmt: skip
    assert {f: f.stat().st_mtime_ns for f in study["files"]} == study["stamps"]
    assert "D = " in study["first"].stderr
    assert "D = " not in study["second"].stderr  # nothing measured the second time
    first, second = json.loads(study["first"].stdout), json.loads(study["second"].stdout)
    assert first == second
    keys = {"width", "depth", "parametrization", "projection", "D", "baseline", "d_int90",
            "d_int90_lo", "d_int90_hi"}  # fmt: skip
    assert all(set(r) == keys for r in first) and len(first) == 4
    assert not list(study["out"].glob(".*.tmp"))


def test_stored_seeds_reproduce_the_estimate_and_lower_thresholds_need_fewer_dimensions(study):
    frame = intrinsic_study.load(study["out"])
    assert set(frame["kind"]) == {"baseline", "subspace"}
    assert frame.filter(pl.col("kind") == "baseline")["d"].is_null().all()
    printed = {(r["parametrization"], r["projection"], r["width"]): r
               for r in json.loads(study["first"].stdout)}  # fmt: skip
    table = intrinsic_study.d_int_table(frame, threshold=0.9)
    for row in table.iter_rows(named=True):
        record = printed[(row["parametrization"], row["projection"], row["width"])]
        assert row["d_int"] == record["d_int90"]
        assert (row["d_int_lo"], row["d_int_hi"]) == (record["d_int90_lo"], record["d_int90_hi"])
        assert row["d_int_lo"] <= row["d_int"] <= row["d_int_hi"]
        assert row["D"] == record["D"]
    lower = intrinsic_study.d_int_table(frame, threshold=0.5)
    assert (lower["d_int"] <= table["d_int"]).all()
    assert (lower["d_int"] < table["d_int"]).any()


def test_performance_curves_are_fractions_of_the_seed_mean_baseline(study):
    frame = intrinsic_study.load(study["out"])
    curves = intrinsic_study.performance_curves(frame)
    one = frame.filter(pl.col("parametrization") == "mup", pl.col("width") == 16)
    baseline = one.filter(pl.col("kind") == "baseline")["metric"].mean()
    row = curves.filter(pl.col("parametrization") == "mup", pl.col("width") == 16).row(
        0, named=True
    )
    seeds = one.filter(pl.col("d") == row["d"])["metric"]
    assert row["metric"] == pytest.approx(seeds.mean())
    assert row["metric_lo"] == seeds.min() and row["metric_hi"] == seeds.max()
    assert row["fraction"] == pytest.approx(seeds.mean() / baseline)


def test_scaling_exponent_recovers_a_known_power_law():
    D = np.array([1000, 4000, 16000, 64000])
    table = pl.DataFrame({
        "task": "digits", "parametrization": "sp", "projection": "fastfood", "depth": 2,
        "D": D, "d_int": 7.0 * D**0.25,
    })  # fmt: skip
    table = pl.concat([table, table.head(1).with_columns(d_int=pl.lit(math.inf))])
    fit = intrinsic_study.d_int_scaling(table).row(0, named=True)
    assert fit["exponent"] == pytest.approx(0.25)
    assert fit["exponent_lo"] == pytest.approx(0.25) and fit["points"] == 4  # inf left out
    assert fit["intercept"] == pytest.approx(math.log2(7.0))


def test_a_damaged_measurement_is_named_and_the_cli_exits_2(study, tmp_path, capsys):
    damaged = tmp_path / "measurements"
    damaged.mkdir()
    good = study["files"][0]
    (damaged / good.name).write_bytes(good.read_bytes())
    bad = damaged / "digits-sp-dense-w8-d1-0000000000.parquet"
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match=bad.name):
        intrinsic_study.load(damaged)
    with pytest.raises(ValueError, match="'.*nothing' is not a directory"):
        intrinsic_study.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no d_int measurements"):
        intrinsic_study.load(tmp_path / "empty")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('["dense", "fastfood"]', '["dense", "hadamard"]'))
    assert main(["intrinsic-dim", "--spec", str(spec), "--out", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'hadamard'" in err[0] and "fastfood" in err[0]
    assert bad.read_bytes() == good.read_bytes()[:-100]  # nothing touched


def test_study_settings_are_extra_only_where_asked_for(tmp_path):
    spec = _spec_file(tmp_path)
    specs = SweepSpec.from_toml(spec, extra=("projections",))
    assert [s.extra.get("projections") for s in specs] == [["dense", "fastfood"], None]
    assert [intrinsic_study.spec_projections(s) for s in specs] == [
        ("dense", "fastfood"), ("fastfood",)
    ]  # fmt: skip
    assert intrinsic_study.spec_projections(specs[0], "sparse") == ("sparse",)
    with pytest.raises(ValueError, match="unknown sweep setting 'projections'"):
        SweepSpec.from_toml(spec)
    with pytest.raises(ValueError, match="projections='dense' must be a non-empty list"):
        intrinsic_study.spec_projections(specs[1].with_(extra={"projections": "dense"}))


def test_explorer_draws_every_view_and_redraws_on_a_new_threshold(study):
    import matplotlib

    matplotlib.use("Agg")
    from toolkit.ui.widgets import INTRINSIC_VIEWS, intrinsic_explorer

    explorer = intrinsic_explorer(intrinsic_study.load(study["out"]))
    controls = explorer.controls
    assert controls["threshold"].continuous_update is False
    assert controls["width"].options == (8, 16) and controls["projection"].value == "fastfood"
    for across in ("width", "depth"):
        controls["across"].value = across
        for view in INTRINSIC_VIEWS:
            controls["view"].value = view
            before = explorer.image.value
            controls["threshold"].value = 0.6
            assert explorer.image.value != before and not explorer.errors.outputs
            controls["threshold"].value = 0.9
    controls["task"].options = ["digits", "mnist1d"]
    controls["task"].value = "mnist1d"  # not measured: said under the figure
    assert "nothing measured for mnist1d" in explorer.errors.outputs[0]["text"]


def test_a_new_baseline_lr_grid_is_a_new_measurement(study, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for file in study["files"]:
        (out / file.name).write_bytes(file.read_bytes())
    spec = SweepSpec.from_toml(_spec_file(tmp_path), extra=("projections",))[0]
    assert set(intrinsic_study.run_study(spec, out, quiet=True)) == {
        out / f.name for f in study["files"] if "-sp-" in f.name
    }  # the same settings: found, nothing trained
    changed = spec.with_(lrs=(2.0**-7,))
    paths = intrinsic_study.run_study(changed, out, projection="dense", quiet=True)
    assert len(paths) == 1 and paths[0].name not in {f.name for f in study["files"]}
    assert len(list(out.glob("*.parquet"))) == len(study["files"]) + 1


def _spec_file(directory):
    path = directory / "spec.toml"
    path.write_text(SPEC)
    return path
