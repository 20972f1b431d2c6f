"""Optimal learning rates: polars frames in, polars frames out.

* :func:`lr_curves`: per configuration and LR, the seed-mean loss, its standard error
  and how many seeds diverged. By default a learning rate at which *any* seed
  diverged is a diverged point (one lucky seed out of three must not make an
  unstable LR look best); ``divergence="all"`` keeps the survivors, on request.
* :func:`optimal_lr`: the grid minimum refined by a local quadratic fit of loss
  against ``log2(lr)``, with a confidence interval (delta method on the fit's
  covariance). An optimum at the edge of the grid is *censored*: a bound (the
  optimum lies below or above the grid), never a measurement.

A "configuration" is every run setting except LR and seed (:data:`CONFIG_KEYS`).
Diverged runs never count as a loss.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats

from toolkit.errors import InputError, check_choice
from toolkit.store import RUN_SETTINGS

#: Columns that identify one LR curve: every setting that is not LR, seed or outcome.
CONFIG_KEYS = (*(k for k in RUN_SETTINGS if k not in ("lr", "seed")), "step")

#: Fit outcomes of :func:`optimal_lr`.
FIT_OK, FIT_EDGE, FIT_TOO_FEW, FIT_NOT_CONVEX = "ok", "grid-edge", "too-few-points", "not-convex"

#: Which seeds make a learning rate diverged: ``any`` (the default) or ``all``.
DIVERGENCE_RULES = ("any", "all")


def config_keys(frame: pl.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
    return [k for k in CONFIG_KEYS if k in frame.columns and k not in exclude]


def losses_at_steps(
    runs: pl.DataFrame, curves: pl.DataFrame, *, split: str = "train", metric: str = "loss"
) -> pl.DataFrame:
    """One row per run and evaluation step: the run's settings plus ``step`` and ``loss``.

    A run that diverged before a step has ``status = "diverged"`` at that step
    (and a null loss); before its divergence it counts as ``ok``.
    """
    values = curves.filter(pl.col("split") == split, pl.col("metric") == metric).select(
        "run_id", "step", pl.col("value").alias("loss")
    )
    steps = values.select("step").unique()
    settings = runs.drop([c for c in runs.columns if c.startswith("final_")])
    return (
        settings.join(steps, how="cross")
        .join(values, on=["run_id", "step"], how="left")
        .with_columns(
            status=pl.when(pl.col("loss").is_not_null() & pl.col("loss").is_finite())
            .then(pl.lit("ok"))
            .otherwise(pl.lit("diverged"))
        )
        .filter(pl.col("step") <= pl.col("steps"))
    )


def lr_curves(
    runs: pl.DataFrame, *, loss: str = "final_train_loss", divergence: str = "any"
) -> pl.DataFrame:
    """Per configuration and LR: mean, std and standard error of ``loss`` over ok seeds.

    Columns: the configuration keys, ``lr``, ``log2_lr``, ``loss_mean``,
    ``loss_std``, ``loss_se``, ``seeds_ok``, ``seeds_diverged``,
    ``diverged_share`` (of the seeds) and ``diverged``: any seed diverged
    (``divergence="any"``, the default) or every seed (``"all"``, survivors-only
    scoring). The frame a transfer plot draws.
    """
    check_choice("divergence", divergence, DIVERGENCE_RULES)
    ok = (pl.col("status") == "ok") & pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    diverged = pl.col("seeds_diverged") > 0 if divergence == "any" else pl.col("seeds_ok") == 0
    return (
        runs.group_by(*config_keys(runs), "lr")
        .agg(
            pl.col(loss).filter(ok).mean().alias("loss_mean"),
            pl.col(loss).filter(ok).std().alias("loss_std"),
            ok.sum().alias("seeds_ok"),
            (~ok).sum().alias("seeds_diverged"),
        )
        .with_columns(
            log2_lr=pl.col("lr").log(2),
            loss_se=pl.col("loss_std") / pl.col("seeds_ok").sqrt(),
            diverged_share=pl.col("seeds_diverged")
            / (pl.col("seeds_ok") + pl.col("seeds_diverged")),
            diverged=diverged,
        )
        .sort(*config_keys(runs), "lr")
    )


def fit_quadratic_optimum(
    x: np.ndarray, y: np.ndarray, *, level: float = 0.95
) -> tuple[float, float, float, float, str, float]:
    """Vertex of ``y = a + b x + c x**2`` fitted by OLS, with a delta-method interval.

    Returns ``(x_opt, lo, hi, y_opt, fit, se)``, ``se`` the standard error of
    ``x_opt = -b / (2c)``: ``Var(x_opt) = g' Cov(b, c) g`` with ``g = (-1/(2c), b/(2c**2))``; the
    interval uses Student's t with the fit's residual degrees of freedom. With
    fewer than three distinct ``x`` or a non-convex fit, ``lo``/``hi`` are NaN
    and ``fit`` says why; with no residual degrees of freedom the interval is
    NaN too.
    """
    if len(np.unique(x)) < 3:
        return math.nan, math.nan, math.nan, math.nan, FIT_TOO_FEW, math.nan
    center = float(np.mean(x))
    design = np.column_stack([np.ones_like(x), x - center, (x - center) ** 2])
    fit = sm.OLS(y, design).fit()
    _, b, c = fit.params
    if not c > 0:
        return math.nan, math.nan, math.nan, math.nan, FIT_NOT_CONVEX, math.nan
    x_opt = -b / (2 * c)
    y_opt = float(fit.params @ np.array([1.0, x_opt, x_opt**2]))
    lo = hi = se = math.nan
    if fit.df_resid > 0:
        grad = np.array([-1 / (2 * c), b / (2 * c**2)])
        se = math.sqrt(float(grad @ fit.cov_params()[1:, 1:] @ grad))
        half = stats.t.ppf(0.5 + level / 2, fit.df_resid) * se
        lo, hi = x_opt - half + center, x_opt + half + center
    return x_opt + center, lo, hi, y_opt, FIT_OK, se


def optimal_lr(
    runs: pl.DataFrame,
    *,
    loss: str = "final_train_loss",
    window: int = 2,
    level: float = 0.95,
    divergence: str = "any",
) -> pl.DataFrame:
    """Optimal ``log2(lr)`` per configuration with a ``level`` confidence interval.

    The grid minimum of the seed-mean loss over the usable (not diverged, see
    :func:`lr_curves`) learning rates, refined by a quadratic fit of every ok
    seed's loss against ``log2(lr)`` over the ``window`` usable grid points on
    each side (:func:`fit_quadratic_optimum`). The refined optimum is kept inside
    the fitted window.

    Every optimum carries its status in ``fit``. Only ``fit == "ok"`` is a
    measurement (``measured``). When the minimum is at the edge of the usable
    grid the true optimum may lie outside: ``fit = "grid-edge"`` and ``censored``
    says on which side it lies (``below`` the smallest usable LR or ``above`` the
    largest); ``log2_lr_opt`` is then the grid value, a bound, and has no interval.
    Too few usable points or a non-convex fit give no interval either, and say so.

    Columns: configuration keys, ``log2_lr_grid``, ``log2_lr_opt``,
    ``log2_lr_lo``, ``log2_lr_hi``, ``log2_lr_se`` (delta method) with
    ``log2_lr_df`` (the fit's residual degrees of freedom), ``lr_opt``, ``loss_opt``,
    ``points`` (usable LRs), ``diverged_lrs``, ``fit``, ``measured``, ``censored``.
    """
    if loss not in runs.columns:
        raise InputError(f"loss={loss!r} is not a column; columns: {', '.join(runs.columns)}")
    curves = lr_curves(runs, loss=loss, divergence=divergence)
    keys = config_keys(curves)
    ok = (pl.col("status") == "ok") & pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    points = runs.filter(ok).with_columns(log2_lr=pl.col("lr").log(2))
    by_config = points.partition_by(keys, as_dict=True, maintain_order=True)
    rows = []
    for key, curve in curves.group_by(keys, maintain_order=True):
        usable = curve.filter(~pl.col("diverged")).sort("log2_lr")
        row = dict(zip(keys, key, strict=True))
        row.update(points=usable.height, diverged_lrs=int(curve["diverged"].sum()))
        if usable.height == 0:
            rows.append({**row, "fit": FIT_TOO_FEW})
            continue
        grid_x = usable["log2_lr"].to_numpy()
        best = int(np.argmin(usable["loss_mean"].to_numpy()))
        row.update(log2_lr_grid=grid_x[best], log2_lr_opt=grid_x[best])
        row["loss_opt"] = float(usable["loss_mean"][best])
        window_x = grid_x[max(best - window, 0) : best + window + 1]
        mine = by_config[key].filter(pl.col("log2_lr").is_in(window_x.tolist()))
        x_opt, lo, hi, y_opt, fit, se = fit_quadratic_optimum(
            mine["log2_lr"].to_numpy(), mine[loss].to_numpy(), level=level
        )
        if fit == FIT_OK and best in (0, len(grid_x) - 1):
            fit = FIT_EDGE
            row["censored"] = "below" if best == 0 else "above"
        if fit == FIT_OK:
            row.update(
                log2_lr_opt=min(max(x_opt, window_x[0]), window_x[-1]),
                log2_lr_lo=lo,
                log2_lr_hi=hi,
                log2_lr_se=se,
                log2_lr_df=int(len(mine) - 3),
                loss_opt=min(y_opt, row["loss_opt"]),
            )
        rows.append({**row, "fit": fit})
    schema = {
        "log2_lr_grid": pl.Float64,
        "log2_lr_opt": pl.Float64,
        "log2_lr_lo": pl.Float64,
        "log2_lr_hi": pl.Float64,
        "log2_lr_se": pl.Float64,
        "log2_lr_df": pl.Int64,
        "loss_opt": pl.Float64,
        "censored": pl.String,
    }
    out = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    for column, dtype in schema.items():
        if column not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return out.with_columns(
        lr_opt=2.0 ** pl.col("log2_lr_opt"), measured=pl.col("fit") == FIT_OK
    ).sort(keys)
