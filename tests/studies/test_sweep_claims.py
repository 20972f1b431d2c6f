"""Sweeps that share a store: each run is trained and stored once, whatever the grouping,
and a writer killed while holding claims is taken over by the next."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit import store as results

BASE = ["--task", "digits", "--widths", "16", "--depths", "1", "--steps", "100",
        "--eval-every", "100", "--quiet"]  # fmt: skip


def _sweep(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toolkit", "sweep", *BASE, "--out", str(out),
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _trained(process: subprocess.Popen) -> int:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return sum(g["members"] for g in json.loads(out)["groups"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("first", "second", "unique"),
    [
        (["--lrs", "2^-8:2^-4:3"], ["--lrs", "2^-6:2^-2:3"], 4),
        (["--lrs", "2^-8:2^-2:4", "--seeds", "2"], ["--lrs", "2^-8:2^-2:4", "--seeds", "2",
                                                    "--max-members", "3"], 8),
    ],
)  # fmt: skip
def test_two_overlapping_sweeps_at_once_store_each_run_once(tmp_path, first, second, unique):
    one, two = _sweep(tmp_path, *first), _sweep(tmp_path, *second)
    _trained(one), _trained(two)
    store = results.open(tmp_path)
    assert store.duplicates().height == 0
    runs = store.runs().collect()
    assert runs.height == unique and runs["run_id"].is_unique().all()
    curves = store.curves().collect()
    assert curves.group_by("run_id", "step", "split", "metric").len()["len"].max() == 1
    report = subprocess.run([sys.executable, "-m", "toolkit", "report", str(tmp_path)],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert report.stdout.startswith(f"{unique} runs")


@pytest.mark.slow
def test_a_sweep_killed_while_holding_claims_is_resumed_by_another_process(tmp_path):
    grid = ["--widths", "16,24,32", "--lrs", "2^-8:2^-2:4"]
    victim = _sweep(tmp_path, *grid)
    deadline = time.monotonic() + 120
    claims = tmp_path / "claims"
    while not (claims.exists() and any(claims.iterdir()) and results.open(tmp_path).files("runs")):
        assert victim.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert any(claims.iterdir())  # its claims are left behind, held by no one
    finished = len(results.open(tmp_path).finished_run_ids())
    assert 0 < finished < 12
    assert _trained(_sweep(tmp_path, *grid)) == 12 - finished
    store = results.open(tmp_path)
    assert store.runs().collect().height == 12 and store.duplicates().height == 0


def test_a_resumed_sweep_with_nothing_to_do_says_so_in_one_line(tmp_path):
    argv = [sys.executable, "-m", "toolkit", "sweep", *BASE[:-1], "--steps", "3", "--lrs",
            "0.01", "--out", str(tmp_path)]  # fmt: skip
    subprocess.run(argv, capture_output=True, check=True)
    again = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert again.stderr.strip() == f"nothing to train: all 1 runs are already in {tmp_path}"
