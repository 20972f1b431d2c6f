"""Sharpness across width, from :func:`toolkit.engine.probes.sharpness_stats`.

Polars frames in, polars frames out; no torch. The probe records two sharpnesses
(:data:`STATS`): ``sharpness``, ``lambda_max`` of the Hessian ``H`` of a run's loss on the
probe batch with respect to its stored tensors, and ``preconditioned_sharpness``,
``lambda_max`` of ``D**0.5 H D**0.5`` with ``D`` the optimizer's per-coordinate step size
(SGD: each tensor's LR; Adam: the LR over its preconditioner, from step 1 on). Only the
second is unchanged when a parametrization moves a constant between a weight's multiplier,
its initialisation and its LR (the abc-symmetry), so it is the default here: the raw
``sharpness`` carries the parametrization's multipliers (a weight used as ``m * W`` has its
Hessian block scaled by ``m**2``). The question is *super consistency* (Noci et al. 2024,
"Super consistency of neural network landscapes and learning rate transfer"): under muP
the sharpness along training is nearly width-independent, so the exponent ``k`` of
``lambda_max ~ width**k`` at each step is expected near 0; under SP (and NTK) it is not,
and the same LR sits at a different distance from the edge of stability at each width
(``preconditioned_sharpness`` = 2 (1 + beta) for heavy-ball SGD, Cohen et al. 2021; about 38
for Adam with beta1 = 0.9, Cohen et al. 2022).

:func:`width_exponent` fits, per rule (parametrization, optimizer, LR) and probe step, the
slope of ``log2 lambda_max`` against ``log2 width`` through the seed means, by ordinary
least squares (:func:`toolkit.analysis.fits.fit_line` without standard errors) with a
Student-t interval. The seed means' scatter about the line holds both the seed noise and
any departure from a power law, so the interval carries both. The meta-regression of
:func:`~toolkit.analysis.fits.fit_line` with each mean's standard error is *not* used:
with two seeds per width each standard error rests on one degree of freedom, and on
synthetic data of this study's shape (5 widths, 2 seeds) its 95% interval covered the true
slope only 89-92% of the time, against 93-96% for OLS through the means
(``tests/analysis/test_sharpness.py`` checks the latter).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from toolkit.analysis.fits import OLS, fit_line
from toolkit.analysis.spectra import with_settings
from toolkit.errors import check_choice

STATS = ("preconditioned_sharpness", "sharpness")
"""The sharpness stats of :func:`toolkit.engine.probes.sharpness_stats`, the default first."""

RULE = ("stat", "parametrization", "optimizer", "lr")
"""Columns that name one sharpness of one training rule (seeds and width aside)."""

MIN_WIDTHS = 3
"""Fewest widths with a seed mean for an exponent with an interval (OLS, one residual dof)."""

#: Outcomes of :func:`width_exponent`.
FIT_OK, FIT_TOO_FEW = "ok", "too-few-widths"


def sharpness_frame(
    probes: pl.DataFrame, runs: pl.DataFrame, *, stat: str = STATS[0]
) -> pl.DataFrame:
    """One row per run and probe step: the run's settings (:func:`with_settings`),
    ``sharpness`` (the value of ``stat``, one of :data:`STATS`), ``iterations``
    (Hessian-vector products), ``converged`` (bool; a value with ``converged`` false is not
    trusted) and ``stat``."""
    check_choice("stat", stat, STATS)
    names = {stat: "sharpness", f"{stat}_iters": "iterations",
             f"{stat}_converged": "converged"}  # fmt: skip
    rows = probes.filter(pl.col("stat").is_in(list(names)))
    wide = rows.pivot(on="stat", index=["run_id", "step"], values="value").rename(names)
    wide = wide.with_columns(pl.col("converged") == 1.0, pl.col("iterations").cast(pl.Int64),
                             stat=pl.lit(stat))  # fmt: skip
    return with_settings(wide, runs).sort("run_id", "step")


def seed_means(frame: pl.DataFrame, by: tuple[str, ...] = RULE) -> pl.DataFrame:
    """Seed means of ``log2 lambda_max`` per ``by``, ``step`` and ``width``.

    Only converged, finite, positive values count; columns ``by``, ``step``, ``width``,
    ``log2_sharpness`` (mean), ``value`` (``2**`` the mean: the geometric mean of
    ``lambda_max``), ``lo`` and ``hi`` (its smallest and largest seed), ``seeds`` (values
    averaged) and ``excluded`` (the group's other runs: diverged, frozen, not converged or
    not positive). ``value``, ``lo``, ``hi`` are what :func:`toolkit.ui.plots.exponent_plot`
    draws.
    """
    keys = [*(c for c in by if c in frame.columns), "step", "width"]
    usable = pl.col("converged") & pl.col("sharpness").is_finite() & (pl.col("sharpness") > 0)
    return (
        frame.group_by(keys)
        .agg(
            pl.col("sharpness").filter(usable).log(2).mean().alias("log2_sharpness"),
            pl.col("sharpness").filter(usable).min().alias("lo"),
            pl.col("sharpness").filter(usable).max().alias("hi"),
            usable.sum().cast(pl.Int64).alias("seeds"),
            (~usable).sum().cast(pl.Int64).alias("excluded"),
        )
        .with_columns(value=2.0 ** pl.col("log2_sharpness"))
        .sort(keys)
    )


def width_exponent(
    frame: pl.DataFrame, *, by: tuple[str, ...] = RULE, level: float = 0.95
) -> pl.DataFrame:
    """Exponent ``k`` of ``lambda_max ~ width**k`` per ``by`` and probe step.

    ``frame`` is :func:`sharpness_frame` output. The fit is OLS of the seed means of
    ``log2 lambda_max`` on ``log2 width`` (module docstring) with a ``level`` interval.
    Columns: ``by``, ``step``, ``exponent``, ``exponent_lo``, ``exponent_hi``, ``intercept``
    (``log2 lambda_max`` at width 1, to draw the line), ``widths``
    (with at least one usable seed), ``seeds`` (usable values in all), ``excluded``,
    ``method`` (``ols``) and ``status``: ``ok``, or ``too-few-widths`` (fewer than
    :data:`MIN_WIDTHS`; the exponent and bounds are then NaN).
    """
    keys = [c for c in by if c in frame.columns]
    means = seed_means(frame, by)
    out = []
    for key, group in means.group_by([*keys, "step"], maintain_order=True):
        usable = group.filter(pl.col("seeds") > 0)
        x = np.log2(usable["width"].to_numpy().astype(float))
        widths = len(np.unique(x))
        row = {
            **dict(zip([*keys, "step"], key, strict=True)),
            "exponent": math.nan,
            "exponent_lo": math.nan,
            "exponent_hi": math.nan,
            "intercept": math.nan,
            "widths": widths,
            "seeds": int(group["seeds"].sum()),
            "excluded": int(group["excluded"].sum()),
            "method": OLS,
            "status": FIT_TOO_FEW,
        }
        if widths >= MIN_WIDTHS:
            fit = fit_line(x, usable["log2_sharpness"].to_numpy(), level=level)
            row.update(exponent=fit.slope, exponent_lo=fit.slope_lo, exponent_hi=fit.slope_hi,
                       intercept=fit.intercept, status=FIT_OK)  # fmt: skip
        out.append(row)
    floats = dict.fromkeys(("exponent", "exponent_lo", "exponent_hi", "intercept"), pl.Float64)
    return pl.DataFrame(out, schema_overrides=floats, infer_schema_length=None).sort(
        [*keys, "step"]
    )
