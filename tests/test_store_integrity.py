"""Claims about the store's integrity: each run once, every byte verified, claims that
survive a killed writer, maintenance refused while a sweep writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import polars as pl
import pytest

import toolkit.store
from toolkit.io import checksum_path
from toolkit.locks import StoreBusy
from toolkit.store import SCHEMAS, Records, Store, StoreError


def _records(run_ids: list[str], loss: float) -> Records:
    """A group's tables with the given runs, two curve points each and one probe row."""
    n = len(run_ids)
    runs = pl.DataFrame(
        {
            "run_id": run_ids,
            "width": [64] * n,
            "lr": [2.0**-k for k in range(n)],
            "status": ["ok"] * n,
            "final_train_loss": [loss + i for i in range(n)],
        }
    )
    curves = pl.DataFrame(
        {
            "run_id": [r for r in run_ids for _ in range(2)],
            "step": [0, 10] * n,
            "split": ["train"] * (2 * n),
            "metric": ["loss"] * (2 * n),
            "value": [loss] * (2 * n),
        },
        schema_overrides=SCHEMAS["curves"],
    )
    probes = pl.DataFrame(schema=SCHEMAS["probes"])
    return Records(runs, curves, probes)


def _overlapping(tmp_path) -> Store:
    """Two groups that share run ``b`` (as two sweeps grouping differently would)."""
    store = Store(tmp_path / "store")
    store.write_group("g1", _records(["a", "b"], loss=1.0))
    store.write_group("g2", _records(["b", "c"], loss=5.0))
    return store


def test_a_run_stored_twice_is_read_once_with_its_own_curves(tmp_path):
    store = _overlapping(tmp_path)
    runs = store.runs().collect()
    assert sorted(runs["run_id"]) == ["a", "b", "c"]
    # the copy kept is the one in the first file by name (g1), with g1's numbers
    assert runs.filter(pl.col("run_id") == "b")["final_train_loss"].item() == 2.0
    curves = store.curves().collect()
    assert curves.height == 6  # two points per run, not four for run b
    assert curves.filter(pl.col("run_id") == "b")["value"].to_list() == [1.0, 1.0]
    assert store.finished_run_ids() == {"a", "b", "c"}


def test_duplicates_are_listed_and_dedupe_removes_them(tmp_path):
    store = _overlapping(tmp_path)
    copies = store.duplicates().sort("group")
    assert copies.to_dicts() == [
        {"run_id": "b", "group": "g1", "kept": True},
        {"run_id": "b", "group": "g2", "kept": False},
    ]
    before = store.runs().collect().sort("run_id")
    assert store.dedupe() == 1
    assert store.duplicates().height == 0
    assert store.read_file(store.path / "runs" / "g2.parquet")["run_id"].to_list() == ["c"]
    assert store.read_file(store.path / "curves" / "g2.parquet")["run_id"].unique().to_list() == [
        "c"
    ]
    assert store.runs().collect().sort("run_id").equals(before)
    assert store.check() == []


def test_dedupe_drops_a_group_left_without_runs(tmp_path):
    store = Store(tmp_path / "store")
    store.write_group("g1", _records(["a"], loss=1.0))
    store.write_group("g2", _records(["a"], loss=1.0))
    assert store.dedupe() == 1
    assert not (store.path / "runs" / "g2.parquet").exists()
    assert not checksum_path(store.path / "curves" / "g2.parquet").exists()
    assert store.runs().collect()["run_id"].to_list() == ["a"]


def test_a_bit_flip_anywhere_is_detected_by_check_and_by_every_reader(tmp_path):
    store = Store(tmp_path / "store")
    store.write_group("g", _records(["a", "b", "c"], loss=0.5))
    path = store.path / "runs" / "g.parquet"
    original = path.read_bytes()
    positions = sorted({(i * 7919) % len(original) for i in range(len(original))})
    positions = positions[:: max(1, len(positions) // 240)]
    assert len(positions) >= 200
    for position in positions:
        damaged = bytearray(original)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(damaged))
        assert [p for p, _ in store.check()] == [path], position
        for read in (store.runs, store.curves, store.probes, store.finished_run_ids):
            with pytest.raises(StoreError, match="damaged"):
                value = read()
                if isinstance(value, pl.LazyFrame):
                    value.collect()
    path.write_bytes(original)
    assert store.check() == []


def test_a_damaged_curves_file_is_quarantined_with_its_runs_file(tmp_path):
    store = _overlapping(tmp_path)
    path = store.path / "curves" / "g2.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    moved = store.quarantine()
    assert sorted(p.relative_to(store.path).as_posix() for p in moved) == [
        "quarantine/curves/g2.parquet",
        "quarantine/runs/g2.parquet",
    ]
    assert checksum_path(store.path / "quarantine" / "runs" / "g2.parquet").exists()
    # run c was only in g2: a resume trains it again
    assert store.finished_run_ids() == {"a", "b"}


def test_a_missing_checksum_is_damage(tmp_path):
    store = _overlapping(tmp_path)
    checksum_path(store.path / "runs" / "g1.parquet").unlink()
    with pytest.raises(StoreError, match="no readable checksum"):
        store.runs().collect()


def test_a_version_1_store_is_read_unverified_and_upgraded(tmp_path):
    store = _overlapping(tmp_path)
    for table in ("runs", "curves", "probes"):
        for path in store.files(table):
            checksum_path(path).unlink()
    (store.path / "store.json").write_text(json.dumps({"schema_version": 1}))
    old = toolkit.store.open(store.path)
    assert not old.verified
    assert old.runs().collect().height == 3
    assert toolkit.store.upgrade(store.path) == 6
    upgraded = toolkit.store.open(store.path)
    assert upgraded.verified and upgraded.check() == []
    assert upgraded.runs().collect().height == 3


def test_a_table_that_is_not_a_directory_is_an_error_not_an_empty_table(tmp_path):
    store = Store(tmp_path / "store")
    (store.path / "runs").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot be listed"):
        store.finished_run_ids()


def _holder(store_dir, body: str) -> subprocess.Popen:
    """A Python process that runs ``body`` with ``store`` open, prints 'ready', then sleeps."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from toolkit.store import Store
        store = Store({str(store_dir)!r})
        with store.writing() as claims:
        {textwrap.indent(body, "    ")}
            print("ready", flush=True)
            time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_claims_exclude_a_live_writer_and_pass_to_the_next_when_it_is_killed(tmp_path):
    store = Store(tmp_path / "store")
    holder = _holder(store.path, "claims.take(['a', 'b'])")
    try:
        with store.writing() as claims:
            assert claims.take(["a", "b", "c"]) == {"c"}
            _kill(holder)
            deadline = time.monotonic() + 10
            while claims.take(["a", "b"]) != {"a", "b"} and time.monotonic() < deadline:
                time.sleep(0.05)
            assert claims.run_ids == {"a", "b", "c"}
        assert not list((store.path / "claims").iterdir())  # released claims leave no files
    finally:
        if holder.poll() is None:
            _kill(holder)


def test_maintenance_is_refused_while_a_sweep_writes(tmp_path):
    store = _overlapping(tmp_path)
    holder = _holder(store.path, "pass")
    try:
        with pytest.raises(StoreBusy, match="quarantine refused"):
            store.quarantine()
        with pytest.raises(StoreBusy, match="dedupe refused"):
            store.dedupe()
    finally:
        _kill(holder)
    assert store.dedupe() == 1  # the lock died with its holder


def test_the_next_writer_removes_temporary_files_of_dead_writers_only(tmp_path):
    store = _overlapping(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from toolkit.io import _HOST

    stale = store.path / "runs" / f".g3.parquet.{dead.pid}@{_HOST}.abcdefgh.tmp"
    live = store.path / "runs" / f".g3.parquet.{os.getpid()}@{_HOST}.abcdefgh.tmp"
    foreign = store.path / "runs" / f".g3.parquet.{dead.pid}@00000000.abcdefgh.tmp"
    for path in (stale, live, foreign):
        path.write_bytes(b"PAR1 half")
    store.write_group("g3", _records(["d"], loss=0.1))
    assert not stale.exists()
    assert live.exists() and foreign.exists()
