"""Claims about the results store: round trips, atomic writes, versioning, damaged files."""

from __future__ import annotations

import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import toolkit.store
from toolkit.engine.data import load_task
from toolkit.engine.probes import activation_stats
from toolkit.engine.train import Member, Records, TrainConfig, train
from toolkit.store import SCHEMA_VERSION, TABLES, Store, StoreError


def _train(width: int) -> Records:
    config = TrainConfig(task="digits", width=width, depth=1, steps=5, eval_every=5)
    members = [Member(lr=1e-2, seed=0), Member(lr=1e-3, seed=1)]
    return train(
        config, members, task=load_task("digits"), probes=[activation_stats], probe_steps=[0, 5]
    )


@pytest.fixture(scope="module")
def groups() -> dict[str, Records]:
    return {"a": _train(16), "b": _train(8)}


def _same(read: pl.LazyFrame, written: pl.DataFrame) -> None:
    """``read`` holds exactly the rows and columns of ``written`` (in any order)."""
    frame = read.collect()
    assert set(frame.columns) == set(written.columns)
    assert_frame_equal(frame.select(written.columns), written, check_row_order=False)


def _stored(tmp_path, groups) -> Store:
    store = Store(tmp_path / "store")
    for group_id, records in groups.items():
        store.write_group(group_id, records)
    return store


def test_round_trip(tmp_path, groups):
    store = Store(tmp_path / "store")
    records = groups["a"]
    assert records.probes.height > 0
    store.write_group("a", records)
    reopened = toolkit.store.open(tmp_path / "store")
    for table in TABLES:
        _same(getattr(reopened, table)(), getattr(records, table))
    manifest = json.loads((tmp_path / "store" / "store.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["created_by"].startswith("toolkit ")


def test_two_groups_stack(tmp_path, groups):
    store = _stored(tmp_path, groups)
    _same(store.runs(), pl.concat([g.runs for g in groups.values()]))
    _same(store.curves(), pl.concat([g.curves for g in groups.values()]))
    expected = {rid for g in groups.values() for rid in g.runs["run_id"]}
    assert len(expected) == 4
    assert store.finished_run_ids() == expected
    assert [p.name for p in store.files("runs")] == ["a.parquet", "b.parquet"]


def test_empty_store_has_contract_columns(tmp_path):
    store = Store(tmp_path / "store")
    assert store.finished_run_ids() == set()
    for table in TABLES:
        frame = getattr(store, table)().collect()
        assert frame.height == 0
        assert frame.schema == pl.Schema(toolkit.store.SCHEMAS[table])


def test_empty_probes_keep_their_schema(tmp_path, groups):
    store = Store(tmp_path / "store")
    records = groups["a"]
    store.write_group("a", Records(records.runs, records.curves, records.probes.clear()))
    assert pl.read_parquet_schema(store.files("probes")[0]) == records.probes.schema


def test_writes_leave_no_temporary_files_and_readers_ignore_them(tmp_path, groups):
    store = _stored(tmp_path, groups)
    every = {p.relative_to(store.path).as_posix() for p in store.path.rglob("*")}
    files = ("", "/a.parquet", "/b.parquet", "/a.parquet.sha256", "/b.parquet.sha256")
    assert every == {"store.json"} | {f"{t}{f}" for t in TABLES for f in files}
    leftover = store.path / "runs" / ".c.parquet.x1y2.tmp"
    leftover.write_bytes(b"PAR1 half a file")
    assert store.check() == []
    assert len(store.runs().collect()) == 4
    assert store.quarantine() == []
    assert not leftover.exists()


def test_newer_schema_version_is_refused(tmp_path):
    Store(tmp_path / "store")
    newer = SCHEMA_VERSION + 1
    (tmp_path / "store" / "store.json").write_text(json.dumps({"schema_version": newer}))
    message = (
        f"store {tmp_path / 'store'} was written by a newer toolkit "
        f"(schema version {newer}; this toolkit reads up to {SCHEMA_VERSION}): upgrade toolkit"
    )
    with pytest.raises(StoreError) as error:
        toolkit.store.open(tmp_path / "store")
    assert str(error.value) == message


def test_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a results store"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="does not exist") as error:
        toolkit.store.open(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(error.value)
    assert not (tmp_path / "missing").exists()


def test_bad_group_id(tmp_path, groups):
    with pytest.raises(ValueError, match="group_id='../a'"):
        Store(tmp_path / "store").write_group("../a", groups["a"])


def test_truncated_runs_file_is_reported_and_quarantined(tmp_path, groups):
    store = _stored(tmp_path, groups)
    broken = store.path / "runs" / "a.parquet"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])

    with pytest.raises(StoreError, match="--quarantine") as error:
        store.runs()
    assert str(broken) in str(error.value)
    with pytest.raises(StoreError):
        store.curves()
    assert [path for path, _ in store.check()] == [broken]

    moved = store.quarantine()
    assert moved == [store.path / "quarantine" / "runs" / "a.parquet"]
    assert moved[0].read_bytes() == data[: len(data) // 2]
    assert store.check() == []
    _same(store.runs(), groups["b"].runs)
    assert store.finished_run_ids() == set(groups["b"].runs["run_id"])
    _same(store.curves(), groups["b"].curves)


def test_truncated_curves_file_unfinishes_its_group(tmp_path, groups):
    store = _stored(tmp_path, groups)
    broken = store.path / "curves" / "a.parquet"
    broken.write_bytes(broken.read_bytes()[:100])
    assert [path for path, _ in store.check()] == [broken]
    moved = store.quarantine()
    assert sorted(p.relative_to(store.path).as_posix() for p in moved) == [
        "quarantine/curves/a.parquet",
        "quarantine/runs/a.parquet",
    ]
    assert store.finished_run_ids() == set(groups["b"].runs["run_id"])


def test_orphan_curves_are_hidden(tmp_path, groups):
    store = _stored(tmp_path, groups)
    (store.path / "runs" / "a.parquet").unlink()
    _same(store.curves(), groups["b"].curves)
    _same(store.probes(), groups["b"].probes)
    assert store.finished_run_ids() == set(groups["b"].runs["run_id"])
