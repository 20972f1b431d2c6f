"""The results store: a directory of parquet files, one set per trained group.

Layout::

    DIR/store.json                 {"schema_version": 1, "created_by": "toolkit <version>"}
    DIR/runs/<group_id>.parquet    one row per run of the group; its presence marks the
                                   group as finished
    DIR/curves/<group_id>.parquet  run_id, step, split, metric, value
    DIR/probes/<group_id>.parquet  run_id, step, layer, role, stat, value
    DIR/quarantine/<table>/...     unreadable files moved aside by :meth:`Store.quarantine`

Files are never appended to in place. Each is written to a hidden temporary
file (``.<name>.<random>.tmp``) in its table's directory, flushed to disk and
renamed over its final name, so readers, which only look at ``*.parquet``, see
either the whole file or none of it. A group's ``curves`` and ``probes`` files
are written before its ``runs`` file, so a process killed part-way leaves a
group without a runs file: it is not finished, its other files are orphans that
the readers hide, and a resumed sweep writes it again.

Readers return lazy frames of all files of a table stacked together; columns
that only some files have are filled with nulls. A file that cannot be read
stops the reader with a :class:`StoreError` naming it; ``python -m toolkit
store DIR --quarantine`` (or :meth:`Store.quarantine`) moves such files aside.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from toolkit import __version__
from toolkit.errors import InputError, check_choice
from toolkit.io import is_temporary, write_atomically

SCHEMA_VERSION = 1
TABLES = ("runs", "curves", "probes")

RUN_SETTINGS = ("study", "model", "task", "parametrization", "depth_rule", "optimizer",
                "weight_decay_scaling", "schedule", "base_width", "base_depth", "width", "depth",
                "lr", "weight_decay", "init_sigma", "input_alpha", "output_alpha", "batch_size",
                "steps", "seed")  # fmt: skip
"""The runs table's columns that say which run a row is: every setting a study varies.
Analyses group by them (a configuration is these without ``lr`` and ``seed``)."""

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


def _read_error(path: Path) -> str | None:
    """Why ``path`` is not a usable table file, or ``None`` if it is.

    Only the footer is read: it sits at the end of a parquet file, so any
    truncation destroys it. Damage inside a complete file goes unnoticed here.
    """
    try:
        schema = pl.read_parquet_schema(path)
    except (pl.exceptions.PolarsError, OSError) as error:
        return str(error)
    if "run_id" not in schema:
        return "no run_id column"
    return None


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
        if manifest.exists():
            self._check_manifest(manifest)
        # Another process creating the same store may have only its temporary file here yet.
        elif any(not is_temporary(entry) for entry in self.path.iterdir()):
            raise StoreError(
                f"{self.path} is not a results store: it is not empty and has no {_MANIFEST}"
            )
        elif create:
            text = json.dumps(
                {"schema_version": SCHEMA_VERSION, "created_by": f"toolkit {__version__}"}
            )
            write_atomically(manifest, lambda handle: handle.write(text.encode() + b"\n"))
        else:
            raise StoreError(f"{self.path} is not a results store: it has no {_MANIFEST}")

    def _check_manifest(self, manifest: Path) -> None:
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

    def write_group(self, group_id: str, records: Records) -> None:
        """Store the tables of one finished group, replacing any earlier ones of that id.

        ``curves`` and ``probes`` are written first and ``runs`` last, each
        atomically, so the group counts as finished only once all are on disk.
        An empty probes frame is written too, keeping its schema.
        """
        _check_group_id(group_id)
        for table in ("curves", "probes", "runs"):
            directory = self.path / table
            directory.mkdir(exist_ok=True)
            frame: pl.DataFrame = getattr(records, table)
            write_atomically(directory / f"{group_id}.parquet", frame.write_parquet)

    def files(self, table: str) -> list[Path]:
        """The ``*.parquet`` files of ``table`` (``runs``, ``curves`` or ``probes``), sorted."""
        check_choice("table", table, TABLES)
        return sorted((self.path / table).glob("*.parquet"))

    def check(self) -> list[tuple[Path, str]]:
        """Every table file that cannot be read (or lacks ``run_id``), with the reason.

        Reads each file's footer only, which catches truncated files.
        """
        bad = []
        for table in TABLES:
            for path in self.files(table):
                error = _read_error(path)
                if error is not None:
                    bad.append((path, error))
        return bad

    def quarantine(self) -> list[Path]:
        """Move unreadable files into ``DIR/quarantine/<table>/`` and return their new paths.

        The runs file of a group whose curves or probes file is unreadable is
        moved too, so that group is no longer finished and a resumed sweep
        trains it again. Leftover ``.tmp`` files of interrupted writes are
        deleted: do not run this while another process writes to the store.
        """
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
        return target

    def finished_run_ids(self) -> set[str]:
        """Ids of the runs of every finished group (only the ``run_id`` column is read)."""
        return set(self._scan("runs").select("run_id").collect().to_series().to_list())

    def runs(self) -> pl.LazyFrame:
        """All runs: the :data:`SCHEMAS` ``runs`` columns first, then any extra ones."""
        return self._scan("runs")

    def curves(self) -> pl.LazyFrame:
        """Curves of finished runs: ``run_id, step, split, metric, value``."""
        return self._finished("curves")

    def probes(self) -> pl.LazyFrame:
        """Probe values of finished runs: ``run_id, step, layer, role, stat, value``."""
        return self._finished("probes")

    def _finished(self, table: str) -> pl.LazyFrame:
        """``table`` without the rows of runs absent from the runs table (orphans)."""
        finished = self._scan("runs").select("run_id")
        return self._scan(table).join(finished, on="run_id", how="semi", maintain_order="left")

    def _scan(self, table: str) -> pl.LazyFrame:
        """All files of ``table`` stacked, after checking that each one can be read."""
        frames = [pl.LazyFrame(schema=SCHEMAS[table])]
        for path in self.files(table):
            error = _read_error(path)
            if error is not None:
                raise StoreError(
                    f"store file {path} cannot be read ({error}); move bad files aside with "
                    f"`python -m toolkit store {self.path} --quarantine`"
                )
            frames.append(pl.scan_parquet(path))
        return pl.concat(frames, how="diagonal_relaxed")


def open(path: str | os.PathLike[str]) -> Store:
    """Open the existing store at ``path``; :class:`StoreError` if there is none.

    Named to be called as ``toolkit.store.open``; it shadows the builtin within this module.
    """
    return Store(path, create=False)
