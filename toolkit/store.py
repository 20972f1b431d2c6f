"""The results store: a directory of parquet files, one set per trained group.

Layout::

    DIR/store.json                 {"schema_version": 2, "created_by": "toolkit <version>"}
    DIR/runs/<group_id>.parquet    one row per run of the group; its presence marks the
                                   group as finished
    DIR/curves/<group_id>.parquet  run_id, step, split, metric, value
    DIR/probes/<group_id>.parquet  run_id, step, layer, role, stat, value
    DIR/<table>/<file>.sha256      the SHA-256 of each table file, written with it
    DIR/quarantine/<table>/...     damaged files moved aside by :meth:`Store.quarantine`
    DIR/claims/<run_id>            runs being trained (see :mod:`toolkit.locks`)

Files are never appended to in place. Each is written to a hidden temporary
file (``.<name>.<random>.tmp``) in its table's directory, flushed to disk and
renamed over its final name, so readers, which only look at ``*.parquet``, see
either the whole file or none of it. A group's ``curves`` and ``probes`` files
are written before its ``runs`` file, so a process killed part-way leaves a
group without a runs file: it is not finished, its other files are orphans that
the readers hide, and a resumed sweep writes it again.

Every file is checked against its checksum before it is parsed, so a bit flip
anywhere in it is found, never read as a changed value. A file that is damaged
or cannot be read stops the reader with a :class:`StoreError` naming it;
``python -m toolkit store DIR --quarantine`` (or :meth:`Store.quarantine`) moves
such files aside, and a resumed sweep trains their runs again. Stores of schema
version 1 were written without checksums: they are read unverified.

A run's identity is its ``run_id`` alone. Should two groups hold the same run
(two sweeps that grouped it differently, a copied file), readers return it once:
the copy in the first file by name, with that file's curves and probes.
:meth:`Store.duplicates` lists the other copies and :meth:`Store.dedupe` removes
them.

Readers return lazy frames of all files of a table stacked together; columns
that only some files have are filled with nulls.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from toolkit import __version__
from toolkit.errors import InputError, check_choice
from toolkit.io import (
    CHECKSUM_SUFFIX,
    checksum_path,
    is_temporary,
    read_verified,
    remove_stale_temporaries,
    write_atomically,
    write_checksummed,
)
from toolkit.locks import CLAIMS, Claims, maintenance, writing

SCHEMA_VERSION = 2
"""1: tables only; 2: every table file has a checksum sidecar."""

_GROUP = "__group__"
"""Column the readers add while stacking files: the group (file) a row came from."""
TABLES = ("runs", "curves", "probes")

RUN_SETTINGS = ("study", "model", "task", "parametrization", "depth_rule", "optimizer",
                "weight_decay_scaling", "schedule", "base_width", "base_depth", "width", "depth",
                "lr", "weight_decay", "init_sigma", "input_alpha", "output_alpha", "batch_size",
                "steps", "seed", "alignment", "lr_input", "lr_hidden", "lr_output",
                "lr_vector")  # fmt: skip
"""The runs table's columns that say which run a row is: every setting a study varies.
Analyses group by them (a configuration is these without ``lr`` and ``seed``). The last
ones are recorded only when set (:data:`toolkit.engine.config.RECORDED_WHEN_SET`): a store
may lack their columns, and a null in them is the default."""

# The columns every reader returns (files may add more, e.g. study-specific run columns).
SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "runs": {
        "run_id": pl.String(),
        "study": pl.String(),
        "model": pl.String(),
        "task": pl.String(),
        "parametrization": pl.String(),
        "optimizer": pl.String(),
        "width": pl.Int64(),
        "depth": pl.Int64(),
        "lr": pl.Float64(),
        "weight_decay": pl.Float64(),
        "batch_size": pl.Int64(),
        "steps": pl.Int64(),
        "seed": pl.Int64(),
        "status": pl.String(),
        "final_train_loss": pl.Float64(),
        "final_val_loss": pl.Float64(),
        "wall_s": pl.Float64(),
        "toolkit_version": pl.String(),
        "created_at": pl.String(),
    },
    "curves": {
        "run_id": pl.String(),
        "step": pl.Int64(),
        "split": pl.String(),
        "metric": pl.String(),
        "value": pl.Float64(),
    },
    "probes": {
        "run_id": pl.String(),
        "step": pl.Int64(),
        "layer": pl.String(),
        "role": pl.String(),
        "stat": pl.String(),
        "value": pl.Float64(),
    },
}

_MANIFEST = "store.json"
_QUARANTINE = "quarantine"


@dataclass
class Records:
    """The tidy tables one group produced: a unit of work written to the store."""

    runs: pl.DataFrame
    curves: pl.DataFrame
    probes: pl.DataFrame


class StoreError(InputError):
    """A problem with a results store; the message names the file or directory."""


def _write_manifest(manifest: Path) -> None:
    text = json.dumps({"schema_version": SCHEMA_VERSION, "created_by": f"toolkit {__version__}"})
    write_atomically(manifest, lambda handle: handle.write(text.encode() + b"\n"))


def _check_group_id(group_id: str) -> None:
    """Raise ``ValueError`` unless ``group_id`` can name a visible file in a table directory."""
    if (
        not isinstance(group_id, str)
        or not group_id
        or group_id.startswith(".")
        or any(c in group_id for c in "/\\\0")
    ):
        raise InputError(
            f"group_id={group_id!r} must be a non-empty file name: "
            "no '/', '\\' or NUL, not starting with '.'"
        )


class Store:
    """A results store in directory ``path`` (see the module docstring for the layout).

    Args:
        path: the store's directory.
        create: make the directory and its ``store.json`` if the directory is
            missing or empty; with ``False`` a missing store is an error.

    Raises:
        StoreError: ``path`` is missing (and ``create`` is false), is not a
            store (a non-empty directory without ``store.json``, or a file), or
            was written by a newer toolkit.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        manifest = self.path / _MANIFEST
        if not self.path.exists():
            if not create:
                raise StoreError(f"store {self.path} does not exist")
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise StoreError(f"store {self.path} is not a directory")
        self.schema_version = SCHEMA_VERSION
        if manifest.exists():
            self.schema_version = self._check_manifest(manifest)
        # Another process creating the same store may have only its temporary file here yet.
        elif any(not is_temporary(entry) for entry in self.path.iterdir()):
            raise StoreError(
                f"{self.path} is not a results store: it is not empty and has no {_MANIFEST}"
            )
        elif create:
            _write_manifest(manifest)
        else:
            raise StoreError(f"{self.path} is not a results store: it has no {_MANIFEST}")

    def _check_manifest(self, manifest: Path) -> int:
        try:
            version = json.loads(manifest.read_text())["schema_version"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise StoreError(f"{manifest} is not a valid store manifest: {error}") from error
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise StoreError(f"{manifest} has schema_version={version!r}: expected an integer >= 1")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} was written by a newer toolkit (schema version {version}; "
                f"this toolkit reads up to {SCHEMA_VERSION}): upgrade toolkit"
            )
        return version

    @property
    def verified(self) -> bool:
        """Whether the store's files carry checksums (schema version 2 and later)."""
        return self.schema_version >= 2

    def write_group(self, group_id: str, records: Records) -> None:
        """Store the tables of one finished group, replacing any earlier ones of that id.

        ``curves`` and ``probes`` are written first and ``runs`` last, each
        atomically with its checksum, so the group counts as finished only once
        all are on disk. An empty probes frame is written too, keeping its schema.
        Temporary files that killed writers left behind are deleted first.
        """
        _check_group_id(group_id)
        for table in ("curves", "probes", "runs"):
            directory = self.path / table
            directory.mkdir(exist_ok=True)
            remove_stale_temporaries(directory)
            buffer = io.BytesIO()
            frame: pl.DataFrame = getattr(records, table)
            frame.write_parquet(buffer)
            write_checksummed(directory / f"{group_id}.parquet", buffer.getvalue())

    @contextlib.contextmanager
    def writing(self) -> Iterator[Claims]:
        """Hold the store for writing; yields this process's :class:`~toolkit.locks.Claims`.

        Claim runs before training them (``claims.take(run_ids)``), then check which
        of the claimed ones are still unfinished: only those are trained. Every
        claim is released when the block ends.
        """
        claims = Claims(self.path / CLAIMS)
        with writing(self.path):
            try:
                yield claims
            finally:
                claims.release()

    def files(self, table: str) -> list[Path]:
        """The ``*.parquet`` files of ``table`` (``runs``, ``curves`` or ``probes``), sorted.

        Raises :class:`StoreError` if the table's directory exists but cannot be listed.
        """
        check_choice("table", table, TABLES)
        directory = self.path / table
        if not directory.exists():
            return []
        try:
            names = [entry.name for entry in os.scandir(directory)]
        except OSError as error:
            raise StoreError(f"store table {directory} cannot be listed: {error}") from None
        return sorted(directory / name for name in names if name.endswith(".parquet"))

    def read_file(self, path: Path) -> pl.DataFrame:
        """One table file, verified against its checksum; :class:`StoreError` if damaged."""
        try:
            data = read_verified(path) if self.verified else Path(path).read_bytes()
            frame = pl.read_parquet(io.BytesIO(data))
        except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as error:
            raise StoreError(
                f"store file {path} cannot be read ({error}); move bad files aside with "
                f"`python -m toolkit store {self.path} --quarantine`"
            ) from None
        if "run_id" not in frame.columns:
            raise StoreError(f"store file {path} cannot be read (no run_id column)")
        return frame

    def check(self) -> list[tuple[Path, str]]:
        """Every table file that is damaged or cannot be read, with the reason.

        Reads every byte of every file and checks it against its checksum.
        """
        bad = []
        for table in TABLES:
            for path in self.files(table):
                try:
                    self.read_file(path)
                except StoreError as error:
                    bad.append((path, str(error).split(" cannot be read ", 1)[-1]))
        return bad

    def quarantine(self) -> list[Path]:
        """Move damaged files into ``DIR/quarantine/<table>/`` and return their new paths.

        The runs file of a group whose curves or probes file is damaged is
        moved too, so that group is no longer finished and a resumed sweep
        trains it again. Leftover ``.tmp`` files of interrupted writes are
        deleted. Refused (:class:`~toolkit.locks.StoreBusy`) while a sweep writes.
        """
        with maintenance(self.path, "quarantine"):
            bad = [path for path, _ in self.check()]
            for path in list(bad):
                runs_file = self.path / "runs" / path.name
                if path.parent.name != "runs" and runs_file.exists() and runs_file not in bad:
                    bad.append(runs_file)
            moved = [self._move_aside(path) for path in bad]
            for directory in (self.path, *(self.path / table for table in TABLES)):
                for temp in directory.glob(".*.tmp"):
                    temp.unlink(missing_ok=True)
        return moved

    def _move_aside(self, path: Path) -> Path:
        directory = self.path / _QUARANTINE / path.parent.name
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / path.name
        copy = 0
        while target.exists():
            copy += 1
            target = directory / f"{path.stem}.{copy}{path.suffix}"
        os.replace(path, target)
        sidecar = checksum_path(path)
        if sidecar.exists():
            os.replace(sidecar, target.with_name(target.name + CHECKSUM_SUFFIX))
        return target

    def duplicates(self) -> pl.DataFrame:
        """Every stored copy of a run that is stored more than once.

        Columns ``run_id``, ``group`` (the file it is in) and ``kept`` (whether the
        readers return this copy: the one in the first file by name).
        """
        rows = self._stack("runs").select("run_id", _GROUP)
        copies = rows.filter(pl.len().over("run_id") > 1)
        return copies.with_columns(
            kept=pl.col(_GROUP) == pl.col(_GROUP).first().over("run_id")
        ).rename({_GROUP: "group"})

    def dedupe(self) -> int:
        """Remove every copy of a run but the one readers return; the number removed.

        Each affected group's files are rewritten without the removed runs (curves and
        probes first, runs last, each atomically); a group left with no runs loses its
        files. Refused (:class:`~toolkit.locks.StoreBusy`) while a sweep writes.
        """
        with maintenance(self.path, "dedupe"):
            extra = self.duplicates().filter(~pl.col("kept"))
            for (group,), rows in extra.group_by(["group"]):
                drop = rows["run_id"].implode()
                for table in ("curves", "probes", "runs"):
                    path = self.path / table / f"{group}.parquet"
                    if not path.exists():
                        continue
                    kept = self.read_file(path).filter(~pl.col("run_id").is_in(drop))
                    if table == "runs" and kept.height == 0:
                        self._remove_group(group)
                        break
                    buffer = io.BytesIO()
                    kept.write_parquet(buffer)
                    write_checksummed(path, buffer.getvalue())
        return extra.height

    def _remove_group(self, group: str) -> None:
        for table in ("runs", "curves", "probes"):
            path = self.path / table / f"{group}.parquet"
            path.unlink(missing_ok=True)
            checksum_path(path).unlink(missing_ok=True)

    def finished_run_ids(self) -> set[str]:
        """Ids of the runs of every finished group."""
        return set(self._stack("runs").get_column("run_id").to_list())

    def runs(self) -> pl.LazyFrame:
        """All runs, each once: the :data:`SCHEMAS` ``runs`` columns first, then any extra ones."""
        return self._kept_runs().drop(_GROUP).lazy()

    def curves(self) -> pl.LazyFrame:
        """Curves of finished runs: ``run_id, step, split, metric, value``."""
        return self._finished("curves")

    def probes(self) -> pl.LazyFrame:
        """Probe values of finished runs: ``run_id, step, layer, role, stat, value``."""
        return self._finished("probes")

    def _kept_runs(self) -> pl.DataFrame:
        return self._stack("runs").unique("run_id", keep="first", maintain_order=True)

    def _finished(self, table: str) -> pl.DataFrame:
        """``table``'s rows of the kept copy of each finished run (no orphans, no duplicates)."""
        kept = self._kept_runs().select("run_id", _GROUP)
        rows = self._stack(table).join(
            kept, on=["run_id", _GROUP], how="semi", maintain_order="left"
        )
        return rows.drop(_GROUP).lazy()

    def _stack(self, table: str) -> pl.DataFrame:
        """All files of ``table`` stacked, each verified, with the group each row came from."""
        frames = [pl.DataFrame(schema={**SCHEMAS[table], _GROUP: pl.String()})]
        for path in self.files(table):
            group = path.name[: -len(".parquet")]
            frames.append(self.read_file(path).with_columns(pl.lit(group).alias(_GROUP)))
        return pl.concat(frames, how="diagonal_relaxed")


def upgrade(path: str | os.PathLike[str]) -> int:
    """Bring a schema-version-1 store to the current version: give every table file a
    checksum of its present bytes (each file is parsed first; a file that cannot be
    read stops the upgrade with a :class:`StoreError`). Returns the files checksummed.
    """
    store = open(path)
    if store.verified:
        return 0
    files = [file for table in TABLES for file in store.files(table)]
    with maintenance(store.path, "upgrade"):
        for file in files:
            store.read_file(file)
            write_checksummed(file, file.read_bytes())
        _write_manifest(store.path / _MANIFEST)
    return len(files)


def open(path: str | os.PathLike[str]) -> Store:
    """Open the existing store at ``path``; :class:`StoreError` if there is none.

    Named to be called as ``toolkit.store.open``; it shadows the builtin within this module.
    """
    return Store(path, create=False)
