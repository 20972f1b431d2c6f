"""Analysis of layer spectra recorded by :func:`toolkit.engine.probes.spectral_stats`.

Polars frames in, polars frames out; statsmodels for the fits. The questions:

* Does the spectral condition hold (Yang, Simon & Bernstein 2023)? Each
  layer's ``cond_ratio = ||W||_2 / sqrt(fan_out / fan_in)`` should stay flat
  across widths: :func:`width_table` sets it against the smallest width.
* How does the top singular value scale? :func:`fit_exponent` fits
  ``sigma_max ~ width**k`` by OLS in log-log with an interval (muP's hidden
  layers: ``k`` near 0 in ``cond_ratio``; SP with Adam: growth).
* Under AdamW, in steady state, every matrix's spectrum scales as
  ``sqrt(eta / lambda)`` (Fan et al. 2025, "Robust layerwise scaling rules by
  proper weight decay tuning"): :func:`lr_wd_exponent` is the slope of
  ``log sigma_max`` against ``log sqrt(lr / wd)`` (1 in steady state).
* Which weight-decay rule (``none``, ``coupled``, ``sqrt_width``) keeps the top
  singular value and the loss-optimal ``(lr, wd)`` flat across widths?
  :func:`weight_decay_rules`. Fan et al. predict ``sigma_max ~ sqrt(eta / lambda)
  * d**0.75`` for hidden matrices; with muP's ``eta ~ 1/d`` that is flat for
  ``lambda ~ sqrt(d)`` (``sqrt_width``), ``~ d**0.25`` for constant ``lambda``
  (``none``) and ``~ d**-0.25`` for ``lambda ~ d`` (``coupled``).

Spectra: :func:`singular_value_frame` reads the ``sv_<rank>`` rows back into
``rank, sigma, eigenvalue`` columns and :func:`esd_density` turns the
log-spaced ranks into an empirical spectral density (ESD) of the eigenvalues
``sigma**2`` of ``W^T W``: between two kept ranks ``r_a < r_b`` with
eigenvalues ``l_a >= l_b`` lies a fraction ``(r_b - r_a) / n`` of the ``n``
eigenvalues, so the density there is ``(r_b - r_a) / (n (l_a - l_b))``, placed
at the geometric mean ``sqrt(l_a l_b)``. On log-log axes a power-law tail
``p(l) ~ l**-alpha`` is a straight line of slope ``-alpha``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl

from toolkit.analysis.fits import fit_slope
from toolkit.errors import InputError, check_choice, check_positive
from toolkit.store import RUN_SETTINGS

#: Run settings joined onto probe rows by :func:`with_settings`.
SETTINGS = (*RUN_SETTINGS, "status", "final_train_loss", "final_val_loss")

#: Summary statistics of :func:`toolkit.engine.probes.spectral_stats` (every stat but ``sv_*``).
SUMMARY_STATS = ("sigma_max", "fro_norm", "stable_rank", "cond_ratio", "delta_cond_ratio",
                 "update_cond_ratio", "update_ratio", "act_rms", "alpha")  # fmt: skip

#: Settings that identify one configuration of a matrix's statistics, seeds aside.
CONFIG = tuple(k for k in RUN_SETTINGS if k != "seed")

#: Outcomes of :func:`fit_exponent`.
FIT_OK, FIT_NO_INTERVAL, FIT_TOO_FEW = "ok", "no-interval", "too-few-points"

DECAY_OBJECTIVE = "final_val_loss"
"""The loss whose (LR, weight decay) optimum a weight-decay study locates: the validation
loss. Weight decay regularises; the training loss is lowest with the least decay, so its
optimum sits on the grid's WD = 0 edge whatever the rule."""

STEADY_TIMESCALES = 4.0
"""Fewest AdamW timescales ``tau_iter = 1 / (lr * wd)`` (Wang & Aitchison 2024) a run must
have trained for to count as in steady state (:func:`adamw_timescales`): ``tau_iter`` at most
a quarter of training, so the initialisation's weight is down to ``exp(-4)`` (2%)."""

_SV_RANK = r"^sv_(\d+)$"
_ROLE_ORDER = {"input": 0, "hidden": 1, "vector": 2, "output": 3, "fixed": 4}


def with_settings(probes: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """Probe rows (``run_id, step, layer, role, stat, value``) with their run's settings.

    Every column of :data:`SETTINGS` that ``runs`` has is joined on ``run_id``.
    """
    columns = ["run_id", *(c for c in SETTINGS if c in runs.columns)]
    return probes.join(runs.select(columns), on="run_id", how="inner")


def layer_order(frame: pl.DataFrame) -> list[str]:
    """Layers in network order: by role (input, hidden, output), then by name with
    numbers compared as numbers (``block2`` before ``block10``)."""

    def key(pair: tuple[str, str]) -> tuple:
        layer, role = pair
        parts = re.split(r"(\d+)", layer)
        return _ROLE_ORDER.get(role, 5), [(0, int(p), "") if p.isdigit() else (1, 0, p)
                                          for p in parts]  # fmt: skip

    pairs = frame.select("layer", "role").unique().rows()
    return [layer for layer, _ in sorted(pairs, key=key)]


def summary(frame: pl.DataFrame) -> pl.DataFrame:
    """The summary rows (every stat but ``sv_*``)."""
    return frame.filter(~pl.col("stat").str.starts_with("sv_"))


def singular_value_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The ``sv_<rank>`` rows of ``frame`` (probe rows, with or without settings) as
    ``rank`` (1 = largest), ``sigma`` and ``eigenvalue`` (``sigma**2``), with ``n``:
    the matrix's largest kept rank, which is its number of singular values when the
    whole spectrum was computed. A matrix is one ``run_id``, ``step`` and ``layer``."""
    matrix = ["run_id", "step", "layer"]
    return (
        frame.filter(pl.col("stat").str.starts_with("sv_"))
        .with_columns(rank=pl.col("stat").str.extract(_SV_RANK, 1).cast(pl.Int64))
        .drop("stat")
        .rename({"value": "sigma"})
        .with_columns(eigenvalue=pl.col("sigma") ** 2, n=pl.col("rank").max().over(matrix))
        .sort(*matrix, "rank")
    )


def mean_spectrum(spectra: pl.DataFrame, by: tuple[str, ...] = CONFIG) -> pl.DataFrame:
    """Singular values averaged over seeds, rank by rank: ``by``, ``step``, ``layer``,
    ``role``, ``rank``, ``n``, ``sigma``, ``eigenvalue``, ``seeds``."""
    keys = [c for c in by if c in spectra.columns] + ["step", "layer", "role", "rank", "n"]
    return (
        spectra.group_by(keys)
        .agg(pl.col("sigma").mean(), pl.len().alias("seeds"))
        .with_columns(eigenvalue=pl.col("sigma") ** 2)
        .sort(keys)
    )


def esd_density(spectra: pl.DataFrame, *, min_count: int = 4) -> pl.DataFrame:
    """Empirical spectral density of each matrix from its kept ranks (module docstring).

    ``spectra`` is :func:`singular_value_frame` or :func:`mean_spectrum` output.
    Neighbouring kept ranks are merged until each interval holds at least
    ``min_count`` eigenvalues (the last may hold fewer): at the top of a
    spectrum the log-spaced ranks are consecutive, and one eigenvalue gap is
    too noisy a density estimate. Returns the matrix's identifying columns
    plus ``eigenvalue`` (the geometric mean of the interval's ends),
    ``density`` (per unit eigenvalue; it integrates to the fraction of the
    spectrum between the first and last kept rank) and ``fraction`` (the share
    of eigenvalues in the interval). Intervals of zero width or at a zero
    eigenvalue are left out.
    """
    check_positive("min_count", min_count, integer=True)
    keys = [c for c in spectra.columns if c not in ("rank", "sigma", "eigenvalue", "n", "seeds")]
    parts = []
    for part in spectra.sort("rank").partition_by(keys, maintain_order=True):
        ranks, eigenvalues = part["rank"].to_numpy(), part["eigenvalue"].to_numpy()
        keep = [0]
        for i in range(1, len(ranks)):
            if ranks[i] - ranks[keep[-1]] >= min_count or i == len(ranks) - 1:
                keep.append(i)
        upper, lower = eigenvalues[keep[:-1]], eigenvalues[keep[1:]]
        fraction = np.diff(ranks[keep]) / part["n"][0]
        with np.errstate(divide="ignore", invalid="ignore"):
            density = fraction / (upper - lower)
        centre = np.sqrt(upper * lower)
        ok = np.isfinite(density) & (density > 0) & (centre > 0)
        values = pl.DataFrame(
            {"eigenvalue": centre[ok], "density": density[ok], "fraction": fraction[ok]},
            schema=dict.fromkeys(("eigenvalue", "density", "fraction"), pl.Float64),
        )
        parts.append(part.select(keys).head(1).join(values, how="cross"))
    if not parts:
        schema = {**spectra.select(keys).schema, "eigenvalue": pl.Float64,
                  "density": pl.Float64, "fraction": pl.Float64}  # fmt: skip
        return pl.DataFrame(schema=schema)
    return pl.concat(parts)


def seed_mean(frame: pl.DataFrame, by: tuple[str, ...] = CONFIG) -> pl.DataFrame:
    """Summary statistics averaged over seeds: ``by``, ``step``, ``layer``, ``role``,
    ``stat``, ``value`` (mean), ``lo``, ``hi`` (min and max over seeds), ``seeds``."""
    keys = [c for c in by if c in frame.columns] + ["step", "layer", "role", "stat"]
    return (
        summary(frame)
        .filter(pl.col("value").is_finite())
        .group_by(keys)
        .agg(
            pl.col("value").mean(),
            pl.col("value").min().alias("lo"),
            pl.col("value").max().alias("hi"),
            pl.len().alias("seeds"),
        )
        .sort(keys)
    )


_RULE = ("parametrization", "optimizer", "weight_decay_scaling")
"""Columns that name a training rule."""

_PLACE = ("step", "layer", "role")
"""Columns that place a spectral statistic in the network and in training."""


def fit_exponent(
    frame: pl.DataFrame,
    *,
    x: str = "width",
    stat: str = "sigma_max",
    by: tuple[str, ...] = (*_RULE, "lr", "weight_decay", *_PLACE),
    level: float = 0.95,
) -> pl.DataFrame:
    """Exponent ``k`` of ``stat ~ x**k`` per ``by`` group: OLS of ``log stat`` on ``log x``.

    Every seed's value is a point, so the ``level`` interval reflects seed
    spread too. Columns: ``by`` (those present), ``stat``, ``exponent``,
    ``exponent_lo``, ``exponent_hi``, ``intercept`` (``log2 stat`` at ``x = 1``,
    for drawing the line in log2 units), ``points``, ``sizes`` and ``fit``:
    ``ok``; ``no-interval`` (no residual degrees of freedom: one point at each
    of two sizes); ``too-few-points`` (one size: no exponent).
    """
    keys = [c for c in by if c in frame.columns]
    rows = summary(frame).filter(
        pl.col("stat") == stat, pl.col("value").is_finite(), pl.col("value") > 0
    )
    out = []
    groups = rows.group_by(keys, maintain_order=True) if keys else [((), rows)]
    for key, group in groups:
        sizes = np.log2(group[x].to_numpy().astype(float))
        values = np.log2(group["value"].to_numpy())
        slope, lo, hi, intercept = fit_slope(sizes, values, level=level)
        distinct = len(np.unique(sizes))
        fit = FIT_TOO_FEW if distinct < 2 else FIT_OK if math.isfinite(lo) else FIT_NO_INTERVAL
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "stat": stat,
                "exponent": slope,
                "exponent_lo": lo,
                "exponent_hi": hi,
                "intercept": intercept,
                "points": group.height,
                "sizes": distinct,
                "fit": fit,
            }
        )
    floats = ("exponent", "exponent_lo", "exponent_hi", "intercept")
    schema = dict.fromkeys(floats, pl.Float64)
    return pl.DataFrame(out, schema_overrides=schema, infer_schema_length=None)


def lr_wd_exponent(
    frame: pl.DataFrame,
    *,
    stat: str = "sigma_max",
    by: tuple[str, ...] = (*_RULE, "width", *_PLACE),
    level: float = 0.95,
) -> pl.DataFrame:
    """Slope of ``log stat`` against ``log sqrt(lr / wd)`` per ``by`` group (runs with
    ``wd > 0``), with a ``level`` interval: 1 when ``sigma_max ~ sqrt(lr / wd)`` (Fan et
    al. 2025, steady state under AdamW).

    Columns as :func:`fit_exponent`, with ``x = "sqrt_lr_over_wd"``.
    """
    decayed = frame.filter(pl.col("weight_decay") > 0).with_columns(
        sqrt_lr_over_wd=(pl.col("lr") / pl.col("weight_decay")).sqrt()
    )
    return fit_exponent(decayed, x="sqrt_lr_over_wd", stat=stat, by=by, level=level)


def adamw_timescales(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (runs or probe rows with settings) with ``timescales = steps * lr * wd``:
    how many AdamW timescales ``tau_iter = 1 / (lr * wd)`` the run trained for (Wang &
    Aitchison 2024, "How to set AdamW's weight decay as you scale model and dataset size").

    The per-step decay is ``lr * wd`` only where no width rule rescales it: on every tensor
    at the base width, and on every tensor at every width under ``weight_decay_scaling =
    "coupled"`` (the rule that holds ``lr * wd`` fixed). Elsewhere a tensor's own timescale
    differs by its LR and WD multipliers, so keep the rows this count is exact for.
    """
    return frame.with_columns(
        timescales=pl.col("steps") * pl.col("lr") * pl.col("weight_decay")
    )


def width_table(
    frame: pl.DataFrame,
    *,
    stat: str = "cond_ratio",
    step: int | None = None,
    by: tuple[str, ...] = ("parametrization",),
) -> pl.DataFrame:
    """Seed-mean ``stat`` per ``by``, layer and width at ``step`` (default: the last),
    and its ``ratio`` to the smallest width's value: near 1 everywhere when the
    quantity is width-independent. Rows follow :func:`layer_order`."""
    check_choice("stat", stat, SUMMARY_STATS)
    rows = summary(frame).filter(pl.col("stat") == stat)
    if rows.height == 0:
        raise InputError(f"stat={stat!r} has no rows in the frame")
    step = int(rows["step"].max()) if step is None else step
    keys = [c for c in by if c in rows.columns]
    mean = (
        rows.filter(pl.col("step") == step, pl.col("value").is_finite())
        .group_by(*keys, "layer", "role", "width")
        .agg(pl.col("value").mean())
    )
    order = {layer: i for i, layer in enumerate(layer_order(mean))}
    smallest = pl.col("value").sort_by("width").first().over(*keys, "layer")
    return (
        mean.with_columns(ratio=pl.col("value") / smallest, step=pl.lit(step, dtype=pl.Int64))
        .with_columns(order=pl.col("layer").replace_strict(order, return_dtype=pl.Int64))
        .sort(*keys, "order", "width")
        .drop("order")
    )


def optimal_lr_wd(runs: pl.DataFrame, *, loss: str = "final_train_loss") -> pl.DataFrame:
    """Grid optimum of the seed-mean ``loss`` over (LR, weight decay) per rule and width.

    Columns: ``parametrization``, ``optimizer``, ``weight_decay_scaling``,
    ``width``, ``lr_opt``, ``weight_decay_opt``, ``loss_opt``, ``grid`` (points
    with a finite loss). Diverged runs never count.
    """
    keys = ["parametrization", "optimizer", "weight_decay_scaling", "width"]
    ok = (pl.col("status") == "ok") & pl.col(loss).is_finite()
    cells = (
        runs.filter(ok).group_by(*keys, "lr", "weight_decay").agg(pl.col(loss).mean().alias("loss"))
    )
    return (
        cells.sort("loss")
        .group_by(keys)
        .agg(
            pl.col("lr").first().alias("lr_opt"),
            pl.col("weight_decay").first().alias("weight_decay_opt"),
            pl.col("loss").first().alias("loss_opt"),
            pl.len().alias("grid"),
        )
        .sort(keys)
    )


def weight_decay_rules(
    runs: pl.DataFrame,
    probes: pl.DataFrame,
    *,
    role: str = "hidden",
    level: float = 0.95,
    loss: str = "final_train_loss",
) -> pl.DataFrame:
    """Which weight-decay rule keeps ``sigma_max`` and the optimal (LR, WD) flat in width?

    Per ``weight_decay_scaling``: the exponent of ``sigma_max`` against width at
    the last step (each run's geometric mean over its ``role`` matrices, one
    point per run), at the (LR, WD) that is loss-optimal at the smallest width
    (the transferred pair), with its ``level`` interval; and the drift of the
    loss-optimal LR and WD (slopes of their log2 against log2 width; 0 is
    perfect transfer). ``probes`` is :func:`with_settings` output; ``runs`` the
    store's runs of the study; ``loss`` the loss the optima minimise
    (:data:`DECAY_OBJECTIVE` for a grid around the regularisation optimum).

    Columns: ``weight_decay_scaling``, ``lr``, ``weight_decay`` (the transferred
    pair), ``sigma_exponent``, ``sigma_exponent_lo``, ``sigma_exponent_hi``,
    ``lr_drift``, ``weight_decay_drift``, ``widths``.
    """
    optima = optimal_lr_wd(runs, loss=loss)
    base = optima.sort("width").group_by("weight_decay_scaling", maintain_order=True).first()
    last = probes.filter(
        pl.col("role") == role,
        pl.col("step") == pl.col("steps"),
        pl.col("stat") == "sigma_max",
        pl.col("value") > 0,
    )
    out = []
    for row in base.iter_rows(named=True):
        rule = row["weight_decay_scaling"]
        per_run = (
            last.filter(
                pl.col("weight_decay_scaling") == rule,
                pl.col("lr") == row["lr_opt"],
                pl.col("weight_decay") == row["weight_decay_opt"],
            )
            .group_by("run_id", "width")
            .agg(pl.col("value").log().mean().exp(), stat=pl.lit("sigma_max"))
        )
        fit = fit_exponent(per_run, by=(), level=level)
        exponent = fit.row(0, named=True) if fit.height else {}
        mine = optima.filter(pl.col("weight_decay_scaling") == rule)
        x = np.log2(mine["width"].to_numpy().astype(float))
        wd = mine["weight_decay_opt"].to_numpy()
        out.append(
            {
                "weight_decay_scaling": rule,
                "lr": row["lr_opt"],
                "weight_decay": row["weight_decay_opt"],
                "sigma_exponent": exponent.get("exponent", math.nan),
                "sigma_exponent_lo": exponent.get("exponent_lo", math.nan),
                "sigma_exponent_hi": exponent.get("exponent_hi", math.nan),
                "lr_drift": fit_slope(x, np.log2(mine["lr_opt"].to_numpy()))[0],
                "weight_decay_drift": fit_slope(x, np.log2(wd))[0] if (wd > 0).all() else math.nan,
                "widths": mine.height,
            }
        )
    return pl.DataFrame(out)
