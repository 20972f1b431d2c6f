"""Intrinsic dimension from stored measurements: ``d_int`` estimates, curves and scaling fits.

Li, Farkhoor, Liu, Yosinski 2018 ("Measuring the intrinsic dimension of
objective landscapes") train a model in random subspaces ``theta = theta0 +
P theta_d`` of growing dimension ``d`` and call

    d_int_t = min { d : mean_seeds perf(d) >= t * perf_full },

with ``perf_full`` the performance of full-parameter training on the same
budget (the *baseline*, at its best learning rate) and ``t = 0.9`` giving
``d_int90``. The subspace LR is tuned per ``d``: the best seed-mean of its grid,
with a grid-edge status like an optimal LR's. The interval inverts per-``d``
Student-t bounds and accounts for that choice
(:mod:`toolkit.analysis.intrinsic_interval`, which says why it is not a
bootstrap over seeds).

A *measurement* is the runs of one d-search (:mod:`toolkit.studies.intrinsic`):
rows of a results store's ``runs`` table with ``kind`` ``baseline`` (one per seed
of full training at the best LR of its grid, ``d`` null) or ``subspace`` (one per
``d x seed x lr`` of the subspace LR grid, whose size is ``lr_grid``), and the
columns :data:`SETTINGS`, ``measurement`` (its id), ``D``, ``seed``, ``lr``,
``metric``. Measurements made before every subspace LR was kept hold the
selected LR's rows only and no ``lr_grid``: their LR status is ``unknown`` and
their interval cannot account for the choice. Everything here takes and returns
polars frames and imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from toolkit import store as results
from toolkit.analysis.fits import fit_line
from toolkit.analysis.intrinsic_interval import invert, lr_choices, reach_bounds
from toolkit.analysis.optima import FIT_EDGE
from toolkit.errors import InputError
from toolkit.paths import DATA

SETTINGS = ("model", "task", "parametrization", "base_width", "optimizer", "projection",
            "width", "depth", "steps", "batch_size", "seeds")  # fmt: skip
"""Columns that name a measurement (``seeds`` is their count)."""

RECORD_SETTINGS = ("width", "depth", "parametrization", "projection")
"""Settings that lead each record of :func:`d_int_records`."""

ESTIMATE = ("D", "baseline", "threshold", "confidence", "d_int", "d_int_lo", "d_int_hi",
            "every_lr", "lr_fit", "lr_edges")  # fmt: skip
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
    """``d_int`` at one threshold, with its interval and the data behind it.

    ``estimate``, ``lo`` and ``hi`` are evaluated values of ``d``, or ``inf``
    when no evaluated ``d`` reaches the target (``hi``: is shown to reach it).
    ``frame`` has one row per ``d x seed x lr`` (``d, seed, lr, metric`` and
    whatever the measurement added; the selected LR only when ``every_lr`` is
    false); ``lrs`` one row per ``d`` with the selected LR and its status
    (:func:`toolkit.analysis.intrinsic_interval.lr_choices`); ``baselines`` one row per seed of full
    training (``seed, metric``, ...) and ``baseline`` their mean metric.
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
    lrs: pl.DataFrame
    every_lr: bool

    @property
    def key(self) -> str:
        """``d_int90`` at threshold 0.9 (see :func:`threshold_key`)."""
        return threshold_key(self.threshold)

    @property
    def target(self) -> float:
        """The performance to reach: ``threshold * baseline``."""
        return self.threshold * self.baseline

    def selected(self) -> pl.DataFrame:
        """The rows of ``frame`` at each ``d``'s selected LR: one per ``d x seed``."""
        return self.frame.join(self.lrs.select("d", "lr"), on=["d", "lr"]).sort("d", "seed")

    def record(self) -> dict:
        """The estimate as the columns :data:`ESTIMATE` of a :func:`d_int_table` row:
        ``lr_fit`` is the LR status at ``d_int`` (null when unreached) and
        ``lr_edges`` how many ``d`` had their best LR at the grid's edge (null when
        unknown)."""
        at = self.lrs.filter(pl.col("d") == self.estimate)["lr_fit"]
        edges = int((self.lrs["lr_fit"] == FIT_EDGE).sum()) if self.every_lr else None
        values = (self.D, self.baseline, self.threshold, self.confidence, self.estimate,
                  self.lo, self.hi, self.every_lr, at[0] if at.len() else None, edges)  # fmt: skip
        return dict(zip(ESTIMATE, values, strict=True))


def estimate_intrinsic_dim(
    frame: pl.DataFrame,
    baseline: pl.DataFrame,
    *,
    D: int,
    threshold: float = 0.9,
    confidence: float = 0.9,
    every_lr: bool = True,
) -> IntrinsicDimension:
    """``d_int`` from measured performance: point estimate and interval.

    The estimate is the smallest ``d`` in ``frame`` whose best LR reaches
    ``mean_seeds(metric) >= threshold * mean_seeds(baseline metric)``; the
    interval, at ``confidence``, inverts per-``d`` Student-t bounds allowing for
    the LR choice (:mod:`toolkit.analysis.intrinsic_interval`).

    Args:
        frame: ``d, seed, metric`` and ``lr`` (the subspace LR; one LR if absent);
            every ``(d, lr)`` measured on the same seeds.
        baseline: ``seed, metric`` of full training.
        D: the model's parameter count (stored with the result).
        every_lr: whether ``frame`` holds every LR of the grid (else only the
            selected one: the LR status is ``unknown`` and no choice is allowed for).
    """
    check_threshold(threshold)
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence={confidence!r} must be in (0, 1)")
    if frame.height == 0 or baseline.height == 0:
        raise InputError("frame and baseline need at least one row each")
    if "lr" not in frame.columns:
        frame = frame.with_columns(lr=pl.lit(math.nan))
    seeds = frame["seed"].n_unique()
    counts = frame.group_by("d", "lr").agg(pl.col("seed").n_unique())["seed"]
    if (counts != seeds).any():
        raise InputError("frame must hold a metric for every d and lr on every seed")
    lrs = lr_choices(frame, every_lr=every_lr)
    bounds = reach_bounds(frame, baseline, threshold=threshold, confidence=confidence,
                          every_lr=every_lr)  # fmt: skip
    base = baseline.sort("seed")
    target = threshold * base["metric"].mean()
    means = (
        frame.join(lrs.select("d", "lr"), on=["d", "lr"])
        .group_by("d").agg(pl.col("metric").mean()).sort("d")
    )  # fmt: skip
    reached = means.filter(pl.col("metric") >= target)["d"]
    estimate = float(reached[0]) if reached.len() else math.inf
    lo, hi = invert(bounds)
    return IntrinsicDimension(
        threshold=threshold,
        estimate=estimate,
        lo=min(lo, estimate),  # a d above the estimate shown to fall short: a dip, not a bound
        hi=hi,
        confidence=confidence,
        baseline=float(base["metric"].mean()),
        D=int(D),
        frame=frame.sort("d", "seed", "lr"),
        baselines=base,
        lrs=lrs,
        every_lr=every_lr,
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
) -> pl.DataFrame:
    """``d_int`` at ``threshold`` of every measurement in ``frame`` (:func:`load_measurements`).

    One row per measurement: :data:`SETTINGS`, ``measurement`` and the columns
    :data:`ESTIMATE`: ``D``, ``baseline`` (mean full-training metric),
    ``threshold``, ``confidence``, ``d_int``, ``d_int_lo``, ``d_int_hi`` (the
    interval at ``confidence``; ``inf`` where no measured ``d`` reaches, or is
    shown to reach, the target), ``every_lr`` (whether every subspace LR was
    stored, so that the interval allows for the LR choice), ``lr_fit`` (the LR
    status at ``d_int``: ``ok``, ``grid-edge``, ``too-few-points`` or ``unknown``)
    and ``lr_edges`` (how many ``d`` had their best LR at the grid's edge; null
    when unknown), see :func:`estimate_intrinsic_dim`. Sorted by task,
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
            every_lr=_every_lr(group),
        )
        settings = group.select(SETTINGS).row(0, named=True)
        rows.append({**settings, "measurement": measurement, **result.record()})
    return pl.DataFrame(rows).sort(_ORDER)


def _every_lr(measurement: pl.DataFrame) -> bool:
    """Whether a measurement's runs hold every subspace LR of its grid (``lr_grid`` set)."""
    return "lr_grid" in measurement.columns and measurement["lr_grid"].is_not_null().any()


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
    """Mean performance against ``d`` per measurement, at each ``d``'s selected LR,
    relative to its baseline.

    One row per measurement and ``d``: :data:`SETTINGS`, ``measurement``, ``D``,
    ``d``, ``metric`` (mean over seeds), ``metric_lo`` / ``metric_hi`` (smallest
    and largest seed), ``baseline`` (mean full-training metric), ``fraction``
    (``metric / baseline``, the quantity the threshold applies to), ``lr`` (the
    selected subspace LR) and its status ``lr_fit`` / ``censored``
    (:func:`toolkit.analysis.intrinsic_interval.lr_choices`).
    """
    baselines = (
        frame.filter(pl.col("kind") == "baseline")
        .group_by("measurement")
        .agg(baseline=pl.col("metric").mean())
    )
    subspace = frame.filter(pl.col("kind") == "subspace")
    choices = pl.concat([
        lr_choices(group, every_lr=_every_lr(group)).with_columns(measurement=pl.lit(key))
        for (key,), group in subspace.group_by("measurement", maintain_order=True)
    ])  # fmt: skip
    return (
        subspace.join(choices.select("measurement", "d", "lr"), on=["measurement", "d", "lr"])
        .group_by(*SETTINGS, "measurement", "D", "d", "lr")
        .agg(
            pl.col("metric").mean(),
            metric_lo=pl.col("metric").min(),
            metric_hi=pl.col("metric").max(),
        )
        .join(baselines, on="measurement")
        .join(choices.select("measurement", "d", "lr_fit", "censored"), on=["measurement", "d"])
        .with_columns(fraction=pl.col("metric") / pl.col("baseline"))
        .sort(*_ORDER, "d")
    )


def log2_d_int_se(table: pl.DataFrame) -> np.ndarray:
    """Standard error of ``log2 d_int`` per row of ``table`` (:func:`d_int_table`).

    The interval's width on log2 axes over that of a normal interval at its
    ``confidence``, and never below the rounding of ``d`` to an integer
    (``1 / (sqrt(12) d ln 2)``, the error of a uniform rounding); ``inf`` when
    ``d_int_hi`` is unbounded.
    """
    z = 2.0 * np.asarray(
        [stats.norm.ppf(0.5 + c / 2) for c in table["confidence"].to_numpy()], dtype=float
    )
    d = table["d_int"].to_numpy().astype(float)
    with np.errstate(divide="ignore"):
        width = np.log2(table["d_int_hi"].to_numpy()) - np.log2(table["d_int_lo"].to_numpy())
    return np.maximum(width / z, 1.0 / (math.sqrt(12.0) * d * math.log(2.0)))


def d_int_scaling(
    table: pl.DataFrame,
    *,
    x: str = "D",
    by: Sequence[str] = ("task", "parametrization", "projection", "depth"),
    level: float = 0.95,
) -> pl.DataFrame:
    """Exponent ``k`` of ``d_int ~ x**k`` per ``by`` group on log2-log2 axes.

    Li et al. (2018) found ``d_int90`` of MLPs on MNIST nearly constant while
    ``D`` grew by an order of magnitude: ``k`` near 0, against ``k = 1`` for a
    ``d_int`` proportional to the parameter count. The line is
    :func:`toolkit.analysis.fits.fit_line` with each point's standard error
    (:func:`log2_d_int_se`, from its interval): a random-effects weighted fit
    whose interval is never narrower than the points' errors imply. A table
    without intervals (no ``d_int_lo`` / ``d_int_hi``) is fitted by ordinary
    least squares. Rows without a finite ``d_int``, or with an unbounded
    interval, are left out. Columns: ``by``, ``exponent``, ``exponent_lo``,
    ``exponent_hi`` (the ``level`` interval, NaN where the points allow none),
    ``intercept`` (log2 ``d_int`` at ``x = 1``), ``points`` and ``method``.
    """
    rows = []
    finite = table.filter(pl.col("d_int").is_finite())
    intervals = {"d_int_lo", "d_int_hi", "confidence"} <= set(table.columns)
    if intervals:
        finite = finite.filter(pl.col("d_int_hi").is_finite())
    for key, group in finite.group_by(list(by), maintain_order=True):
        sizes = np.log2(group[x].to_numpy().astype(float))
        d_int = np.log2(group["d_int"].to_numpy())
        fit = fit_line(sizes, d_int, log2_d_int_se(group) if intervals else None, level=level)
        rows.append({
            **dict(zip(by, key, strict=True)), "exponent": fit.slope, "exponent_lo": fit.slope_lo,
            "exponent_hi": fit.slope_hi, "intercept": fit.intercept, "points": group.height,
            "method": fit.method,
        })  # fmt: skip
    schema = {k: table.schema[k] for k in by}
    schema |= dict.fromkeys(("exponent", "exponent_lo", "exponent_hi", "intercept"), pl.Float64)
    schema |= {"points": pl.Int64, "method": pl.String}
    return pl.DataFrame(rows, schema=schema).sort(list(by))


TOY_TOLERANCE = 1e-12
"""Relative loss (of the loss at ``theta0``) below which a subspace solves the toy problem
exactly: the least-squares residual of a solvable subspace is at float64 rounding
(~1e-28 relative), an unsolvable one's is of order one."""


def toy_d_int(runs: pl.DataFrame, *, tolerance: float = TOY_TOLERANCE) -> pl.DataFrame:
    """``d_int`` of Li et al.'s toy problem per projection and seed
    (:mod:`toolkit.studies.intrinsic_toy`): the smallest ``d`` whose subspace's minimal
    loss is below ``tolerance`` times the loss at ``theta0`` (null where no ``d`` is).

    Columns: ``projection``, ``seed``, ``D``, ``groups``, ``d_int``, ``max_d``.
    """
    solved = pl.col("final_train_loss") < tolerance * pl.col("initial_loss")
    return (
        runs.group_by("projection", "seed", "D", "groups")
        .agg(pl.col("d").filter(solved).min().alias("d_int"), pl.col("d").max().alias("max_d"))
        .sort("projection", "seed")
    )
