"""Sweep specs: one typed schema for TOML and flags; shipped studies plan the runs their
stores hold; multipliers batch as members; every spec runs through one command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit import store as results
from toolkit.engine.probes import log_spaced_steps
from toolkit.paths import DATA, STUDIES
from toolkit.studies import kinds
from toolkit.studies.kinds import spec_kind
from toolkit.studies.sweep import SweepSpec, plan
from toolkit.ui.cli import main

SWEEP_STUDIES = [
    p
    for p in sorted(STUDIES.glob("*.toml"))
    if spec_kind(p) == "sweep" and (DATA / p.stem / "store.json").exists()
]


@pytest.mark.parametrize("path", SWEEP_STUDIES, ids=[p.stem for p in SWEEP_STUDIES])
def test_a_shipped_study_plans_exactly_the_runs_its_store_holds(path, monkeypatch):
    """So a resumed `make data` trains nothing: every planned run id is already stored."""
    monkeypatch.delenv("TOOLKIT_SMOKE", raising=False)
    stored = results.open(DATA / path.stem).runs().select("run_id").collect()["run_id"]
    specs = SweepSpec.from_toml(path)
    planned = {run_id for group in plan(specs).groups for run_id in group.run_ids}
    assert planned == set(stored)
    assert plan(specs, finished=stored).groups == []


def _spec_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        SweepSpec.from_toml(path)
    message = str(error.value)
    assert str(path) in message  # every message names the file
    return message


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('readout_zero_init = "false"\n', ["readout_zero_init='false'", "a string", "true"]),
        ("widths = [16.0]\n", ["widths=16.0", "a float", "integers"]),
        ("batch_sizes = [32.0]\n", ["batch_sizes=32.0", "integers"]),
        ("weight_decays = []\n", ["weight_decays=[]", "empty"]),
        ("schedules = []\n", ["schedules=[]", "empty"]),
        ("momentum = true\n", ["momentum=True", "a bool", "numbers"]),
        ("widht = [16]\n", ["unknown sweep setting 'widht'", "widths", "output_alphas"]),
        ("[smoke]\nwidht = [16]\n", ["[smoke]", "unknown sweep setting 'widht'", "widths"]),
        ("[smoke]\nwidths = [16.5]\n", ["[smoke]", "widths=16.5"]),
        ("warmup_steps = 30\nsteps = [20]\n", ["warmup_steps=30", "steps=20"]),
        ("grid = 5\n", ["grid=5", "[[grid]]"]),
        ("width = [16]\n", ["width=[16]", "widths"]),
        ("widths = 16\n", ["widths=16", "a list"]),
        ("momentums = [1.5]\n", ["momentums=1.5", "[0, 1)"]),
        ('activation = "swish"\n', ["activation='swish'", "'relu'"]),
        ('probes = ["hessian"]\n', ["probes='hessian'", "spectra"]),
        ('kind = "other"\n', ["kind='other'"]),
    ],
)
def test_a_bad_spec_value_is_refused_naming_the_file_the_value_and_what_is_allowed(
    tmp_path, text, needles
):
    message = _spec_error(tmp_path, text)
    for needle in needles:
        assert needle in message


def test_a_spec_file_that_is_not_text_or_not_a_file_is_named(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"widths = [\xff]\n")
    with pytest.raises(ValueError, match="binary.toml.*not UTF-8"):
        SweepSpec.from_toml(binary)
    with pytest.raises(ValueError, match="is a directory"):
        SweepSpec.from_toml(tmp_path)


def test_any_setting_is_a_grid_and_a_singular_name_gives_one_value():
    spec = SweepSpec(task="digits", widths=(16,), depths=(1,), lrs=(0.01,), steps=(5,),
                     momentums=(0.8, 0.9), activations=("relu", "tanh"), head_dim=8,
                     output_alpha=2, optimizer="sgd", warmup_steps=2)  # fmt: skip
    configs = spec.configs()
    assert {(c.momentum, c.activation) for c in configs} == {
        (m, a) for m in (0.8, 0.9) for a in ("relu", "tanh")
    }
    assert {(c.head_dim, c.optimizer, c.warmup_steps) for c in configs} == {(8, "sgd", 2)}
    assert {c.parametrization.output_alpha for c in configs} == {2.0}
    assert spec.size == 4


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolkit", *argv], capture_output=True, text=True)


def test_multipliers_batch_as_members_of_one_group_in_the_dry_run():
    result = _cli(
        "sweep", "--task", "digits", "--widths", "16,32", "--depths", "1", "--lrs", "0.01,0.1",
        "--output-alphas", "0.5,1,2", "--init-sigmas", "0.5,1", "--steps", "5", "--dry-run",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)["groups"]
    assert [g["width"] for g in groups] == [16, 32]  # one group per shape
    assert all(g["members"] == 2 * 3 * 2 for g in groups)
    assert all(g["member_values"] == "lr x2, init_sigma x2, output_alpha x3" for g in groups)


def test_members_with_multipliers_train_and_report(tmp_path):
    out = tmp_path / "store"
    result = _cli(
        "sweep", "--task", "digits", "--widths", "16", "--depths", "1", "--lrs", "0.01,0.1",
        "--output-alphas", "0.5,2", "--steps", "5", "--eval-every", "5", "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = results.open(out).runs().collect()
    assert runs.height == 4 and runs["run_id"].n_unique() == 4
    assert sorted(runs["output_alpha"].unique()) == [0.5, 2.0]
    assert len(list((out / "runs").glob("*.parquet"))) == 1  # trained as one ensemble
    report = _cli("report", str(out), "--json")
    assert report.returncode == 0, report.stderr
    optima = json.loads(report.stdout)["optima"]
    assert sorted(o["output_alpha"] for o in optima) == [0.5, 2.0]  # one LR curve per alpha


def test_a_spec_with_probes_writes_the_spectra_store_through_the_sweep_command(tmp_path):
    out = tmp_path / "spectra"
    env = {**os.environ, "TOOLKIT_SMOKE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "sweep", "--spec", str(STUDIES / "spectra.toml"),
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    store = results.open(out)
    probes, runs = store.probes().collect(), store.runs().collect()
    assert set(runs["study"]) == {"spectra", "spectra_weight_decay"}
    assert probes.columns == list(results.SCHEMAS["probes"])
    assert sorted(probes["step"].unique()) == log_spaced_steps(20, 8)  # smoke: 20 steps
    assert {"sigma_max", "cond_ratio", "sv_1"} <= set(probes["stat"])
    shipped = results.open(DATA / "spectra").runs().collect()
    assert set(runs.columns) >= set(shipped.columns)


def test_the_sweep_command_runs_a_spec_of_another_kind_with_its_runner(tmp_path, monkeypatch):
    calls = []

    def run_spec(path: Path, out: Path, *, quiet: bool = False) -> None:
        calls.append((path, out, quiet))

    monkeypatch.setitem(kinds.STUDY_KINDS, "intrinsic-dimension", "toolkit.studies.intrinsic")
    import toolkit.studies.intrinsic as intrinsic

    monkeypatch.setattr(intrinsic, "run_spec", run_spec, raising=False)
    spec = tmp_path / "study.toml"
    spec.write_text('kind = "intrinsic-dimension"\nwidths = [16]\n')
    assert main(["sweep", "--spec", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert calls == [(spec, tmp_path / "out", True)]
    assert main(["sweep", "--spec", str(spec)]) == 2  # a study needs --out


def test_a_dry_run_of_another_kind_plans_without_training_or_writing(tmp_path, capsys):
    """The intrinsic-dimension spec's dry run lists its measurements, marks those in the
    store, and trains nothing: the store it names stays absent."""
    spec = tmp_path / "study.toml"
    spec.write_text('kind = "intrinsic-dimension"\ntask = "digits"\nwidths = [16, 32]\n'
                    'depths = [1]\nparametrizations = ["sp", "mup"]\n')  # fmt: skip
    out = tmp_path / "never"
    assert main(["sweep", "--spec", str(spec), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "4 measurements, 4 to run (0 already stored)" in printed
    assert not out.exists()
    shipped = STUDIES / "intrinsic_dimension.toml"
    assert main(["sweep", "--spec", str(shipped), "--out", str(DATA / "intrinsic_dimension"),
                 "--dry-run"]) == 0  # fmt: skip
    head = capsys.readouterr().out.splitlines()[0]
    count = int(head.split()[0])
    assert head.startswith(f"{count} measurements, 0 to run ({count} already stored)")


@pytest.mark.parametrize("flag", [["--widths", "64"], ["--workers", "2"], ["--json"],
                                  ["--executor", "ray"]])  # fmt: skip
def test_a_sweep_flag_is_refused_for_a_spec_of_another_kind(tmp_path, capsys, flag):
    """A flag the study would ignore is an error naming it, not a silently different run."""
    spec = tmp_path / "study.toml"
    spec.write_text('kind = "intrinsic-dimension"\nwidths = [16]\n')
    out = tmp_path / "out"
    assert main(["sweep", "--spec", str(spec), "--out", str(out), *flag]) == 2
    assert f"{flag[0]} does not apply" in capsys.readouterr().err
    assert not out.exists()


def test_every_shipped_spec_has_a_known_kind():
    assert {spec_kind(p) for p in STUDIES.glob("*.toml")} <= set(kinds.STUDY_KINDS)


def test_per_layer_lr_constants_are_shape_axes_with_flags_from_the_schema(capsys):
    """Each constant's value is its own group (it changes the optimizer's per-tensor LR);
    the default value records nothing, so its group keeps the run ids it always had."""
    argv = ["sweep", "--task", "digits", "--widths", "16", "--depths", "1", "--lrs", "0.01,0.1",
            "--steps", "5", "--lr-outputs", "0.25,1,4", "--dry-run", "--json"]  # fmt: skip
    assert main(argv) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["lr_output"] for g in groups] == [0.25, None, 4.0]
    plain = SweepSpec(task="digits", widths=(16,), depths=(1,), lrs=(0.01, 0.1), steps=5)
    tuned = plain.with_(lr_outputs=(0.25, 1.0, 4.0))
    ids = [set(g.run_ids) for g in plan(tuned).groups]
    assert ids[1] == {run_id for g in plan(plain).groups for run_id in g.run_ids}
    assert len(ids[0] | ids[1] | ids[2]) == 6
