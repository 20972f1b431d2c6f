"""The intrinsic-dimension study: ``d_int`` measurements kept on disk, re-estimated at will.

Each measurement (one model shape, parametrization and projection; see
:func:`toolkit.studies.intrinsic.intrinsic_dims`) is stored as one parquet file in a
directory: the full-training baseline of every seed and the performance of
every ``d x seed`` of the refined sweep, at the best subspace LR (the tidy
frame of :meth:`toolkit.studies.intrinsic.IntrinsicDimension.tidy`, with the
measurement's settings as columns). Files are written atomically and a
measurement already on disk is not repeated, so a killed study resumes.
Because the per-seed data are kept, ``d_int`` at any threshold, with its
bootstrap interval, is recomputed from the files (:func:`d_int_table`) without
training.

The shipped results ``data/intrinsic_dimension`` are made by::

    python -m toolkit intrinsic-dim --spec studies/intrinsic_dimension.toml \\
        --out data/intrinsic_dimension

(the ``[smoke]`` grid of the spec with ``TOOLKIT_SMOKE=1``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from toolkit.analysis.fits import fit_slope
from toolkit.engine.projections import PROJECTIONS
from toolkit.errors import InputError, check_choice
from toolkit.io import write_atomically
from toolkit.paths import DATA
from toolkit.studies.intrinsic import (
    RECORD_SETTINGS,
    IntrinsicDimension,
    estimate_intrinsic_dim,
    intrinsic_dims,
    threshold_key,
)
from toolkit.studies.sweep import SweepSpec

SETTINGS = ("model", "task", "parametrization", "base_width", "optimizer", "projection",
            "width", "depth", "steps", "batch_size", "seeds")  # fmt: skip
"""Columns that name a measurement (see :func:`toolkit.studies.intrinsic.intrinsic_dims`)."""

SHIPPED = DATA / "intrinsic_dimension"
"""The shipped measurements (see the module docstring for the command that makes them)."""

DEFAULT_PROJECTIONS = ("fastfood",)
"""Projections of a spec that names none (the ``projections`` key of a study spec)."""


def measurement_file(directory: str | Path, settings: dict, lrs: Sequence[float]) -> Path:
    """Where the measurement named by ``settings`` with baseline LR grid ``lrs`` is stored:
    a readable stem and a hash of both."""
    identity = {**settings, "lrs": [float(lr) for lr in lrs]}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    stem = "-".join(str(settings[k]) for k in ("task", "parametrization", "projection"))
    return Path(directory) / f"{stem}-w{settings['width']}-d{settings['depth']}-{digest}.parquet"


def save(
    directory: str | Path, settings: dict, lrs: Sequence[float], result: IntrinsicDimension
) -> Path:
    """Write one measurement (atomically) and return its path."""
    path = measurement_file(directory, settings, lrs)
    frame = result.tidy().with_columns(
        pl.lit(v, dtype=pl.Int64 if isinstance(v, int) else None).alias(k)
        for k, v in settings.items()
    )
    write_atomically(path, frame.write_parquet)
    return path


def spec_projections(spec: SweepSpec, projection: str | None = None) -> tuple[str, ...]:
    """``projection`` if given, else the spec's ``projections`` (default fastfood)."""
    if projection is not None:
        names = [projection]
    else:
        names = spec.extra.get("projections", DEFAULT_PROJECTIONS)
    if isinstance(names, str) or not names:
        allowed = sorted(PROJECTIONS)
        raise InputError(f"projections={names!r} must be a non-empty list of {allowed}")
    for name in names:
        check_choice("projection", name, PROJECTIONS)
    return tuple(names)


def measure_specs(
    specs: Sequence[SweepSpec],
    *,
    projection: str | None = None,
    threshold: float = 0.9,
    skip: Callable[[SweepSpec, dict], bool] | None = None,
    device: str = "cpu",
) -> Iterator[tuple[SweepSpec, dict, IntrinsicDimension]]:
    """Measure every shape of ``specs``, yielding ``(spec, settings, result)``.

    Per spec: every parametrization x projection (:func:`spec_projections`) x
    width x depth, with the spec's seeds (a count), first steps and batch size,
    optimizer, base width and baseline LR grid (``lrs``); see
    :func:`toolkit.studies.intrinsic.intrinsic_dims`. Shapes with ``skip(spec, settings)``
    true are not measured.
    """
    # Built (and the projections validated) before anything trains or is written.
    plan = [
        (spec, name, proj)
        for spec in specs
        for name in spec.parametrizations
        for proj in spec_projections(spec, projection)
    ]

    def measurements() -> Iterator[tuple[SweepSpec, dict, IntrinsicDimension]]:
        for spec, name, proj in plan:
            for settings, result in intrinsic_dims(
                spec.model, spec.task, name, spec.widths, spec.depths, proj, threshold,
                spec.seeds, spec.steps[0], spec.batch_sizes[0], spec.lrs,
                optimizer=spec.optimizers[0], base_width=spec.base_width,
                skip=None if skip is None else partial(skip, spec), device=device,
            ):  # fmt: skip
                yield spec, settings, result

    return measurements()


def run_study(
    specs: SweepSpec | Sequence[SweepSpec],
    out: str | Path,
    *,
    projection: str | None = None,
    device: str = "cpu",
    quiet: bool = False,
) -> list[Path]:
    """Measure every shape of ``specs`` (:func:`measure_specs`) not yet stored in ``out``.

    Returns the files of all the specs' measurements, new and already stored.
    Prints one line per measurement to stderr unless ``quiet``.
    """
    specs = [specs] if isinstance(specs, SweepSpec) else list(specs)
    directory = Path(out)
    paths: list[Path] = []

    def stored(spec: SweepSpec, settings: dict) -> bool:
        path = measurement_file(directory, settings, spec.lrs)
        if path.exists():
            paths.append(path)
        return path.exists()

    measurements = measure_specs(specs, projection=projection, skip=stored, device=device)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for spec, settings, result in measurements:
        paths.append(save(directory, settings, spec.lrs, result))
        if not quiet:
            print(
                f"{settings['task']} {settings['parametrization']} {settings['projection']} "
                f"width {settings['width']} depth {settings['depth']}: D = {result.D}, "
                f"d_int90 = {result.estimate:g} [{result.lo:g}, {result.hi:g}] "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        started = time.perf_counter()
    return sorted(set(paths))


def load(path: str | Path | Sequence[str | Path] = SHIPPED) -> pl.DataFrame:
    """Measurements stored in the directory ``path`` (or the given files), as one tidy frame
    (default: the shipped ones, :data:`SHIPPED`).

    Columns: :data:`SETTINGS`, ``kind`` (``baseline`` or ``subspace``), ``D``,
    ``d`` (null on baseline rows), ``seed``, ``lr``, ``metric``, ``val_loss``,
    ``val_accuracy``, ``status``. A file that cannot be read is named in the error.
    """
    if isinstance(path, str | Path):
        directory = Path(path)
        if not directory.is_dir():
            raise InputError(f"path={str(directory)!r} is not a directory of d_int measurements")
        files = sorted(directory.glob("*.parquet"))
        if not files:
            raise InputError(f"path={str(directory)!r} holds no d_int measurements (*.parquet)")
    else:
        files = [Path(p) for p in path]
        if not files:
            raise InputError("no d_int measurements given")
    frames = []
    for file in files:
        try:
            frames.append(pl.read_parquet(file))
        except (pl.exceptions.PolarsError, OSError) as error:
            raise InputError(f"{file} is not a readable d_int measurement: {error}") from None
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.with_columns(pl.col(pl.Int32).cast(pl.Int64))  # literals were stored as i32


def d_int_table(
    frame: pl.DataFrame,
    *,
    threshold: float = 0.9,
    confidence: float = 0.9,
    resamples: int = 2000,
) -> pl.DataFrame:
    """``d_int`` at ``threshold`` of every measurement in ``frame`` (from :func:`load`).

    One row per measurement: :data:`SETTINGS`, ``D``, ``baseline`` (mean
    full-training metric), ``threshold``, ``d_int``, ``d_int_lo``, ``d_int_hi``
    (the seed-bootstrap interval at ``confidence``; ``inf`` where no measured
    ``d`` reaches the target), see :func:`toolkit.studies.intrinsic.estimate_intrinsic_dim`.
    """
    rows = []
    for settings, group in frame.group_by(SETTINGS, maintain_order=True):
        result = estimate_intrinsic_dim(
            group.filter(pl.col("kind") == "subspace"),
            group.filter(pl.col("kind") == "baseline"),
            D=int(group["D"][0]),
            threshold=threshold,
            confidence=confidence,
            resamples=resamples,
        )
        rows.append(
            {
                **dict(zip(SETTINGS, settings, strict=True)),
                "D": result.D,
                "baseline": result.baseline,
                "threshold": threshold,
                "d_int": result.estimate,
                "d_int_lo": result.lo,
                "d_int_hi": result.hi,
            }
        )
    return pl.DataFrame(rows).sort("task", "parametrization", "projection", "depth", "width")


def d_int_records(table: pl.DataFrame) -> list[dict]:
    """Rows of :func:`d_int_table` as the records of ``python -m toolkit intrinsic-dim
    --json``: ``width, depth, parametrization, projection, D, baseline`` and ``d_int90``,
    ``d_int90_lo``, ``d_int90_hi`` named after the threshold (:func:`threshold_key`)."""
    if table.height == 0:
        return []
    key = threshold_key(table["threshold"][0])
    return table.select(
        *RECORD_SETTINGS, "D", "baseline", pl.col("d_int").alias(key),
        pl.col("d_int_lo").alias(f"{key}_lo"), pl.col("d_int_hi").alias(f"{key}_hi"),
    ).to_dicts()  # fmt: skip


def performance_curves(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean performance against ``d`` per measurement, relative to its baseline.

    One row per measurement and ``d``: :data:`SETTINGS`, ``D``, ``d``,
    ``metric`` (mean over seeds), ``metric_lo`` / ``metric_hi`` (smallest and
    largest seed), ``baseline`` (mean full-training metric) and ``fraction``
    (``metric / baseline``, the quantity the threshold applies to).
    """
    baselines = (
        frame.filter(pl.col("kind") == "baseline")
        .group_by(SETTINGS)
        .agg(baseline=pl.col("metric").mean())
    )
    return (
        frame.filter(pl.col("kind") == "subspace")
        .group_by(*SETTINGS, "D", "d")
        .agg(
            pl.col("metric").mean(),
            metric_lo=pl.col("metric").min(),
            metric_hi=pl.col("metric").max(),
        )
        .join(baselines, on=list(SETTINGS))
        .with_columns(fraction=pl.col("metric") / pl.col("baseline"))
        .sort("task", "parametrization", "projection", "depth", "width", "d")
    )


def d_int_scaling(
    table: pl.DataFrame,
    *,
    x: str = "D",
    by: Sequence[str] = ("task", "parametrization", "projection", "depth"),
    level: float = 0.95,
) -> pl.DataFrame:
    """Exponent ``k`` of ``d_int ~ x**k`` per ``by`` group, by OLS on log2-log2 axes.

    Li et al. (2018) found ``d_int90`` of MLPs on MNIST nearly constant while
    ``D`` grew by an order of magnitude: ``k`` near 0, against ``k = 1`` for a
    ``d_int`` proportional to the parameter count. Rows of ``table``
    (:func:`d_int_table`) without a finite ``d_int`` are left out. Columns:
    ``by``, ``exponent``, ``exponent_lo``, ``exponent_hi`` (the ``level``
    interval, NaN with fewer than 3 sizes), ``intercept`` (log2 ``d_int`` at
    ``x = 1``) and ``points``.
    """
    rows = []
    finite = table.filter(pl.col("d_int").is_finite())
    for key, group in finite.group_by(list(by), maintain_order=True):
        sizes = np.log2(group[x].to_numpy().astype(float))
        d_int = np.log2(group["d_int"].to_numpy())
        slope, lo, hi, intercept = fit_slope(sizes, d_int, level=level)
        fit = {"exponent": slope, "exponent_lo": lo, "exponent_hi": hi, "intercept": intercept}
        rows.append({**dict(zip(by, key, strict=True)), **fit, "points": group.height})
    schema = {k: table.schema[k] for k in by}
    schema |= dict.fromkeys(("exponent", "exponent_lo", "exponent_hi", "intercept"), pl.Float64)
    schema["points"] = pl.Int64
    return pl.DataFrame(rows, schema=schema).sort(list(by))
