"""Statistics of the coordinate check: seed means, width ratios, width slopes and a verdict.

Polars in, polars out; no torch. The input is
:func:`toolkit.studies.coord_check.coord_check_seeds` output (``width, seed, layer, role,
step, stat, value, diverged``).
"""

from __future__ import annotations

import polars as pl

from toolkit.errors import InputError, check_positive

TOLERANCE = 0.1
"""Largest |slope| of log2(size) against log2(width) that counts as width-stable: a size
that changes by less than 2**0.1 ~ 1.07x per doubling of width, under 1.5x from width 64
to 4096."""

LEVEL = 0.95
"""Confidence level of the slope intervals."""

MIN_WIDTHS = 3
"""Widths a slope needs: with two, the slope is a single ratio and says nothing about a
trend."""


VERDICT_COLUMNS = ("layer", "role", "step", "slope", "slope_lo", "slope_hi", "seeds", "widths",
                   "diverged_widths", "pass", "settled", "reason")  # fmt: skip
"""The columns of :func:`verdict`, in order."""


def seed_mean(per_seed: pl.DataFrame) -> pl.DataFrame:
    """Each width's, layer's and step's value averaged over seeds.

    Returns ``width, layer, role, step, stat, value, diverged, seeds_diverged``:
    ``value`` is the plain mean (inf or NaN if any seed's value is), ``diverged`` is true
    if any seed had diverged by that step, ``seeds_diverged`` counts those seeds.
    """
    return per_seed.group_by("width", "layer", "role", "step", "stat", maintain_order=True).agg(
        pl.col("value").mean(),
        pl.col("diverged").any(),
        pl.col("diverged").sum().cast(pl.Int64).alias("seeds_diverged"),
    )


def width_ratios(frame: pl.DataFrame, *, stat: str = "l1") -> pl.DataFrame:
    """Ratio of each layer's value at each width to its value at the smallest width.

    ``frame``: :func:`seed_mean` output. Returns ``layer, role, step, width, ratio``;
    a ratio near 1 at every step is what muP promises for hidden layers.
    """
    rows = frame.filter(pl.col("stat") == stat)
    smallest = rows.filter(pl.col("width") == pl.col("width").min()).select(
        "layer", "step", pl.col("value").alias("base_value")
    )
    return (
        rows.join(smallest, on=["layer", "step"])
        .with_columns(ratio=pl.col("value") / pl.col("base_value"))
        .select("layer", "role", "step", "width", "ratio")
        .sort("layer", "step", "width")
    )


def seed_slopes(per_seed: pl.DataFrame, *, stat: str = "l1") -> pl.DataFrame:
    """Per seed, layer and step: the least-squares slope of log2(``stat``) against
    log2(width) (units: octaves of size per octave of width; 0 is width-independent,
    0.5 grows like sqrt(width)).

    Returns ``layer, role, step, seed, slope, widths, finite``; ``finite`` is false when
    a value is zero, inf or NaN (a diverged member), and ``slope`` is then null.
    """
    logs = per_seed.filter(pl.col("stat") == stat).with_columns(
        x=pl.col("width").cast(pl.Float64).log(2),
        y=pl.col("value").cast(pl.Float64).log(2),
    )
    return (
        logs.group_by("layer", "role", "step", "seed", maintain_order=True)
        .agg(
            slope=pl.cov("x", "y") / pl.col("x").var(),
            widths=pl.col("width").n_unique(),
            finite=pl.col("y").is_finite().all(),
        )
        .with_columns(slope=pl.when(pl.col("finite")).then(pl.col("slope")))
    )


def check_verdict(widths: list[int], *, tolerance: float, level: float = LEVEL) -> None:
    """Raise :class:`InputError` unless a verdict can be judged: at least
    :data:`MIN_WIDTHS` distinct widths, a positive tolerance, a level in (0, 1)."""
    if len(set(widths)) < MIN_WIDTHS:
        raise InputError(
            f"widths={widths!r}: a verdict needs at least {MIN_WIDTHS} widths to fit a slope"
        )
    check_positive("tolerance", tolerance)
    if not 0 < level < 1:
        raise InputError(f"level={level!r} must be in (0, 1)")


def verdict(
    per_seed: pl.DataFrame,
    *,
    stat: str = "l1",
    tolerance: float = TOLERANCE,
    level: float = LEVEL,
) -> pl.DataFrame:
    """Is each layer's size width-stable at each step?

    The rule is the coordinate check of Yang et al. 2021 ("Tensor Programs V", section
    7.1): under muP every input and hidden layer's coordinate size stays put as the
    width grows, at every step; the readout's must not grow. (Its initial output
    shrinks like width**-1/2 under muP, a 1/width multiplier on width-independent
    weights, and only its learned part is width-independent, so at finite width and
    early steps it may still shrink.)

    The slope of log2(``stat``) against log2(width) is fitted per seed
    (:func:`seed_slopes`); ``slope`` is their mean (the slope through the seeds' mean
    log2 size) and ``[slope_lo, slope_hi]`` its two-sided Student-t interval at ``level``
    across seeds, which covers the true slope at its nominal rate when the per-seed
    slopes scatter normally around it, whatever their spread.

    A row passes when its *point estimate* is inside the tolerance (|slope| <
    ``tolerance``; for the readout, slope < ``tolerance``) and no member diverged; it
    needs :data:`MIN_WIDTHS` widths (:func:`check_verdict`). The point estimate and not
    the whole interval is judged because the interval's half-width is ~1.6 times the seeds'
    spread at the default four seeds: a correct muP MLP, whose per-seed slopes scatter by
    up to ~0.15, would fail a whole-interval rule by chance alone. ``settled`` says
    whether the whole interval lies on the verdict's side of the tolerance; a row that is
    not settled would need more seeds to be sure. A diverged member fails its row whatever
    its slope: its sizes no longer measure width scaling.

    Returns ``layer, role, step, slope, slope_lo, slope_hi, seeds, widths,
    diverged_widths, pass, settled, reason``; ``seeds`` counts the finite per-seed slopes,
    ``diverged_widths`` lists the widths with a diverged member at that step and
    ``reason`` says why a row fails (null when it passes).
    """
    check_verdict(per_seed["width"].unique().sort().to_list(), tolerance=tolerance, level=level)
    slopes = seed_slopes(per_seed, stat=stat)
    diverged = (
        per_seed.filter(pl.col("stat") == stat, pl.col("diverged"))
        .group_by("layer", "step")
        .agg(diverged_widths=pl.col("width").unique().sort())
    )
    table = (
        slopes.group_by("layer", "role", "step", maintain_order=True)
        .agg(
            slope=pl.col("slope").mean(),
            sd=pl.col("slope").std(),
            seeds=pl.col("slope").count().cast(pl.Int64),
            widths=pl.col("widths").max().cast(pl.Int64),
        )
        .join(diverged, on=["layer", "step"], how="left")
    )
    from scipy import stats  # here, not at import: the command line reads this module's constants

    quantile = stats.t.ppf(0.5 + level / 2, df=table["seeds"].to_numpy() - 1)  # NaN below 2
    table = table.with_columns(
        half=pl.col("sd") * pl.Series(quantile) / pl.col("seeds").sqrt(),
        diverged_widths=pl.col("diverged_widths").fill_null(pl.lit([], pl.List(pl.Int64))),
    ).with_columns(
        slope_lo=pl.col("slope") - pl.col("half"), slope_hi=pl.col("slope") + pl.col("half")
    )
    readout = pl.col("role") == "output"
    slope, lo, hi = pl.col("slope"), pl.col("slope_lo"), pl.col("slope_hi")
    within = pl.when(readout).then(slope < tolerance).otherwise(slope.abs() < tolerance)
    interval_within = (
        pl.when(readout).then(hi < tolerance).otherwise((lo > -tolerance) & (hi < tolerance))
    )
    interval_outside = (
        pl.when(readout).then(lo >= tolerance).otherwise((lo >= tolerance) | (hi <= -tolerance))
    )
    listed = pl.col("diverged_widths").cast(pl.List(pl.String)).list.join(", ")
    reason = (
        pl.when(pl.col("diverged_widths").list.len() > 0)
        .then(pl.format("diverged at width {}", listed))
        .when(slope.is_null())
        .then(pl.lit("no finite slope"))
        .when(~within & readout)
        .then(pl.lit(f"slope >= {tolerance:g}: grows with width"))
        .when(~within)
        .then(pl.lit(f"|slope| >= {tolerance:g}: changes with width"))
    )
    return (
        table.with_columns(reason=reason)
        .with_columns(
            **{"pass": pl.col("reason").is_null()},
            settled=pl.when(within).then(interval_within).otherwise(interval_outside),
        )
        .select(VERDICT_COLUMNS)
        .sort("step", maintain_order=True)
    )


def diverged_members(per_seed: pl.DataFrame) -> pl.DataFrame:
    """The members that diverged: ``width, seed, step`` (the first diverged step)."""
    return (
        per_seed.filter(pl.col("diverged"))
        .group_by("width", "seed")
        .agg(pl.col("step").min())
        .sort("width", "seed")
    )


def verdict_summary(table: pl.DataFrame, *, tolerance: float = TOLERANCE) -> str:
    """One line: the overall verdict of :func:`verdict` rows ``table``, how many rows fail,
    the widths that diverged (from which step), the largest failing slope and the rule."""
    failed = table.filter(~pl.col("pass"))
    rule = (
        f"tolerance |slope| < {tolerance:g} per doubling of width (readout: slope < "
        f"{tolerance:g}) on the mean slope over {table['seeds'].max()} seeds"
    )
    if failed.height == 0:
        return f"PASS: all {table.height} layer-steps width-stable; {rule}"
    onset = (
        table.explode("diverged_widths")
        .drop_nulls("diverged_widths")
        .group_by("diverged_widths")
        .agg(pl.col("step").min())
        .sort("diverged_widths")
    )
    notes = [f"width {width} diverged from step {step}" for width, step in onset.iter_rows()]
    worst = failed.filter(pl.col("slope").is_not_null()).sort(pl.col("slope").abs()).tail(1)
    notes += [f"largest |slope| {r['slope']:+.2f} ({r['layer']}, step {r['step']})"
              for r in worst.iter_rows(named=True)]  # fmt: skip
    return f"FAIL: {failed.height} of {table.height} layer-steps fail; " + "; ".join([*notes, rule])
