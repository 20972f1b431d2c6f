"""Analysis of results: polars frames in, polars frames out (statsmodels for fits).

The functions follow how transfer is judged in the literature:

* :func:`optimal_lr`: the optimal learning rate per configuration, the grid
  minimum refined by a local quadratic fit of loss against ``log2(lr)``, with a
  confidence interval (delta method on the fit's covariance). An optimum at the
  edge of the grid is *censored*: only a bound (the optimum lies below or above
  the grid), never a measurement.
* :func:`drift`: the slope of ``log2(lr*)`` against ``log2(width)`` (or depth,
  or steps) through the measured optima only, weighted by their standard errors
  (:func:`toolkit.analysis.fits.fit_line`), with an interval, the number of
  censored optima and how many of their bounds contradict the line.
  SP + Adam: about -1 at large width; muP: about 0.
* :func:`power_law_exponent`: the same line read as ``lr* ∝ size**-alpha`` (along
  ``steps``, the token-horizon law of Bjorck et al. 2024).
* :func:`transfer_regret`: loss at the LR transferred from a base size minus
  the loss at the target's own optimum (Ghosh et al. 2025).
* :func:`wider_is_better`: training loss at the transferred LR should fall
  monotonically with width under muP (Tensor Programs V).
* :func:`predict_loss`: fit ``L(N) = a N**-b + c`` on small models at the
  transferred hyperparameters and predict larger ones (Yao et al. 2023).

A "configuration" is every run setting except LR and seed
(:data:`CONFIG_KEYS`). Diverged runs never count as a loss. By default a
learning rate at which *any* seed diverged is a diverged point (it cannot be the
optimum: one lucky seed out of three must not make an unstable LR look best);
``divergence="all"`` keeps the survivors of partly diverged LRs instead, on
request. Diverged points are shown and counted, not dropped.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats

from toolkit.analysis.fits import fit_line, fit_power_law
from toolkit.analysis.optima import (
    FIT_OK,
    config_keys,
    hyperparameter_curves,
    optimal_hyperparameter,
    optimized,
)
from toolkit.analysis.optima import lr_curves as lr_curves  # re-exported for notebooks
from toolkit.analysis.optima import optimal_lr as optimal_lr
from toolkit.analysis.optima import swept as swept
from toolkit.errors import InputError, check_choice

#: Outcomes of :func:`drift`.
DRIFT_OK, DRIFT_TOO_FEW = "ok", "too-few-measured"

#: Fewest measured optima a drift is fitted through.
MIN_DRIFT_POINTS = 3

#: Axes along which optima can drift.
DRIFT_AXES = ("width", "depth", "steps", "batch_size")

COVARYING = {"batch_size": "steps"}
"""A setting that moves with an axis where a study holds the number of training examples
fixed: along the batch size, the steps (``steps x batch_size`` constant within a line)."""


def _normal_equivalent_se(optima: pl.DataFrame, log2_x: str) -> np.ndarray:
    """Each optimum's standard error widened so that a normal interval matches its own
    Student-t interval: ``se * t(df) / z``. An optimum fitted with few residual degrees
    of freedom is less certain than its delta-method ``se`` alone says, and a line
    through it must carry that."""
    df = optima[f"{log2_x}_df"].to_numpy().astype(float)
    widen = stats.t.ppf(0.975, np.maximum(df, 1)) / stats.norm.ppf(0.975)
    return optima[f"{log2_x}_se"].to_numpy() * widen


def drift(optima: pl.DataFrame, *, axis: str = "width", level: float = 0.95) -> pl.DataFrame:
    """Slope of ``log2(lr*)`` against ``log2(axis)`` per configuration, with an interval.

    ``axis`` is ``width``, ``depth``, ``steps`` (the training horizon) or ``batch_size``
    (at a fixed number of training examples: the steps move with it, :data:`COVARYING`).
    ``optima`` is the output of :func:`optimal_lr`, or of
    :func:`~toolkit.analysis.optima.optimal_hyperparameter` for any other
    hyperparameter ``x`` (then the slope is of ``log2(x*)``, per configuration of
    ``x``: the hyperparameters held, such as the LR, are keys). Only measured optima
    (``fit == "ok"``) are points of the line; it is weighted by their standard
    errors (random-effects meta-regression, :func:`toolkit.analysis.fits.fit_line`),
    so its interval is never narrower than the optima's own uncertainty implies.
    Censored optima (``grid-edge``) are bounds: they are counted (``censored``),
    and a bound the fitted line crosses -- e.g. an optimum known to lie below the
    grid where the line passes above it -- is counted in ``contradicting``. With
    fewer than :data:`MIN_DRIFT_POINTS` measured optima there is no line:
    ``status = "too-few-measured"`` and the slope is null.

    Columns: the configuration keys except ``axis``, ``axis``, ``slope``,
    ``slope_lo``, ``slope_hi``, ``intercept`` (``log2(lr*)`` at size 1, for
    drawing the line), ``points`` (measured optima used), ``censored``,
    ``contradicting``, ``status``, ``method``.
    """
    check_choice("axis", axis, DRIFT_AXES)
    x = optimized(optima)
    log2_x = f"log2_{x}"
    covarying = COVARYING.get(axis)
    keys = config_keys(optima, exclude=(axis, covarying), x=x)
    rows = []
    for key, group in optima.group_by(keys, maintain_order=True):
        if group[axis].n_unique() < 2:
            continue
        if covarying in group.columns and (group[axis] * group[covarying]).n_unique() > 1:
            raise InputError(
                f"along {axis} the {covarying} must keep {covarying} x {axis} fixed (the same "
                f"number of examples); found {covarying} {sorted(group[covarying].unique())} at "
                f"{axis} {sorted(group[axis].unique())}"
            )
        row = dict(zip(keys, key, strict=True))
        measured = group.filter(pl.col("fit") == FIT_OK)
        bounds = group.filter(pl.col("censored").is_not_null())
        row.update(axis=axis, points=measured.height, censored=bounds.height, contradicting=0)
        if measured[axis].n_unique() < MIN_DRIFT_POINTS:
            rows.append({**row, "status": DRIFT_TOO_FEW})
            continue
        sizes = np.log2(measured[axis].to_numpy().astype(float))
        se = _normal_equivalent_se(measured, log2_x)
        weights = se if bool(np.all(np.isfinite(se) & (se > 0))) else None
        line = fit_line(sizes, measured[f"{log2_x}_opt"].to_numpy(), weights, level=level)
        on_line = line.intercept + line.slope * np.log2(bounds[axis].to_numpy().astype(float))
        bound = bounds[f"{log2_x}_grid"].to_numpy()
        below = bounds["censored"].to_numpy() == "below"
        crossing = np.where(below, on_line > bound, on_line < bound)
        row.update(
            slope=line.slope, slope_lo=line.slope_lo, slope_hi=line.slope_hi,
            intercept=line.intercept, contradicting=int(crossing.sum()), status=DRIFT_OK,
            method=line.method,
        )  # fmt: skip
        rows.append(row)
    schema = dict.fromkeys(("slope", "slope_lo", "slope_hi", "intercept"), pl.Float64)
    schema.update(status=pl.String, method=pl.String)
    if not rows:  # no configuration has two sizes: no line, but every column
        counts = dict.fromkeys(("points", "censored", "contradicting"), pl.Int64)
        return pl.DataFrame(schema={**{k: optima.schema[k] for k in keys}, "axis": pl.String,
                                    **counts, **schema})  # fmt: skip
    out = pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)
    for column, dtype in schema.items():
        if column not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return out


def power_law_exponent(
    optima: pl.DataFrame, *, axis: str = "steps", level: float = 0.95
) -> pl.DataFrame:
    """The optimum's power law in ``axis``, ``x* ∝ axis**-alpha``, per configuration.

    A line of ``log2(x*)`` against ``log2(axis)`` is that power law, so ``alpha`` is
    minus :func:`drift`'s slope and its interval is the slope's, negated: the same fit
    through the measured optima only, weighted by their own standard errors, with
    censored optima counted, not fitted. Along ``steps`` this is the token-horizon law
    of Bjorck et al. 2024 (*Scaling Optimal LR Across Token Horizons*, ICLR 2025): the
    optimal LR falls as a power law in the number of training tokens, which at a fixed
    batch size is proportional to the number of steps; ``alpha > 0`` means it falls.

    Columns: those of :func:`drift`, plus ``alpha``, ``alpha_lo`` and ``alpha_hi`` (the
    ``level`` interval; null where the drift has no line).
    """
    return drift(optima, axis=axis, level=level).with_columns(
        alpha=-pl.col("slope"), alpha_lo=-pl.col("slope_hi"), alpha_hi=-pl.col("slope_lo")
    )


def loss_at_lr(curve: pl.DataFrame, log2_lr: float, *, x: str = "lr") -> float:
    """Seed-mean loss of one LR curve (:func:`lr_curves` rows) at ``log2_lr``,
    interpolated linearly in ``log2(lr)``; inf where a bracketing LR diverged,
    NaN outside the grid. With ``x``, the same along a curve of that hyperparameter
    (:func:`~toolkit.analysis.optima.hyperparameter_curves` rows)."""
    curve = curve.sort(f"log2_{x}")
    grid = curve[f"log2_{x}"].to_numpy()
    if not (grid[0] <= log2_lr <= grid[-1]):
        return math.nan
    y = curve["loss_mean"].fill_null(math.inf).to_numpy()
    right = int(np.searchsorted(grid, log2_lr))
    if grid[right] == log2_lr:
        return float(y[right])
    left = right - 1
    if not (np.isfinite(y[left]) and np.isfinite(y[right])):
        return math.inf
    weight = (log2_lr - grid[left]) / (grid[right] - grid[left])
    return float((1 - weight) * y[left] + weight * y[right])


def transferred(
    runs: pl.DataFrame,
    *,
    axis: str = "width",
    base: int | None = None,
    loss: str = "final_train_loss",
    divergence: str = "any",
    x: str = "lr",
) -> pl.DataFrame:
    """Each target's loss at the LR transferred from the ``base`` size (default: smallest).

    The transferred LR is the base's grid optimum (sweeps share one LR grid, so
    it was run at every size); ``regret`` is the target's seed-mean loss there
    minus its own grid-minimum loss: zero at the base, never negative, inf if
    the target diverges at the transferred LR (under ``divergence``, see
    :func:`lr_curves`), NaN if that LR is off its grid. ``base_fit`` is the
    status of the base's optimum: a ``grid-edge`` base transfers a bound.
    ``x`` transfers another hyperparameter the same way (the output multiplier
    tuned at the base width, at each setting of the others); its columns are
    named after it.

    Columns: configuration keys, ``base``, ``base_fit``, ``log2_lr_transferred``,
    ``loss_transferred``, ``loss_transferred_se`` (standard error over seeds),
    ``log2_lr_opt``, ``loss_opt`` (the target's grid optimum and its loss),
    ``regret``, and ``n_params`` when the runs have it.
    """
    log2_x = f"log2_{x}"
    optima = optimal_hyperparameter(runs, x, loss=loss, divergence=divergence)
    curves = hyperparameter_curves(runs, x, loss=loss, divergence=divergence).with_columns(
        loss_mean=pl.when(pl.col("diverged")).then(None).otherwise(pl.col("loss_mean"))
    )
    keys = config_keys(optima, exclude=(axis,), x=x)
    sizes = (
        runs.group_by(*keys, axis).agg(pl.col("n_params").first())
        if "n_params" in runs.columns
        else None
    )
    rows = []
    for key, family in optima.group_by(keys, maintain_order=True):
        base_size = family[axis].min() if base is None else base
        base_row = family.filter(pl.col(axis) == base_size)
        if base_row.height == 0 or base_row[f"{log2_x}_grid"][0] is None:
            continue
        x_base = float(base_row[f"{log2_x}_grid"][0])
        for target in family.iter_rows(named=True):
            curve = curves.filter(*(pl.col(k).eq_missing(target[k]) for k in (*keys, axis)))
            at = loss_at_lr(curve, x_base, x=x)
            at_row = curve.filter(pl.col(log2_x) == x_base)
            se = at_row["loss_se"][0] if at_row.height and math.isfinite(at) else None
            best = target[f"{log2_x}_grid"]
            best_loss = loss_at_lr(curve, best, x=x) if best is not None else math.nan
            rows.append(
                {**dict(zip(keys, key, strict=True)), axis: target[axis],
                 "base": base_size, "base_fit": base_row["fit"][0],
                 f"{log2_x}_transferred": x_base, "loss_transferred": at,
                 "loss_transferred_se": se, f"{log2_x}_opt": best, "loss_opt": best_loss,
                 "regret": at - best_loss}
            )  # fmt: skip
    out = pl.DataFrame(
        rows, schema_overrides={"loss_transferred_se": pl.Float64}, infer_schema_length=None
    )
    if sizes is not None and out.height:
        out = out.join(sizes, on=[*keys, axis], how="left", nulls_equal=True)
    return out


def transfer_regret(runs: pl.DataFrame, **kwargs) -> pl.DataFrame:
    """:func:`transferred` reduced to the configuration keys and ``regret``."""
    frame = transferred(runs, **kwargs)
    axis = kwargs.get("axis", "width")
    keys = config_keys(frame, exclude=(axis,), x=kwargs.get("x", "lr"))
    return frame.select(*keys, axis, "base", "regret")


def wider_is_better(runs: pl.DataFrame, *, loss: str = "final_train_loss") -> pl.DataFrame:
    """Per configuration family: is the loss at the transferred LR falling with width?

    Columns: configuration keys except width, ``widths``, ``losses`` (at the
    transferred LR, by increasing width), ``wider_is_better`` (strictly
    decreasing).
    """
    frame = transferred(runs, axis="width", loss=loss).sort("width")
    keys = config_keys(frame, exclude=("width",))
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


def predict_loss(
    frame: pl.DataFrame,
    *,
    size: str = "n_params",
    loss: str = "loss_transferred",
    se: str | None = "loss_transferred_se",
    fit_up_to: float,
    level: float = 0.95,
) -> pl.DataFrame:
    """Fit ``L(N) = a N**-b + c`` on rows with ``size <= fit_up_to``, predict every row.

    ``frame`` is typically :func:`transferred` output; ``N`` is the parameter
    count by default (``size="width"`` also works). The asymptote ``c`` is
    non-negative. With a seed standard-error column ``se`` (rows without one are
    dropped from the fit) the points' seed noise is the fit's noise floor and
    each prediction's interval bounds where the row's own seed mean falls
    (:func:`toolkit.analysis.fits.fit_power_law`); with ``se=None`` it is
    unweighted least squares, and needs four fitted points for an interval
    (``interval = False`` otherwise).

    Columns: ``size``, observed ``loss``, ``predicted``, ``predicted_lo``,
    ``predicted_hi``, ``fitted`` (used in the fit), ``interval``.
    """
    for column in (size, loss) + ((se,) if se is not None else ()):
        if column not in frame.columns:
            raise InputError(f"{column!r} is not a column; columns: {', '.join(frame.columns)}")
    usable = pl.col(loss).is_not_null() & pl.col(loss).is_finite()
    if se is not None:
        usable &= pl.col(se).is_not_null() & (pl.col(se) > 0)
    data = frame.filter(usable).sort(size)
    n_all = data[size].to_numpy().astype(float)
    y_all = data[loss].to_numpy().astype(float)
    noise = data[se].to_numpy().astype(float) if se is not None else None
    fitted = n_all <= fit_up_to
    if fitted.sum() < 3:
        raise InputError(
            f"fit_up_to={fit_up_to!r} leaves {int(fitted.sum())} points; a power law needs >= 3"
        )
    prediction = fit_power_law(
        n_all[fitted], y_all[fitted], se=None if noise is None else noise[fitted],
        at=n_all, se_new=noise, level=level,
    )  # fmt: skip
    return pl.DataFrame(
        {
            size: n_all,
            "loss": y_all,
            "predicted": prediction.predicted,
            "predicted_lo": prediction.lo,
            "predicted_hi": prediction.hi,
            "fitted": fitted,
            "interval": prediction.interval,
        }
    )


def run_counts(runs: pl.DataFrame, *, by: tuple[str, ...]) -> pl.DataFrame:
    """How many runs each ``by`` group holds and how many of them diverged.

    Columns: ``by``, ``runs``, ``diverged``; sorted by ``by``.
    """
    return (
        runs.group_by(*by)
        .agg(pl.len().alias("runs"), (pl.col("status") == "diverged").sum().alias("diverged"))
        .sort(*by)
    )


def optimum_span(
    optima: pl.DataFrame,
    *,
    by: tuple[str, ...],
    lr: str = "log2_lr_grid",
    distinct: tuple[str, ...] = (),
) -> pl.DataFrame:
    """How far the optimal LR moves within each ``by`` group (across sizes).

    ``octaves`` is the largest minus the smallest ``lr`` (a log2 LR column: the grid
    optimum of :func:`optimal_lr` by default, or ``log2_lr`` of :func:`best_cells`);
    0 means the optimum stayed on one grid point. Each column in ``distinct`` adds
    ``<column>_values``, its number of distinct values in the group (e.g. how many
    weight decays the best cells use). Sorted by ``by``.
    """
    spans = [(pl.col(lr).max() - pl.col(lr).min()).alias("octaves")]
    counts = [pl.col(column).n_unique().alias(f"{column}_values") for column in distinct]
    return optima.group_by(*by).agg(*spans, *counts).sort(*by)


def best_cells(curves: pl.DataFrame, *, by: tuple[str, ...]) -> pl.DataFrame:
    """The grid point with the lowest seed-mean loss in each ``by`` group.

    ``curves`` are :func:`lr_curves` rows; diverged points never win. Over an
    (LR, weight decay) grid grouped by rule and width this is each width's best
    cell. Columns: ``by``, ``log2_lr``, ``weight_decay`` (where present),
    ``loss_mean``, and for each grid axis ``<axis>_at_edge``: whether the best cell
    lies on the smallest or largest value of the group's grid, where the true
    optimum may lie outside it (a bound, not a location); sorted by ``by``.
    """
    axes = [c for c in ("log2_lr", "weight_decay") if c in curves.columns and c not in by]
    edges = curves.group_by(*by).agg(
        *(pl.col(a).min().alias(f"{a}_lowest") for a in axes),
        *(pl.col(a).max().alias(f"{a}_highest") for a in axes),
    )
    best = (
        curves.filter(pl.col("loss_mean").is_not_null())
        .sort("loss_mean")
        .group_by(*by, maintain_order=True)
        .first()
        .select(*by, *axes, "loss_mean")
        .join(edges, on=list(by), how="left", nulls_equal=True)
    )
    at_edge = [
        ((pl.col(a) == pl.col(f"{a}_lowest")) | (pl.col(a) == pl.col(f"{a}_highest"))).alias(
            f"{a}_at_edge"
        )
        for a in axes
    ]
    return best.select(*by, *axes, "loss_mean", *at_edge).sort(*by)


def drift_along(
    optima: pl.DataFrame, *, axes: tuple[str, ...] = ("width", "depth")
) -> pl.DataFrame:
    """:func:`drift` along each of ``axes`` in one frame (``axis`` says which; the size
    columns not fitted along stay as configuration keys)."""
    return pl.concat([drift(optima, axis=axis) for axis in axes], how="diagonal_relaxed")


def regret_along(
    runs: pl.DataFrame, *, axes: tuple[str, ...] = ("width", "depth"), **kwargs
) -> pl.DataFrame:
    """:func:`transfer_regret` along each of ``axes`` in one frame, with an ``axis`` column;
    ``kwargs`` go to :func:`transfer_regret` (e.g. ``loss``)."""
    return pl.concat(
        [
            transfer_regret(runs, axis=axis, **kwargs).with_columns(axis=pl.lit(axis))
            for axis in axes
        ],
        how="diagonal_relaxed",
    )
