"""Sweeps: specs, planning into groups, resume after a kill, and their command line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from toolkit import store as results
from toolkit.studies.schema import parse_numbers
from toolkit.studies.sweep import SweepSpec, plan, run_local


def test_log2_lr_ranges_are_evenly_spaced_in_log2():
    assert parse_numbers("lrs", "2^-14:2^-2:13") == tuple(2.0**k for k in range(-14, -1))
    assert parse_numbers("lrs", "2^-4:2^-3:3") == pytest.approx((2**-4, 2**-3.5, 2**-3))
    assert parse_numbers("lrs", "1e-3, 3e-3") == (1e-3, 3e-3)


def test_plan_batches_runs_that_share_a_shape(two_by_two_spec):
    spec = two_by_two_spec.with_(weight_decays=(0.0, 0.1), steps=(10,))
    work = plan(spec)
    assert spec.size == 2 * 2 * 3 * 2 * 2
    assert len(work.groups) == 4  # one per (parametrization, width)
    assert all(len(g.members) == 12 for g in work.groups)  # LR x WD x seed
    assert len({rid for g in work.groups for rid in g.run_ids}) == spec.size
    assert work.groups[1].flops > work.groups[0].flops  # wider costs more

    chunked = plan(spec.with_(max_members=5))
    assert [len(g.members) for g in chunked.groups[:3]] == [5, 5, 2]
    assert chunked.runs == spec.size

    finished = set(work.groups[0].run_ids[:7])
    resumed = plan(spec, finished=finished)
    assert resumed.finished == 7 and resumed.runs == spec.size - 7


def test_spec_from_toml_with_grids(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        'study = "width"\ntask = "digits"\nlrs = "2^-8:2^-4:5"\nsteps = [20]\nwidths = [16, 32]\n'
        '[[grid]]\nparametrizations = ["sp"]\n'
        '[[grid]]\nparametrizations = ["mup"]\noptimizers = ["sgd"]\n'
    )
    sp, mup = SweepSpec.from_toml(path)
    assert sp.study == mup.study == "width"
    assert sp.lrs == tuple(2.0**k for k in range(-8, -3))
    assert (sp.parametrizations, sp.optimizers) == (("sp",), ("adam",))
    assert (mup.parametrizations, mup.optimizers) == (("mup",), ("sgd",))


SMALL_SWEEP = [
    "--task", "digits", "--parametrization", "sp,mup", "--widths", "16,32,48", "--depths", "2",
    "--lrs", "2^-9:2^-3:4", "--seeds", "2", "--steps", "150", "--eval-every", "50",
]  # fmt: skip


def _sweep(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolkit",
            "sweep",
            *SMALL_SWEEP,
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _tables(out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    store = results.open(out)
    numbers = ["run_id", "status", "final_train_loss", "final_val_loss", "final_val_accuracy"]
    runs = store.runs().select(numbers).collect().sort("run_id")
    curves = store.curves().collect().sort("run_id", "step", "split", "metric")
    return runs, curves


@pytest.mark.slow
def test_a_sweep_killed_at_a_random_point_resumes_to_the_same_results(tmp_path):
    """SIGKILL mid-sweep, re-run: exactly the runs of an uninterrupted sweep, same numbers.

    The kill lands after a random number of finished groups, at a random point within the
    time of the shortest group (from the uninterrupted sweep), with at least two groups
    still to train: inside the sweep however fast the machine is."""
    reference = tmp_path / "reference"
    assert _sweep(reference).wait(timeout=300) == 0
    groups = len(list((reference / "runs").glob("*.parquet")))
    shortest = results.open(reference).runs().collect()["wall_s"].min()
    rng = random.Random(os.getpid())
    finished_before_kill = rng.randint(1, groups - 2)

    killed = tmp_path / "killed"
    process = _sweep(killed)
    deadline = time.monotonic() + 120
    while len(list((killed / "runs").glob("*.parquet"))) < finished_before_kill:
        assert process.poll() is None, "sweep finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, shortest))  # land somewhere inside the next group
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    store = results.open(killed)
    assert store.check() == []  # no partial file visible to readers
    partial = len(store.finished_run_ids())
    assert 0 < partial < 2 * 3 * 4 * 2

    assert _sweep(killed).wait(timeout=300) == 0
    runs, curves = _tables(killed)
    expected_runs, expected_curves = _tables(reference)
    assert runs["run_id"].is_unique().all()
    assert runs.equals(expected_runs)
    assert curves.equals(expected_curves)


def test_a_finished_sweep_rerun_trains_nothing(tmp_path):
    spec = SweepSpec(task="digits", widths=(16,), depths=(1,), lrs=(1e-2, 1e-1), steps=(5,))
    first = run_local(spec, tmp_path, quiet=True)
    again = run_local(spec, tmp_path, quiet=True)
    assert (first.runs, again.runs, again.finished) == (2, 0, 2)
    assert results.open(tmp_path).runs().collect().height == 2


def test_dry_run_prints_the_plan_without_training(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "sweep", *SMALL_SWEEP, "--dry-run", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    payload = json.loads(result.stdout)
    assert len(payload["groups"]) == 6
    assert sum(g["members"] for g in payload["groups"]) == 48
    assert "6 groups" in payload["summary"]


def test_report_json_has_one_record_per_run_with_the_contract_columns(tmp_path):
    spec = SweepSpec(
        task="digits", widths=(16,), depths=(1,), lrs=(1e-3, 1e-2), seeds=2, steps=(5,)
    )
    run_local(spec, tmp_path, quiet=True)
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "report", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    payload = json.loads(result.stdout)
    assert len(payload["runs"]) == 4
    contract = {
        "run_id", "study", "model", "task", "parametrization", "optimizer", "width", "depth", "lr",
        "weight_decay", "batch_size", "steps", "seed", "status", "final_train_loss",
        "final_val_loss", "wall_s", "toolkit_version", "created_at",
    }  # fmt: skip
    assert contract <= set(payload["runs"][0])
    assert len(payload["optima"]) == 1


@pytest.mark.parametrize(
    "settings",
    [dict(model="mlp", depth=1), dict(model="mlp", depth=4, bias=False),
     dict(model="resmlp", depth=3, prenorm=False), dict(model="transformer", depth=2),
     dict(model="transformer", depth=1, tie_embeddings=True, bias=False),
     dict(model="mlp", task="teacher", depth=2, batch_size=7, eval_examples=3)],
)  # fmt: skip
def test_the_cost_floor_is_below_the_cost_of_the_built_model(settings):
    """The torch-free bound that refuses impossible runs early never refuses a run the
    model-based estimate would accept: every term is at most the built model's."""
    from toolkit.engine.config import TrainConfig
    from toolkit.studies.costs import cost_floor, run_cost

    config = TrainConfig(width=48, steps=10, **settings)
    floor, cost = cost_floor(config), run_cost(config)
    for term in ("state_bytes", "activation_bytes", "eval_bytes", "curve_bytes"):
        assert 0 < getattr(floor, term) <= getattr(cost, term), term
    assert floor.bytes >= cost.bytes / 8, "a floor far below the cost refuses nothing"


def test_a_language_model_s_evaluation_batch_is_counted_in_tokens():
    """``eval_examples`` of a model reading sequences counts predicted tokens: 1024 are 16
    sequences of the 64 characters of ``chars``, one forward pass over the activations
    that a training batch of 16 sequences keeps for its backward pass."""
    from toolkit.engine.config import TrainConfig
    from toolkit.studies.costs import run_cost

    config = TrainConfig(model="transformer", width=32, depth=1, batch_size=16,
                         eval_examples=1024, steps=10)  # fmt: skip
    cost = run_cost(config)
    assert cost.eval_bytes == pytest.approx(cost.activation_bytes / 2, rel=1e-3)
