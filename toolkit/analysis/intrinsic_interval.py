"""The interval of ``d_int``: per-``d`` Student-t bounds, inverted, aware of the LR choice.

``d_int_t`` is the smallest evaluated ``d`` whose expected performance reaches
``t`` times the expected baseline (Li et al. 2018). Write
``delta(d) = max_lr E[metric(d, lr)] - t E[baseline]``: the best learning rate of
the subspace grid is part of the definition (Li et al. tune it per ``d``), so
the estimate picks the best seed-mean per ``d`` (:func:`lr_choices`).

Why not a bootstrap over seeds: with the default 3 seeds a percentile bootstrap
has 10 distinct resamples and shrinks the variance by ``(n - 1) / n``; on
synthetic plateaus like the shipped ones its nominal 90% interval covered 85%.
Instead each ``d`` gets a Student-t bound on ``delta(d)`` from the seed
differences ``metric_s(d) - t baseline_s`` (paired when the subspace runs and
the baseline share their seeds, Welch otherwise; exact for normal seed noise at
any number of seeds), and the interval inverts them, assuming
``delta`` increases with ``d``:

* ``lo`` is the first ``d`` after the last one whose upper bound ``U(d) < 0``
  (shown to fall short; under monotonicity ``d_int`` lies above it). It errs
  only if some ``d >= d_int`` is shown to fall short.
* ``hi`` is the smallest ``d`` from which every evaluated ``d`` has a lower bound
  ``L(d) >= 0`` (shown to reach). It errs only if ``L >= 0`` at the largest
  evaluated ``d`` below ``d_int``: probability at most ``alpha / 2``.

Because the LR is picked by the same seeds, the selected mean is biased upwards
when LRs nearly tie. ``L(d)`` is therefore *cross-fitted* (:func:`cross_fitted`):
each seed is read at the LR that the other seeds select, so no seed's noise both
picks the LR and is averaged at it; the expected metric of an LR picked that way
is at most the best LR's, so the bound stays a lower bound on ``delta(d)``.
``U(d)`` is the Student-t bound on the jackknife's pseudo-values of the best
seed-mean (:func:`jackknifed`), which removes most of the selection bias: the
selected LR's own bound (used before) made ``lo`` too low, and the cross-fitted
one too high. (A Bonferroni bound over the LRs that could be the best covered
as often as the selected bound and was 0.25 octave wider on average.)

On synthetic curves with the shipped plateau's noise (slope 0.08 of the
baseline per doubling of ``d``, seed sd 0.014) and the refined d-search, the
nominal 90% interval covers the true ``d_int`` 90.0% of the time at 3 seeds with
one LR, and 90.4% (a clear LR optimum) and 92.0% (nearly tied LRs) with the LR
chosen among 5, over 500 draws each; the selected LR's own ``U`` covered 95%
and 97%, the cross-fitted ``U`` 88% and 86%
(``tests/analysis/test_intrinsic_coverage.py``). Where a store holds only the
selected LR's rows (measurements made before every LR was kept), the LR choice
cannot be allowed for and the grid-edge status is ``unknown``.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from toolkit.analysis.optima import FIT_EDGE, FIT_OK, FIT_TOO_FEW

FIT_UNKNOWN = "unknown"
"""LR status of a ``d`` whose unselected LRs were not stored."""


def _score() -> pl.Expr:
    """The metric with a missing or NaN value (a diverged run) as ``-inf``."""
    return pl.col("metric").fill_null(-math.inf).fill_nan(-math.inf)


def lr_choices(frame: pl.DataFrame, *, every_lr: bool) -> pl.DataFrame:
    """The subspace LR selected per ``d`` and whether it is inside the grid.

    ``frame``: ``d, seed, lr, metric``. One row per ``d``: ``lr`` (best seed-mean
    metric, diverged runs counting ``-inf``), ``lrs`` (grid size), ``lr_fit`` and
    ``censored``, as for :func:`toolkit.analysis.optima.optimal_lr`: ``ok`` when
    the best LR has a tried LR on both sides; ``grid-edge`` at the smallest
    (``censored = "below"``: the best may lie below the grid) or largest
    (``"above"``); ``too-few-points`` for a grid of one LR; ``unknown`` when
    ``every_lr`` is false (only the selected rows were kept).
    """
    means = frame.group_by("d", "lr").agg(score=_score().mean()).sort("d", "lr")
    ranked = means.with_columns(
        lrs=pl.len().over("d"), index=pl.int_range(pl.len()).over("d")
    ).sort("score", "lr", descending=[True, False])
    best = ranked.unique("d", keep="first").sort("d")
    if not every_lr:
        return best.select("d", "lr", lrs=pl.lit(None, pl.Int64), lr_fit=pl.lit(FIT_UNKNOWN),
                           censored=pl.lit(None, pl.String))  # fmt: skip
    top = pl.col("lrs") - 1
    edge = (pl.col("index") == 0) | (pl.col("index") == top)
    return best.select(
        "d", "lr", pl.col("lrs").cast(pl.Int64),
        lr_fit=pl.when(pl.col("lrs") == 1).then(pl.lit(FIT_TOO_FEW))
        .when(edge).then(pl.lit(FIT_EDGE)).otherwise(pl.lit(FIT_OK)),
        censored=pl.when((pl.col("lrs") == 1) | ~edge).then(None)
        .when(pl.col("index") == 0).then(pl.lit("below")).otherwise(pl.lit("above")),
    )  # fmt: skip


def reach_bounds(
    frame: pl.DataFrame,
    baseline: pl.DataFrame,
    *,
    threshold: float,
    confidence: float,
    every_lr: bool,
) -> pl.DataFrame:
    """Bounds on ``delta(d)`` per ``d`` (see the module): ``d``, ``U``, ``L``.

    ``frame``: ``d, seed, lr, metric``, every ``(d, lr)`` on the same seeds;
    ``baseline``: ``seed, metric``. A single seed gives infinite bounds.
    """
    base = baseline.sort("seed")
    seeds = sorted(frame["seed"].unique().to_list())
    paired = base["seed"].to_list() == seeds
    b = base["metric"].to_numpy().astype(float)
    alpha = 1.0 - confidence
    rows = []
    for (d,), at_d in frame.sort("lr", "seed").group_by("d", maintain_order=True):
        lrs = at_d.partition_by("lr", maintain_order=True)
        values = np.stack([g.sort("seed")["metric"].to_numpy().astype(float) for g in lrs])
        values = np.where(np.isfinite(values), values, -np.inf)
        upper, lower = (jackknifed(values), cross_fitted(values)) if every_lr else (values,) * 2
        rows.append({"d": d, "U": _bound(upper, b, threshold, paired, alpha, +1),
                     "L": _bound(lower, b, threshold, paired, alpha, -1)})  # fmt: skip
    return pl.DataFrame(rows).sort("d")


def _bound(
    values: np.ndarray, base: np.ndarray, threshold: float, paired: bool, alpha: float, side: int
) -> float:
    """The one-sided ``1 - alpha / 2`` Student-t bound (``side`` +1 upper, -1 lower) on
    ``delta`` of the best row of ``values`` (LRs x seeds; one row after a correction)."""
    mean, se, df = _difference(values, base, threshold, paired)
    best = int(np.argmax(mean))
    return float(mean[best] + side * stats.t.ppf(1 - alpha / 2, df[best]) * se[best])


def jackknifed(values: np.ndarray) -> np.ndarray:
    """Tukey's jackknife pseudo-values of the best seed-mean: shape ``(1, seeds)``.

    ``values``: LRs x seeds, diverged runs ``-inf``. The best of the LRs' seed
    means is biased upwards (the seeds that pick the LR are the ones averaged);
    pseudo-value ``s`` is ``n * best - (n - 1) * best_without_s``, whose mean is
    the jackknife's bias-corrected estimate and whose spread over seeds is the
    jackknife's standard error (Efron & Tibshirani 1993, ch. 11). With one LR
    the pseudo-values are the seeds' own values; with one seed, its best LR.
    """
    n = values.shape[1]
    if n == 1 or values.shape[0] == 1:
        return values.max(0, keepdims=True)
    without = _leave_one_out(values)
    with np.errstate(invalid="ignore"):  # -inf - -inf where every LR diverged
        pseudo = n * values.mean(1).max() - (n - 1) * without.max(0)
    return np.where(np.isnan(pseudo), -np.inf, pseudo)[None, :]


def _leave_one_out(values: np.ndarray) -> np.ndarray:
    """Each LR's mean over the seeds other than each seed (LRs x seeds); ``-inf`` where
    the LR diverged on any seed, as in its full mean."""
    with np.errstate(invalid="ignore"):  # -inf - -inf where an LR diverged twice
        others = (values.sum(1, keepdims=True) - values) / (values.shape[1] - 1)
    return np.where(np.isnan(others), -np.inf, others)


def cross_fitted(values: np.ndarray) -> np.ndarray:
    """Each seed's metric at the LR the *other* seeds select: shape ``(1, seeds)``.

    ``values``: LRs x seeds, diverged runs ``-inf``. The LR for seed ``s`` is the
    best mean over the seeds other than ``s``, so seed ``s``'s own noise plays no
    part in choosing where it is read; with one seed it is that seed's best LR.
    """
    n = values.shape[1]
    if n == 1:
        return values.max(0, keepdims=True)
    picked = np.argmax(_leave_one_out(values), axis=0)
    return values[picked, np.arange(n)][None, :]


def _difference(
    values: np.ndarray, base: np.ndarray, threshold: float, paired: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error and degrees of freedom of ``metric - threshold * baseline``
    per row of ``values`` (LRs x seeds); a diverged LR (any ``-inf``) gets ``-inf``."""
    n, m = values.shape[1], len(base)
    finite = np.isfinite(values).all(1)
    safe = np.where(finite[:, None], values, 0.0)
    if paired:
        diff = safe - threshold * base
        mean = diff.mean(1)
        se = diff.std(1, ddof=1) / math.sqrt(n) if n > 1 else np.full(len(mean), np.inf)
        df = np.full(len(mean), max(n - 1, 1), dtype=float)
    else:
        mean = safe.mean(1) - threshold * base.mean()
        var_m = safe.var(1, ddof=1) / n if n > 1 else np.full(len(mean), np.inf)
        var_b = threshold**2 * base.var(ddof=1) / m if m > 1 else math.inf
        se = np.sqrt(var_m + var_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = se**4 / (var_m**2 / max(n - 1, 1) + var_b**2 / max(m - 1, 1))
        df = np.where(np.isfinite(df) & (df > 0), df, 1.0)
    mean = np.where(finite, mean, -np.inf)
    return mean, np.where(finite, se, 0.0), df


def invert(bounds: pl.DataFrame) -> tuple[float, float]:
    """``(lo, hi)`` of ``d_int`` from :func:`reach_bounds` (see the module); ``inf`` where
    no evaluated ``d`` qualifies."""
    ds = bounds["d"].to_numpy().astype(float)
    upper, lower = bounds["U"].to_numpy(), bounds["L"].to_numpy()
    return _after_last(ds, upper < 0), _after_last(ds, ~(lower >= 0))


def _after_last(ds: np.ndarray, fails: np.ndarray) -> float:
    """The first ``d`` after the last one in ``fails`` (``ds[0]`` if none; ``inf`` if the last)."""
    failing = np.flatnonzero(fails)
    start = failing[-1] + 1 if len(failing) else 0
    return float(ds[start]) if start < len(ds) else math.inf
