"""Optimal hyperparameters: polars frames in, polars frames out.

Any hyperparameter swept on a log scale -- the learning rate, the initialisation scale
``init_sigma``, the multipliers ``input_alpha`` and ``output_alpha``, weight decay, batch
size, warmup steps, an attention multiplier -- has its optimum found the same way; the
learning rate is the usual case and has its own names:

* :func:`hyperparameter_curves` (:func:`lr_curves` for the LR): per configuration and
  value of the hyperparameter ``x``, the seed-mean loss, its standard error and how many
  seeds diverged. By default a value at which *any* seed diverged is a diverged point
  (one lucky seed out of three must not make an unstable setting look best);
  ``divergence="all"`` keeps the survivors, on request.
* :func:`optimal_hyperparameter` (:func:`optimal_lr`): the grid minimum refined by a
  local quadratic fit of loss against ``log2(x)``, with a confidence interval (delta
  method on the fit's covariance). An optimum at the edge of the grid is *censored*: a
  bound (the optimum lies below or above the grid), never a measurement.
* :func:`joint_optimum`: over a grid of two hyperparameters (the LR and weight decay), the
  optimum of one along the grid line through the best cell, the other held there: run
  once per axis, it says whether the pair's optimum is inside its grid on both.

A "configuration" of ``x`` is every other run setting except the seed
(:func:`curve_keys`; :data:`CONFIG_KEYS` for the LR): the optimum of ``x`` is found at
each value of the hyperparameters held, e.g. the best output multiplier at each
learning rate. That is how Tensor Programs V (Yang et al. 2021, Figs. 1, 3 and 4) shows
transfer: loss against one hyperparameter per width, the others held at one setting.
:func:`swept` keeps the configurations that hold two values of ``x`` or more, where a
study sweeps one hyperparameter at a time. Diverged runs never count as a loss.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import statsmodels.api as sm
from scipy import stats

from toolkit.errors import InputError, check_choice
from toolkit.store import RUN_SETTINGS


def curve_keys(x: str) -> tuple[str, ...]:
    """The columns that identify one curve over the hyperparameter ``x``: every run
    setting (:data:`toolkit.store.RUN_SETTINGS`) except ``x`` and the seed, and the
    evaluation step."""
    return (*(k for k in RUN_SETTINGS if k not in (x, "seed")), "step")


#: Columns that identify one LR curve: every setting that is not LR, seed or outcome.
CONFIG_KEYS = curve_keys("lr")

#: Fit outcomes of :func:`optimal_lr`.
FIT_OK, FIT_EDGE, FIT_TOO_FEW, FIT_NOT_CONVEX = "ok", "grid-edge", "too-few-points", "not-convex"

#: Which seeds make a learning rate diverged: ``any`` (the default) or ``all``.
DIVERGENCE_RULES = ("any", "all")


def config_keys(frame: pl.DataFrame, exclude: tuple[str, ...] = (), *, x: str = "lr") -> list[str]:
    """The :func:`curve_keys` of ``x`` that ``frame`` has, less ``exclude``."""
    return [k for k in curve_keys(x) if k in frame.columns and k not in exclude]


def optimized(optima: pl.DataFrame) -> str:
    """The hyperparameter an :func:`optimal_hyperparameter` frame holds optima of (the
    ``x`` of its ``log2_<x>_opt`` column)."""
    found = [c[5:-4] for c in optima.columns if c.startswith("log2_") and c.endswith("_opt")]
    if len(found) != 1:
        raise InputError(f"optima has {len(found)} log2_<x>_opt columns ({', '.join(found)}); "
                         "allowed: the output of optimal_hyperparameter, with one")  # fmt: skip
    return found[0]


def with_hyperparameter(runs: pl.DataFrame, x: str) -> pl.DataFrame:
    """``runs`` with the hyperparameter ``x`` as a column, checked to lie on a log2 axis.

    A setting that is not a runs column but is recorded in ``config_json`` (warmup
    steps, momentum, the attention multiplier, ...) is read from there. Raises
    :class:`InputError` if ``x`` is neither, or if a run has no value or a value that is
    not positive (``log2`` needs ``x > 0``, so a weight-decay grid holding 0 is refused).
    """
    if x in ("seed", "step") or x.startswith("final_"):
        raise InputError(f"x={x!r} is not a hyperparameter; allowed: a setting the runs vary")
    if x not in runs.columns:
        if "config_json" not in runs.columns:
            raise InputError(f"x={x!r} is not a column; columns: {', '.join(runs.columns)}")
        value = pl.col("config_json").str.json_path_match(f"$.{x}").cast(pl.Float64, strict=False)
        runs = runs.with_columns(value.alias(x))
        if runs.height and runs[x].null_count() == runs.height:
            raise InputError(f"x={x!r} is neither a column nor a setting in config_json")
    if runs[x].null_count():
        raise InputError(f"x={x!r} has no value in {runs[x].null_count()} of {runs.height} runs")
    if not runs[x].dtype.is_numeric():
        raise InputError(f"x={x!r} is a column of {runs[x].dtype}; allowed: numbers")
    bad = runs.filter(~(pl.col(x) > 0) | ~pl.col(x).cast(pl.Float64).is_finite())[x]
    if bad.len():
        raise InputError(f"x={x!r} holds {bad[0]!r}; allowed: finite values > 0 (a log2 axis)")
    return runs


def swept(frame: pl.DataFrame, x: str) -> pl.DataFrame:
    """The rows of ``frame`` (runs, or curves of ``x``) whose configuration -- the other
    settings, :func:`curve_keys` -- holds at least two values of ``x``: where a study
    sweeps one hyperparameter at a time, the configurations it sweeps ``x`` in. A setting
    that is not a column is read as :func:`with_hyperparameter` reads it."""
    if x not in frame.columns:
        frame = with_hyperparameter(frame, x)
    keys = config_keys(frame, x=x)
    values = pl.col(x).n_unique()
    return frame.filter((values.over(keys) if keys else values) > 1)


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


def hyperparameter_curves(
    runs: pl.DataFrame, x: str, *, loss: str = "final_train_loss", divergence: str = "any"
) -> pl.DataFrame:
    """Per configuration of ``x`` (:func:`curve_keys`) and value of the hyperparameter
    ``x``: mean, std and standard error of ``loss`` over ok seeds.

    Columns: the configuration keys, ``x``, ``log2_<x>``, ``loss_mean``,
    ``loss_std``, ``loss_se``, ``seeds_ok``, ``seeds_diverged``,
    ``diverged_share`` (of the seeds) and ``diverged``: any seed diverged
    (``divergence="any"``, the default) or every seed (``"all"``, survivors-only
    scoring). The frame a transfer plot draws. ``x`` is checked by
    :func:`with_hyperparameter`.
    """
    check_choice("divergence", divergence, DIVERGENCE_RULES)
    runs = with_hyperparameter(runs, x)
    keys = config_keys(runs, x=x)
    ok = (pl.col("status") == "ok") & pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    diverged = pl.col("seeds_diverged") > 0 if divergence == "any" else pl.col("seeds_ok") == 0
    return (
        runs.group_by(*keys, x)
        .agg(
            pl.col(loss).filter(ok).mean().alias("loss_mean"),
            pl.col(loss).filter(ok).std().alias("loss_std"),
            ok.sum().alias("seeds_ok"),
            (~ok).sum().alias("seeds_diverged"),
        )
        .with_columns(
            pl.col(x).log(2).alias(f"log2_{x}"),
            loss_se=pl.col("loss_std") / pl.col("seeds_ok").sqrt(),
            diverged_share=pl.col("seeds_diverged")
            / (pl.col("seeds_ok") + pl.col("seeds_diverged")),
            diverged=diverged,
        )
        .sort(*keys, x)
    )


def lr_curves(
    runs: pl.DataFrame, *, loss: str = "final_train_loss", divergence: str = "any"
) -> pl.DataFrame:
    """:func:`hyperparameter_curves` of the learning rate: columns the configuration
    keys (:data:`CONFIG_KEYS`), ``lr``, ``log2_lr``, ``loss_mean``, ``loss_std``,
    ``loss_se``, ``seeds_ok``, ``seeds_diverged``, ``diverged_share``, ``diverged``."""
    return hyperparameter_curves(runs, "lr", loss=loss, divergence=divergence)


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


def optimal_hyperparameter(
    runs: pl.DataFrame,
    x: str,
    *,
    loss: str = "final_train_loss",
    window: int = 2,
    level: float = 0.95,
    divergence: str = "any",
) -> pl.DataFrame:
    """Optimal ``log2(x)`` per configuration of the hyperparameter ``x``, with a ``level``
    confidence interval.

    A configuration is every other setting (:func:`curve_keys`): the optimum of ``x`` is
    found at each value of the hyperparameters held (for ``x = "output_alpha"``, at each
    learning rate). The grid minimum of the seed-mean loss over the usable (not diverged,
    see :func:`hyperparameter_curves`) values of ``x``, refined by a quadratic fit of
    every ok seed's loss against ``log2(x)`` over the ``window`` usable grid points on
    each side (:func:`fit_quadratic_optimum`). The refined optimum is kept inside the
    fitted window.

    Every optimum carries its status in ``fit``. Only ``fit == "ok"`` is a
    measurement (``measured``). When the minimum is at the edge of the usable
    grid the true optimum may lie outside: ``fit = "grid-edge"`` and ``censored``
    says on which side it lies (``below`` the smallest usable value or ``above`` the
    largest); ``log2_<x>_opt`` is then the grid value, a bound, and has no interval.
    Too few usable points (a configuration run at one value of ``x`` has one) or a
    non-convex fit give no interval either, and say so.

    Columns: configuration keys, ``log2_<x>_grid``, ``log2_<x>_opt``,
    ``log2_<x>_lo``, ``log2_<x>_hi``, ``log2_<x>_se`` (delta method) with
    ``log2_<x>_df`` (the fit's residual degrees of freedom), ``<x>_opt``, ``loss_opt``
    (the grid's best seed-mean loss: an observed value), ``loss_fit`` (the quadratic's
    value at its vertex, where ``fit == "ok"``: a model value, which may lie below every
    observed loss), ``points`` (usable values), ``diverged_<x>s``, ``fit``, ``measured``,
    ``censored``.
    """
    if loss not in runs.columns:
        raise InputError(f"loss={loss!r} is not a column; columns: {', '.join(runs.columns)}")
    runs = with_hyperparameter(runs, x)
    curves = hyperparameter_curves(runs, x, loss=loss, divergence=divergence)
    log2_x = f"log2_{x}"
    keys = config_keys(curves, x=x)
    ok = (pl.col("status") == "ok") & pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    points = runs.filter(ok).with_columns(pl.col(x).log(2).alias(log2_x))
    # numpy per configuration: a polars query per group costs more than the fit
    by_config = {
        key: (group[log2_x].to_numpy(), group[loss].to_numpy())
        for key, group in points.partition_by(keys, as_dict=True, maintain_order=True).items()
    }
    rows = []
    for key, curve in curves.group_by(keys, maintain_order=True):
        diverged = curve["diverged"].to_numpy()
        order = np.argsort(curve[log2_x].to_numpy()[~diverged], kind="stable")
        grid_x = curve[log2_x].to_numpy()[~diverged][order]
        means = curve["loss_mean"].to_numpy()[~diverged][order]
        row = dict(zip(keys, key, strict=True))
        row.update({"points": len(grid_x), f"diverged_{x}s": int(diverged.sum())})
        if len(grid_x) == 0:
            rows.append({**row, "fit": FIT_TOO_FEW})
            continue
        best = int(np.argmin(means))
        row.update({f"{log2_x}_grid": grid_x[best], f"{log2_x}_opt": grid_x[best]})
        row["loss_opt"] = float(means[best])
        window_x = grid_x[max(best - window, 0) : best + window + 1]
        seen_x, seen_loss = by_config[key]
        inside = np.isin(seen_x, window_x)
        x_opt, lo, hi, y_opt, fit, se = fit_quadratic_optimum(
            seen_x[inside], seen_loss[inside], level=level
        )
        if fit == FIT_OK and best in (0, len(grid_x) - 1):
            fit = FIT_EDGE
            row["censored"] = "below" if best == 0 else "above"
        if fit == FIT_OK:
            row.update({
                f"{log2_x}_opt": min(max(x_opt, window_x[0]), window_x[-1]),
                f"{log2_x}_lo": lo,
                f"{log2_x}_hi": hi,
                f"{log2_x}_se": se,
                f"{log2_x}_df": int(inside.sum() - 3),
                "loss_fit": y_opt,
            })  # fmt: skip
        rows.append({**row, "fit": fit})
    schema = {f"{log2_x}_{part}": pl.Float64 for part in ("grid", "opt", "lo", "hi", "se")}
    schema.update({f"{log2_x}_df": pl.Int64, "loss_opt": pl.Float64, "loss_fit": pl.Float64,
                   "censored": pl.String})  # fmt: skip
    out = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    for column, dtype in schema.items():
        if column not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return out.with_columns(
        (2.0 ** pl.col(f"{log2_x}_opt")).alias(f"{x}_opt"), measured=pl.col("fit") == FIT_OK
    ).sort(keys)


def joint_optimum(
    runs: pl.DataFrame,
    x: str,
    held: str,
    *,
    loss: str = "final_train_loss",
    window: int = 2,
    level: float = 0.95,
    divergence: str = "any",
) -> pl.DataFrame:
    """Optimal ``log2(x)`` through the best cell of an ``(x, held)`` grid, per
    configuration of the two (every other setting, :func:`curve_keys`).

    The best cell is the usable (not diverged, :func:`hyperparameter_curves`) grid point
    of lowest seed-mean ``loss``; ``x`` is then optimised by
    :func:`optimal_hyperparameter` along the grid line through it, ``held`` at the best
    cell's value. Called once per axis (``x="lr", held="weight_decay"`` and the reverse)
    this says whether an (LR, weight decay) optimum is inside its grid on both axes
    (``fit == "ok"``) and where: e.g. the best pair of each width and weight-decay rule.

    Columns: those of :func:`optimal_hyperparameter` without ``held`` (so that
    :func:`~toolkit.analysis.transfer.drift` fits one line per series although the best
    ``held`` value may differ between sizes), plus ``<held>_at_best``. Both ``x`` and
    ``held`` are checked by :func:`with_hyperparameter` (positive, a log2 axis).
    """
    if x == held:
        raise InputError(f"held={held!r} is the optimised x; allowed: another hyperparameter")
    runs = with_hyperparameter(with_hyperparameter(runs, x), held)
    cells = hyperparameter_curves(runs, x, loss=loss, divergence=divergence)
    outer = config_keys(cells, exclude=(held,), x=x)
    at_best = f"{held}_at_best"
    usable = cells.filter(~pl.col("diverged"), pl.col("loss_mean").is_not_null())
    best = (
        usable.sort("loss_mean")
        .group_by(outer, maintain_order=True)
        .first()
        .select(*outer, pl.col(held).alias(at_best))
    )
    line = runs.join(best, on=outer, how="inner", nulls_equal=True).filter(
        pl.col(held) == pl.col(at_best)
    )
    optima = optimal_hyperparameter(
        line.drop(held, at_best), x, loss=loss, window=window, level=level, divergence=divergence
    )
    return optima.join(best, on=outer, how="left", nulls_equal=True)


def optimal_lr(
    runs: pl.DataFrame,
    *,
    loss: str = "final_train_loss",
    window: int = 2,
    level: float = 0.95,
    divergence: str = "any",
) -> pl.DataFrame:
    """Optimal ``log2(lr)`` per configuration (:data:`CONFIG_KEYS`) with a ``level``
    confidence interval: :func:`optimal_hyperparameter` of the learning rate.

    Columns: configuration keys, ``log2_lr_grid``, ``log2_lr_opt``,
    ``log2_lr_lo``, ``log2_lr_hi``, ``log2_lr_se`` (delta method) with
    ``log2_lr_df`` (the fit's residual degrees of freedom), ``lr_opt``, ``loss_opt`` (the
    grid's best seed-mean loss), ``loss_fit`` (the quadratic's minimum), ``points`` (usable
    LRs), ``diverged_lrs``, ``fit``, ``measured``, ``censored``.
    """
    return optimal_hyperparameter(
        runs, "lr", loss=loss, window=window, level=level, divergence=divergence
    )


def grid_disagreement(optima: pl.DataFrame, curves: pl.DataFrame) -> pl.DataFrame:
    """``optima`` with ``off_grid``: whether a measured optimum's whole interval lies nearer
    another grid value than the grid minimum it was refined from.

    For a loss symmetric about its optimum the grid value nearest the optimum has the
    lowest expected loss, so such an interval and its grid minimum cannot both be right:
    either seed noise moved the grid minimum or the loss is not locally quadratic (it
    rises much faster on one side, as the loss does above the largest stable init
    scale). Either way the interval understates the uncertainty. ``curves`` are the
    :func:`hyperparameter_curves` the optima were found on (their usable grid); optima
    that are not measured have ``off_grid`` null.
    """
    x = optimized(optima)
    log2_x = f"log2_{x}"
    keys = config_keys(optima, x=x)
    usable = curves.filter(~pl.col("diverged")).group_by(keys).agg(pl.col(log2_x).sort())
    grids = {tuple(row[:-1]): row[-1] for row in usable.select(*keys, log2_x).iter_rows()}
    flags = []
    for row in optima.iter_rows(named=True):
        if row["fit"] != FIT_OK:
            flags.append(None)
            continue
        grid = np.array(grids[tuple(row[k] for k in keys)])
        best = int(np.searchsorted(grid, row[f"{log2_x}_grid"]))
        below = (grid[best] - grid[best - 1]) / 2 if best > 0 else math.inf
        above = (grid[best + 1] - grid[best]) / 2 if best + 1 < len(grid) else math.inf
        flags.append(
            bool(
                row[f"{log2_x}_hi"] < grid[best] - below or row[f"{log2_x}_lo"] > grid[best] + above
            )
        )
    return optima.with_columns(off_grid=pl.Series(flags, dtype=pl.Boolean))
