"""Intrinsic dimension from stored measurements: ``d_int`` estimates, curves and scaling fits.

Li, Farkhoor, Liu, Yosinski 2018 ("Measuring the intrinsic dimension of
objective landscapes") train a model in random subspaces ``theta = theta0 +
P theta_d`` of growing dimension ``d`` and call

    d_int_t = min { d : mean_seeds perf(d) >= t * perf_full },

with ``perf_full`` the performance of full-parameter training on the same
budget (the *baseline*, at its best learning rate) and ``t = 0.9`` giving
``d_int90``. The interval is a percentile bootstrap over seeds (Efron &
Tibshirani 1993): resample the seeds with replacement, subspace runs and
baseline together, and recompute the estimate on the ``d`` evaluated.

A *measurement* is the runs of one d-search (:mod:`toolkit.studies.intrinsic`):
rows of a results store's ``runs`` table with ``kind`` ``baseline`` (one per seed
of full training, ``d`` null) or ``subspace`` (one per ``d x seed``), both at the
best learning rate of their grid, and the columns :data:`SETTINGS`,
``measurement`` (its id), ``D``, ``seed``, ``lr``, ``metric``. Everything here
takes and returns polars frames and imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from toolkit import store as results
from toolkit.analysis.fits import fit_slope
from toolkit.errors import InputError, check_positive
from toolkit.paths import DATA

SETTINGS = ("model", "task", "parametrization", "base_width", "optimizer", "projection",
            "width", "depth", "steps", "batch_size", "seeds")  # fmt: skip
"""Columns that name a measurement (``seeds`` is their count)."""

RECORD_SETTINGS = ("width", "depth", "parametrization", "projection")
"""Settings that lead each record of :func:`d_int_records`."""

ESTIMATE = ("D", "baseline", "threshold", "d_int", "d_int_lo", "d_int_hi")
"""Columns of one ``d_int`` estimate (:meth:`IntrinsicDimension.record`)."""

SHIPPED = DATA / "intrinsic_dimension"
"""The shipped measurements, a results store made by ``studies/intrinsic_dimension.toml``."""

_ORDER = ("task", "parametrization", "projection", "depth", "width")


def check_threshold(threshold: float) -> None:
    """Raise :class:`InputError` unless ``threshold`` is in ``(0, 1]``."""
    ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not ok or not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold={threshold!r} must be in (0, 1]")


def threshold_key(threshold: float) -> str:
    """Name of the estimate at ``threshold``: ``d_int90`` at 0.9, ``d_int87.5`` at 0.875."""
    return f"d_int{threshold * 100:g}"


def best_lr(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Rows of the ``lr`` with the best mean ``metric`` over seeds, per ``by`` group.

    A missing or NaN metric (a diverged run) counts as ``-inf``.
    """
    score = pl.col("metric").fill_null(-math.inf).fill_nan(-math.inf)
    means = frame.group_by(*by, "lr").agg(score.mean().alias("score"))
    best = means.sort("score", descending=True).unique(subset=list(by), keep="first")
    return frame.join(best.select(*by, "lr"), on=[*by, "lr"])


@dataclass(frozen=True)
class IntrinsicDimension:
    """``d_int`` at one threshold, with its bootstrap interval and the data behind it.

    ``estimate``, ``lo`` and ``hi`` are evaluated values of ``d``, or ``inf``
    when no evaluated ``d`` reaches the target. ``frame`` has one row per
    ``d x seed`` (``d, seed, metric`` and whatever the measurement added);
    ``baselines`` one row per seed of full training (``seed, metric``, ...) and
    ``baseline`` their mean metric.
    """

    threshold: float
    estimate: float
    lo: float
    hi: float
    confidence: float
    baseline: float
    D: int
    frame: pl.DataFrame
    baselines: pl.DataFrame

    @property
    def key(self) -> str:
        """``d_int90`` at threshold 0.9 (see :func:`threshold_key`)."""
        return threshold_key(self.threshold)

    @property
    def target(self) -> float:
        """The performance to reach: ``threshold * baseline``."""
        return self.threshold * self.baseline

    def record(self) -> dict:
        """The estimate as the columns :data:`ESTIMATE` of a :func:`d_int_table` row."""
        values = (self.D, self.baseline, self.threshold, self.estimate, self.lo, self.hi)
        return dict(zip(ESTIMATE, values, strict=True))


def _first_reaching(ds: np.ndarray, means: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Smallest ``d`` (``ds`` ascending, rows of ``means``) with ``means >= targets``, else inf."""
    reached = means >= targets
    return np.where(reached.any(0), ds[reached.argmax(0)], np.inf)


def estimate_intrinsic_dim(
    frame: pl.DataFrame,
    baseline: pl.DataFrame,
    *,
    D: int,
    threshold: float = 0.9,
    confidence: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> IntrinsicDimension:
    """``d_int`` from measured performance: point estimate and seed-bootstrap interval.

    The estimate is the smallest ``d`` in ``frame`` with
    ``mean_seeds(metric) >= threshold * mean_seeds(baseline metric)``. The
    interval: draw ``n`` of the ``n`` seeds with replacement ``resamples``
    times, recompute the estimate on the same ``d`` (the baseline's seeds are
    drawn with the same indices when they are the subspace's seeds, else
    independently) and take the ``(1 -+ confidence)/2`` quantiles.

    Args:
        frame: ``d, seed, metric``; every ``d`` measured on the same seeds.
        baseline: ``seed, metric`` of full training.
        D: the model's parameter count (stored with the result).
    """
    check_threshold(threshold)
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence={confidence!r} must be in (0, 1)")
    check_positive("resamples", resamples, integer=True)
    if frame.height == 0 or baseline.height == 0:
        raise InputError("frame and baseline need at least one row each")
    table = frame.pivot(on="seed", index="d", values="metric", aggregate_function="mean").sort("d")
    seeds = [c for c in table.columns if c != "d"]
    scores = table.select(seeds).to_numpy().astype(float)  # (n_d, n_seeds)
    if np.isnan(scores).any():
        raise InputError("frame must hold a metric for every d on every seed")
    ds = table["d"].to_numpy().astype(float)
    base_frame = baseline.sort("seed")
    base = base_frame["metric"].to_numpy().astype(float)
    paired = [str(s) for s in base_frame["seed"].to_list()] == seeds
    target = threshold * base.mean()
    estimate = float(_first_reaching(ds, scores.mean(1, keepdims=True), np.array([target]))[0])

    rng = np.random.default_rng(seed)
    n = scores.shape[1]
    picks = rng.integers(0, n, size=(resamples, n))
    means = scores[:, picks].mean(-1)  # (n_d, resamples)
    base_picks = picks if paired else rng.integers(0, len(base), size=(resamples, len(base)))
    targets = threshold * base[base_picks].mean(-1)
    draws = _first_reaching(ds, means, targets)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha], method="inverted_cdf")
    return IntrinsicDimension(
        threshold=threshold,
        estimate=estimate,
        lo=float(lo),
        hi=float(hi),
        confidence=confidence,
        baseline=float(base.mean()),
        D=int(D),
        frame=frame.sort("d", "seed"),
        baselines=base_frame,
    )


def load_measurements(path: str | Path = SHIPPED) -> pl.DataFrame:
    """Every measurement in the results store at ``path`` (default :data:`SHIPPED`): its runs rows.

    Raises :class:`InputError` naming ``path`` when it is not a directory, holds no
    measurement, or holds the one-file-per-measurement layout of older toolkits;
    an unreadable file is named (:class:`toolkit.store.StoreError`).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise InputError(f"path={str(directory)!r} is not a directory of d_int measurements")
    if not (directory / "store.json").exists() and any(directory.glob("*.parquet")):
        raise InputError(
            f"path={str(directory)!r} holds d_int measurements in the layout of older toolkits "
            "(one parquet file per measurement, no store.json); measure them again into a "
            "results store with `python -m toolkit intrinsic-dim --spec SPEC --out DIR`"
        )
    if not (directory / "store.json").exists():
        raise InputError(f"path={str(directory)!r} holds no d_int measurements")
    runs = results.open(directory).runs()
    if "kind" not in runs.collect_schema():
        raise InputError(f"path={str(directory)!r} holds no d_int measurements")
    return runs.filter(pl.col("kind").is_not_null()).collect()


def d_int_table(
    frame: pl.DataFrame,
    *,
    threshold: float = 0.9,
    confidence: float = 0.9,
    resamples: int = 2000,
) -> pl.DataFrame:
    """``d_int`` at ``threshold`` of every measurement in ``frame`` (:func:`load_measurements`).

    One row per measurement: :data:`SETTINGS`, ``measurement`` and the columns
    :data:`ESTIMATE`: ``D``, ``baseline`` (mean full-training metric),
    ``threshold``, ``d_int``, ``d_int_lo``, ``d_int_hi`` (the seed-bootstrap
    interval at ``confidence``; ``inf`` where no measured ``d`` reaches the
    target), see :func:`estimate_intrinsic_dim`. Sorted by task,
    parametrization, projection, depth and width.
    """
    rows = []
    for (measurement,), group in frame.group_by("measurement", maintain_order=True):
        result = estimate_intrinsic_dim(
            group.filter(pl.col("kind") == "subspace"),
            group.filter(pl.col("kind") == "baseline"),
            D=int(group["D"][0]),
            threshold=threshold,
            confidence=confidence,
            resamples=resamples,
        )
        settings = group.select(SETTINGS).row(0, named=True)
        rows.append({**settings, "measurement": measurement, **result.record()})
    return pl.DataFrame(rows).sort(_ORDER)


def d_int_records(table: pl.DataFrame) -> list[dict]:
    """Rows of :func:`d_int_table` as flat records (the command line's ``--json``):
    :data:`RECORD_SETTINGS`, ``D``, ``baseline`` and ``d_int90``, ``d_int90_lo``,
    ``d_int90_hi`` named after the threshold (:func:`threshold_key`)."""
    if table.height == 0:
        return []
    key = threshold_key(table["threshold"][0])
    return table.select(
        *RECORD_SETTINGS, "D", "baseline", pl.col("d_int").alias(key),
        pl.col("d_int_lo").alias(f"{key}_lo"), pl.col("d_int_hi").alias(f"{key}_hi"),
    ).to_dicts()  # fmt: skip


def d_int_vs_D(
    table: pl.DataFrame, *, series: Sequence[str] = ("parametrization",), level: float = 0.95
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``d_int`` against the parameter count, as ``(points, fits)`` of
    :func:`toolkit.ui.plots.exponent_plot` with ``hue="series"``.

    ``series`` is the values of the ``series`` columns joined by spaces. ``points``:
    ``series``, ``D``, ``value``, ``lo``, ``hi`` (``d_int`` and its interval) of the
    rows of ``table`` (:func:`d_int_table`) with a finite ``d_int`` (one that no
    measured ``d`` reached has no place on log axes); ``fits``: the exponent of
    ``d_int ~ D**k`` per series (:func:`d_int_scaling`).
    """
    labelled = table.with_columns(
        pl.concat_str([pl.col(c).cast(pl.String) for c in series], separator=" ").alias("series")
    )
    points = labelled.filter(pl.col("d_int").is_finite()).select(
        "series", "D", pl.col("d_int").alias("value"), pl.col("d_int_lo").alias("lo"),
        pl.col("d_int_hi").alias("hi"),
    )  # fmt: skip
    return points, d_int_scaling(labelled, by=("series",), level=level)


def performance_curves(frame: pl.DataFrame) -> pl.DataFrame:
    """Mean performance against ``d`` per measurement, relative to its baseline.

    One row per measurement and ``d``: :data:`SETTINGS`, ``measurement``, ``D``,
    ``d``, ``metric`` (mean over seeds), ``metric_lo`` / ``metric_hi`` (smallest
    and largest seed), ``baseline`` (mean full-training metric) and ``fraction``
    (``metric / baseline``, the quantity the threshold applies to).
    """
    baselines = (
        frame.filter(pl.col("kind") == "baseline")
        .group_by("measurement")
        .agg(baseline=pl.col("metric").mean())
    )
    return (
        frame.filter(pl.col("kind") == "subspace")
        .group_by(*SETTINGS, "measurement", "D", "d")
        .agg(
            pl.col("metric").mean(),
            metric_lo=pl.col("metric").min(),
            metric_hi=pl.col("metric").max(),
        )
        .join(baselines, on="measurement")
        .with_columns(fraction=pl.col("metric") / pl.col("baseline"))
        .sort(*_ORDER, "d")
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
