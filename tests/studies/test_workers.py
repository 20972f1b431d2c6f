"""Small groups side by side in worker processes: the same runs, the same numbers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import polars as pl
import pytest

from toolkit import store as results
from toolkit.studies.costs import OVERHEAD_BOUND_STEP_FLOPS, overhead_bound
from toolkit.studies.sweep import SweepSpec, plan, run_local
from toolkit.studies.workers import split_for, train_in_workers

SPEC = SweepSpec(task="digits", parametrizations=("sp", "mup"), widths=(16, 32), depths=(1,),
                 lrs=(1e-2, 1e-1), seeds=2, steps=(30,), eval_every=10)  # fmt: skip


def _tables(out) -> tuple[pl.DataFrame, pl.DataFrame]:
    store = results.open(out)
    numbers = ["run_id", "status", "final_train_loss", "final_val_loss", "final_val_accuracy"]
    runs = store.runs().select(numbers).collect().sort("run_id")
    curves = store.curves().collect().sort("run_id", "step", "split", "metric")
    return runs, curves


def test_runs_trained_in_workers_equal_runs_trained_in_one_process(tmp_path):
    assert all(overhead_bound(g.step_flops) for g in plan(SPEC).groups)
    side_by_side = run_local(SPEC, tmp_path / "workers", quiet=True, workers=2)
    assert len(side_by_side.groups) == 4  # trained in workers: the plan is as it was cut
    alone = run_local(SPEC, tmp_path / "alone", quiet=True, workers=1)
    assert side_by_side.runs == alone.runs == SPEC.size
    runs, curves = _tables(tmp_path / "workers")
    expected_runs, expected_curves = _tables(tmp_path / "alone")
    assert runs["run_id"].is_unique().all() and runs.height == SPEC.size
    assert runs.equals(expected_runs)
    assert curves.equals(expected_curves)
    again = run_local(SPEC, tmp_path / "workers", quiet=True, workers=2)
    assert (again.runs, again.finished) == (0, SPEC.size)


def test_one_group_is_cut_into_shares_of_its_members_for_the_workers():
    (group,) = plan(SPEC.with_(parametrizations=("mup",), widths=(16,))).groups
    parts = split_for([group], 3)
    assert len(parts) == 3
    assert [m for p in parts for m in p.members] == list(group.members)
    assert sum(p.flops for p in parts) == pytest.approx(group.flops)
    assert split_for([group, group, group], 2) == [group, group, group]
    single = split_for([group.subset(set(group.run_ids[:1]))], 4)
    assert len(single) == 1


def test_a_large_group_trains_with_every_thread_in_the_calling_process():
    wide = plan(SPEC.with_(widths=(512,), depths=(3,), batch_sizes=(128,))).groups[0]
    assert wide.step_flops > OVERHEAD_BOUND_STEP_FLOPS
    assert not overhead_bound(wide.step_flops)


def test_a_workers_error_reaches_the_caller_and_the_other_groups_are_written(tmp_path):
    good, other = plan(SPEC.with_(parametrizations=("mup",))).groups
    bad = replace(other, members=tuple(replace(m, lr=-1.0) for m in other.members))
    with pytest.raises(ValueError, match="lr=-1.0"):
        train_in_workers([good, bad], tmp_path, workers=2)
    written = set(results.open(tmp_path).runs().collect()["run_id"].to_list())
    assert written == set(good.run_ids)


def test_workers_below_one_are_refused(tmp_path):
    with pytest.raises(ValueError, match="workers=0"):
        run_local(SPEC, tmp_path, quiet=True, workers=0)


def test_the_sweep_command_refuses_workers_below_one(tmp_path):
    done = subprocess.run([sys.executable, "-m", "toolkit", "sweep", "--task", "digits",
                           "--widths", "16", "--depths", "1", "--lrs", "0.01", "--steps", "2",
                           "--out", str(tmp_path), "--workers", "0"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "workers=0" in done.stderr
