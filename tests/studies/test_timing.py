"""Measured time estimates: a few timed steps of each group, extrapolated to the group."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from toolkit.studies import timing
from toolkit.studies.sweep import SweepSpec, plan
from toolkit.studies.timing import GroupTiming, measured_seconds, time_group
from toolkit.ui.cli import main

SPEC = SweepSpec(task="digits", parametrizations=("sp", "mup"), widths=(16, 32), depths=(1,),
                 lrs=(1e-2, 1e-1), seeds=2, steps=(250,), eval_every=100)  # fmt: skip


def test_a_group_costs_its_start_its_steps_its_evaluations_and_its_probe_points():
    group = replace(plan(SPEC).groups[0], probe_steps=(0, 10, 100))
    timing_ = GroupTiming(start_s=2.0, step_s=0.01, eval_s=0.5, probe_s=0.25)
    # 250 steps; evaluations at 100, 200 and the last step; three probe points
    assert timing_.seconds(group) == pytest.approx(2.0 + 2.5 + 3 * 0.5 + 3 * 0.25)


def test_timing_a_group_trains_it_briefly_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = SPEC.with_(probes=("spectra",), probe_points=4)
    group = plan(spec).groups[0]
    measured = time_group(group)
    assert measured.step_s > 0 and measured.start_s >= 0 and measured.eval_s >= 0
    assert measured.probe_s > 0  # an SVD of every layer costs more than nothing
    assert list(tmp_path.iterdir()) == []


def test_each_shape_is_timed_once(monkeypatch):
    """The two parametrizations cost the same per shape but are different configs;
    groups of one config split into chunks share one timing."""
    timed = []
    real = timing.time_group

    def counting(group, **kwargs):
        timed.append(group)
        return real(group, **kwargs)

    monkeypatch.setattr(timing, "time_group", counting)
    groups = plan(SPEC).groups
    halves = [replace(g, members=g.members[:2]) for g in groups[:1]] * 2
    seconds = measured_seconds([*groups, *halves])
    assert len(timed) == len(groups) + 1
    assert seconds[-1] == seconds[-2]
    assert all(s > 0 for s in seconds)


def test_a_measured_dry_run_reports_each_groups_seconds(capsys):
    sweep = ["sweep", "--task", "digits", "--widths", "16", "--depths", "1", "--lrs", "0.01,0.1",
             "--steps", "200"]  # fmt: skip
    assert main([*sweep, "--dry-run", "--measure", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    seconds = [g["seconds"] for g in printed["groups"]]
    assert len(seconds) == 1 and seconds[0] > 0
    assert main([*sweep, "--measure"]) == 2  # timing needs a plan to time
    assert "--measure" in capsys.readouterr().err
