"""Analysis of results: polars frames in, polars frames out (statsmodels for fits).

The functions follow how transfer is judged in the literature:

* :func:`optimal_lr`: the optimal learning rate per configuration, the grid
  minimum refined by a local quadratic fit of loss against ``log2(lr)``, with a
  confidence interval (delta method on the fit's covariance).
* :func:`drift`: the slope of ``log2(lr*)`` against ``log2(width)`` (or depth),
  with an interval. SP + Adam: about -1 at large width; muP: about 0.
* :func:`transfer_regret`: loss at the LR transferred from a base size minus
  the loss at the target's own optimum (Ghosh et al. 2025).
* :func:`wider_is_better`: training loss at the transferred LR should fall
  monotonically with width under muP (Tensor Programs V).
* :func:`predict_loss`: fit ``L(N) = a N**-b + c`` on small models at the
  transferred hyperparameters and predict larger ones (Yao et al. 2023).

A "configuration" is every run setting except LR and seed
(:data:`CONFIG_KEYS`). Diverged runs never count as a loss; a learning rate
whose runs all diverged is a diverged point, shown and counted, not dropped.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import optimize, stats

from toolkit.errors import InputError, check_choice
from toolkit.store import RUN_SETTINGS

#: Columns that identify one LR curve: every setting that is not LR, seed or outcome.
CONFIG_KEYS = (*(k for k in RUN_SETTINGS if k not in ("lr", "seed")), "step")

#: Fit outcomes of :func:`optimal_lr`.
FIT_OK, FIT_EDGE, FIT_TOO_FEW, FIT_NOT_CONVEX = "ok", "grid-edge", "too-few-points", "not-convex"


def _keys(frame: pl.DataFrame, exclude: tuple[str, ...] = ()) -> list[str]:
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


def lr_curves(runs: pl.DataFrame, *, loss: str = "final_train_loss") -> pl.DataFrame:
    """Per configuration and LR: mean and std of ``loss`` over ok seeds, and counts.

    Columns: the configuration keys, ``lr``, ``log2_lr``, ``loss_mean``,
    ``loss_std``, ``seeds_ok``, ``seeds_diverged``, ``diverged`` (every seed
    diverged). The frame a transfer plot draws.
    """
    ok = (pl.col("status") == "ok") & pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    return (
        runs.group_by(*_keys(runs), "lr")
        .agg(
            pl.col(loss).filter(ok).mean().alias("loss_mean"),
            pl.col(loss).filter(ok).std().alias("loss_std"),
            ok.sum().alias("seeds_ok"),
            (~ok).sum().alias("seeds_diverged"),
        )
        .with_columns(log2_lr=pl.col("lr").log(2), diverged=pl.col("seeds_ok") == 0)
        .sort(*_keys(runs), "lr")
    )


def fit_quadratic_optimum(
    x: np.ndarray, y: np.ndarray, *, level: float = 0.95
) -> tuple[float, float, float, float, str]:
    """Vertex of ``y = a + b x + c x**2`` fitted by OLS, with a delta-method interval.

    Returns ``(x_opt, lo, hi, y_opt, fit)``. ``x_opt = -b / (2c)``;
    ``Var(x_opt) = g' Cov(b, c) g`` with ``g = (-1/(2c), b/(2c**2))``; the
    interval uses Student's t with the fit's residual degrees of freedom. With
    fewer than three distinct ``x`` or a non-convex fit, ``lo``/``hi`` are NaN
    and ``fit`` says why; with no residual degrees of freedom the interval is
    NaN too.
    """
    if len(np.unique(x)) < 3:
        return math.nan, math.nan, math.nan, math.nan, FIT_TOO_FEW
    center = float(np.mean(x))
    design = np.column_stack([np.ones_like(x), x - center, (x - center) ** 2])
    fit = sm.OLS(y, design).fit()
    _, b, c = fit.params
    if not c > 0:
        return math.nan, math.nan, math.nan, math.nan, FIT_NOT_CONVEX
    x_opt = -b / (2 * c)
    y_opt = float(fit.params @ np.array([1.0, x_opt, x_opt**2]))
    lo = hi = math.nan
    if fit.df_resid > 0:
        grad = np.array([-1 / (2 * c), b / (2 * c**2)])
        se = math.sqrt(float(grad @ fit.cov_params()[1:, 1:] @ grad))
        half = stats.t.ppf(0.5 + level / 2, fit.df_resid) * se
        lo, hi = x_opt - half + center, x_opt + half + center
    return x_opt + center, lo, hi, y_opt, FIT_OK


def optimal_lr(
    runs: pl.DataFrame,
    *,
    loss: str = "final_train_loss",
    window: int = 2,
    level: float = 0.95,
) -> pl.DataFrame:
    """Optimal ``log2(lr)`` per configuration with a ``level`` confidence interval.

    The grid minimum of the seed-mean loss, refined by a quadratic fit of every
    ok seed's loss against ``log2(lr)`` over the ``window`` grid points on each
    side (:func:`fit_quadratic_optimum`). The refined optimum is kept inside the
    fitted window. When the minimum is at the edge of the usable grid the true
    optimum may lie outside: ``fit = "grid-edge"`` and no interval. Too few
    usable points or a non-convex fit also give no interval, and say so.

    Columns: configuration keys, ``log2_lr_grid``, ``log2_lr_opt``,
    ``log2_lr_lo``, ``log2_lr_hi``, ``lr_opt``, ``loss_opt``, ``points``
    (usable LRs), ``diverged_lrs``, ``fit``.
    """
    if loss not in runs.columns:
        raise InputError(f"loss={loss!r} is not a column; columns: {', '.join(runs.columns)}")
    curves = lr_curves(runs, loss=loss)
    keys = _keys(curves)
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
        lo_x, hi_x = grid_x[max(best - window, 0)], grid_x[min(best + window, len(grid_x) - 1)]
        mine = by_config[key].filter(pl.col("log2_lr").is_between(lo_x, hi_x))
        x_opt, lo, hi, y_opt, fit = fit_quadratic_optimum(
            mine["log2_lr"].to_numpy(), mine[loss].to_numpy(), level=level
        )
        if fit == FIT_OK and best in (0, len(grid_x) - 1):
            fit = FIT_EDGE
        if fit == FIT_OK:
            row.update(
                log2_lr_opt=min(max(x_opt, lo_x), hi_x),
                log2_lr_lo=lo,
                log2_lr_hi=hi,
                loss_opt=min(y_opt, row["loss_opt"]),
            )
        rows.append({**row, "fit": fit})
    schema = {
        "log2_lr_grid": pl.Float64,
        "log2_lr_opt": pl.Float64,
        "log2_lr_lo": pl.Float64,
        "log2_lr_hi": pl.Float64,
        "loss_opt": pl.Float64,
    }
    out = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    for column, dtype in schema.items():
        if column not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return out.with_columns(lr_opt=2.0 ** pl.col("log2_lr_opt")).sort(keys)


def fit_slope(x: np.ndarray, y: np.ndarray, *, level: float = 0.95) -> tuple[float, ...]:
    """OLS line of ``y`` on ``x``: ``(slope, lo, hi, intercept)`` with the slope's
    ``level`` interval.

    Two points give a line but no interval (NaN); fewer give NaN.
    """
    if len(np.unique(x)) < 2:
        return math.nan, math.nan, math.nan, math.nan
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    intercept, slope = (float(v) for v in fit.params)
    if fit.df_resid < 1:
        return slope, math.nan, math.nan, intercept
    lo, hi = fit.conf_int(alpha=1 - level)[1]
    return slope, float(lo), float(hi), intercept


#: Axes along which optima can drift.
DRIFT_AXES = ("width", "depth", "steps")


def drift(optima: pl.DataFrame, *, axis: str = "width", level: float = 0.95) -> pl.DataFrame:
    """Slope of ``log2(lr*)`` against ``log2(axis)`` per configuration, with an interval.

    ``axis`` is ``width``, ``depth`` or ``steps`` (the training horizon).
    ``optima`` is the output of :func:`optimal_lr`; rows without an optimum are
    left out (``points`` says how many were used). Columns: the configuration
    keys except ``axis``, ``axis``, ``slope``, ``slope_lo``, ``slope_hi``,
    ``intercept`` (``log2(lr*)`` at size 1, for drawing the line), ``points``.
    """
    check_choice("axis", axis, DRIFT_AXES)
    keys = _keys(optima, exclude=(axis,))
    rows = []
    usable = optima.filter(pl.col("log2_lr_opt").is_not_null())
    for key, group in usable.group_by(keys, maintain_order=True):
        if group[axis].n_unique() < 2:
            continue
        x = np.log2(group[axis].to_numpy().astype(float))
        slope, lo, hi, intercept = fit_slope(x, group["log2_lr_opt"].to_numpy(), level=level)
        row = dict(zip(keys, key, strict=True))
        row.update(axis=axis, slope=slope, slope_lo=lo, slope_hi=hi, intercept=intercept)
        rows.append({**row, "points": group.height})
    columns = ("slope", "slope_lo", "slope_hi", "intercept")
    return pl.DataFrame(rows, schema_overrides=dict.fromkeys(columns, pl.Float64))


def loss_at_lr(curve: pl.DataFrame, log2_lr: float) -> float:
    """Seed-mean loss of one LR curve (:func:`lr_curves` rows) at ``log2_lr``,
    interpolated linearly in ``log2(lr)``; inf where a bracketing LR diverged,
    NaN outside the grid."""
    curve = curve.sort("log2_lr")
    x = curve["log2_lr"].to_numpy()
    if not (x[0] <= log2_lr <= x[-1]):
        return math.nan
    y = curve["loss_mean"].fill_null(math.inf).to_numpy()
    right = int(np.searchsorted(x, log2_lr))
    if x[right] == log2_lr:
        return float(y[right])
    left = right - 1
    if not (np.isfinite(y[left]) and np.isfinite(y[right])):
        return math.inf
    weight = (log2_lr - x[left]) / (x[right] - x[left])
    return float((1 - weight) * y[left] + weight * y[right])


def transferred(
    runs: pl.DataFrame,
    *,
    axis: str = "width",
    base: int | None = None,
    loss: str = "final_train_loss",
) -> pl.DataFrame:
    """Each target's loss at the LR transferred from the ``base`` size (default: smallest).

    The transferred LR is the base's grid optimum (sweeps share one LR grid, so
    it was run at every size); ``regret`` is the target's seed-mean loss there
    minus its own grid-minimum loss: zero at the base, never negative, inf if
    the target diverges at the transferred LR, NaN if that LR is off its grid.

    Columns: configuration keys, ``base``, ``log2_lr_transferred``,
    ``loss_transferred``, ``log2_lr_opt``, ``loss_opt`` (the target's grid
    optimum and its loss), ``regret``.
    """
    optima = optimal_lr(runs, loss=loss)
    curves = lr_curves(runs, loss=loss)
    keys = _keys(optima, exclude=(axis,))
    rows = []
    for key, family in optima.group_by(keys, maintain_order=True):
        base_size = family[axis].min() if base is None else base
        base_row = family.filter(pl.col(axis) == base_size)
        if base_row.height == 0 or base_row["log2_lr_grid"][0] is None:
            continue
        x_base = float(base_row["log2_lr_grid"][0])
        for target in family.iter_rows(named=True):
            curve = curves.filter(*(pl.col(k) == target[k] for k in (*keys, axis)))
            at = loss_at_lr(curve, x_base)
            best = target["log2_lr_grid"]
            best_loss = loss_at_lr(curve, best) if best is not None else math.nan
            rows.append(
                {**dict(zip(keys, key, strict=True)), axis: target[axis],
                 "base": base_size, "log2_lr_transferred": x_base, "loss_transferred": at,
                 "log2_lr_opt": best, "loss_opt": best_loss, "regret": at - best_loss}
            )  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None)


def transfer_regret(runs: pl.DataFrame, **kwargs) -> pl.DataFrame:
    """:func:`transferred` reduced to the configuration keys and ``regret``."""
    frame = transferred(runs, **kwargs)
    axis = kwargs.get("axis", "width")
    keys = _keys(frame, exclude=(axis,))
    return frame.select(*keys, axis, "base", "regret")


def wider_is_better(runs: pl.DataFrame, *, loss: str = "final_train_loss") -> pl.DataFrame:
    """Per configuration family: is the loss at the transferred LR falling with width?

    Columns: configuration keys except width, ``widths``, ``losses`` (at the
    transferred LR, by increasing width), ``wider_is_better`` (strictly
    decreasing).
    """
    frame = transferred(runs, axis="width", loss=loss).sort("width")
    keys = _keys(frame, exclude=("width",))
    return (
        frame.group_by(keys, maintain_order=True)
        .agg(pl.col("width").alias("widths"), pl.col("loss_transferred").alias("losses"))
        .with_columns(
            wider_is_better=pl.col("losses")
            .list.diff(null_behavior="drop")
            .list.eval(pl.element() < 0)
            .list.all()
        )
    )


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * n ** (-b) + c


def predict_loss(
    frame: pl.DataFrame,
    *,
    size: str = "width",
    loss: str = "loss_transferred",
    fit_up_to: float,
    level: float = 0.95,
) -> pl.DataFrame:
    """Fit ``L(N) = a N**-b + c`` on rows with ``size <= fit_up_to``, predict every row.

    Least squares (``scipy.optimize.curve_fit``) with ``a, b >= 0``; the
    prediction interval combines the parameter covariance (delta method) with
    the residual variance, using Student's t. Fewer than four fitted points
    leave no residual degrees of freedom: predictions come without an interval
    (``interval = False``). Columns: ``size``, observed ``loss``, ``predicted``,
    ``predicted_lo``, ``predicted_hi``, ``fitted`` (used in the fit),
    ``interval``.
    """
    data = frame.filter(pl.col(loss).is_not_null() & pl.col(loss).is_finite()).sort(size)
    n_all = data[size].to_numpy().astype(float)
    y_all = data[loss].to_numpy().astype(float)
    fitted = n_all <= fit_up_to
    if fitted.sum() < 3:
        raise InputError(
            f"fit_up_to={fit_up_to!r} leaves {int(fitted.sum())} points; a power law needs >= 3"
        )
    n, y = n_all[fitted], y_all[fitted]
    guess = (max(y[0] - y[-1], 1e-6) * n[0] ** 0.5, 0.5, max(min(y) * 0.5, 0.0))
    with warnings.catch_warnings():  # three points fit exactly: no covariance, said below
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        params, cov = optimize.curve_fit(
            _power_law, n, y, p0=guess, bounds=([0.0, 0.0, -np.inf], [np.inf, 4.0, np.inf]),
            maxfev=20_000,
        )  # fmt: skip
    predicted = _power_law(n_all, *params)
    dof = len(n) - 3
    lo = hi = np.full_like(predicted, np.nan)
    if dof > 0 and np.all(np.isfinite(cov)):
        residual_var = float(np.sum((y - _power_law(n, *params)) ** 2) / dof)
        a, b, _ = params
        grads = np.column_stack(
            [n_all ** (-b), -a * n_all ** (-b) * np.log(n_all), np.ones_like(n_all)]
        )
        var = np.einsum("ij,jk,ik->i", grads, cov, grads) + residual_var
        half = stats.t.ppf(0.5 + level / 2, dof) * np.sqrt(var)
        lo, hi = predicted - half, predicted + half
    return pl.DataFrame(
        {
            size: n_all,
            "loss": y_all,
            "predicted": predicted,
            "predicted_lo": lo,
            "predicted_hi": hi,
            "fitted": fitted,
            "interval": bool(dof > 0),
        }
    )
