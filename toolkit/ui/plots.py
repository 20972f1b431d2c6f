"""Figures: a tidy polars frame and column names in, a matplotlib Figure out.

No function here trains or loads anything. Every function takes ``fig=`` to draw
into an existing figure (cleared first) instead of a new one. The figures share
one layout (:class:`toolkit.ui.layout.Layout`): panels, one per value of ``col``, one
colour per value of ``hue``, a legend and a title, on screen or laid out for a page
(:func:`toolkit.ui.layout.page`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from toolkit.analysis.claims import band
from toolkit.errors import InputError
from toolkit.ui.layout import CATEGORICAL, Layout


def coord_check_plot(frame: pl.DataFrame, *, stat: str = "l1", x: str = "width",
                     hue: str = "layer", col: str = "step", title: str | None = None,
                     fig: Figure | None = None) -> Figure:  # fmt: skip
    """Activation size vs width (log-log), one panel per step, one line per layer.

    ``frame``: :func:`toolkit.studies.coord_check.coord_check` output; flat lines are what
    muP promises for hidden layers. Diverged points are crosses (inf/NaN at the top edge),
    their panel naming the widths that diverged."""
    rows = frame.filter(pl.col("stat") == stat).sort(col, hue, x)
    layout = Layout.facets(rows, col=col, hue=hue, palette=CATEGORICAL, width=2.6, height=2.6,
                           fig=fig)  # fmt: skip
    finite = rows.filter(pl.col("value").is_finite(), pl.col("value") > 0)["value"]
    top = float(finite.max()) * 2 if finite.len() else 1.0
    for ax, panel, here in layout.panel_rows(rows):
        for layer, color, line in layout.series(here, by=x):
            ax.plot(line[x], line["value"], marker="o", ms=3, color=color, label=layer)
            bad = line.filter("diverged")
            ax.scatter(bad[x], np.nan_to_num(bad["value"].to_numpy(), nan=top, posinf=top),
                       marker="x", s=40, color=color, zorder=3)  # fmt: skip
        if here["diverged"].any():
            widths = ", ".join(str(w) for w in here.filter("diverged")[x].unique().sort())
            ax.text(0.03, 0.97, f"x diverged: {x} {widths}", transform=ax.transAxes, va="top",
                    fontsize="small", color="crimson")  # fmt: skip
        ax.set(yscale="log", title=f"{col} {panel}", xlabel=x)
        ax.set_xscale("log", base=2)
    layout.axes[0].set_ylabel(f"{stat} of activations")
    return layout.finish(title, legend="middle", legend_title=False)


def transfer_curves(
    curves: pl.DataFrame,
    *,
    x: str = "log2_lr",
    y: str = "loss_mean",
    hue: str = "width",
    col: str | None = "parametrization",
    optima: pl.DataFrame | None = None,
    ylabel: str = "train loss",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Loss against log2 LR, one line per ``hue`` value (sequential palette), one panel per
    ``col`` value with a shared y axis.

    ``curves`` is :func:`toolkit.analysis.optima.lr_curves` output (its ``diverged``
    rows are drawn as crosses along the top of the panel, not dropped).
    ``optima`` (:func:`toolkit.analysis.optima.optimal_lr`) adds a star at each
    optimum with its interval as a horizontal bar, both in the series' colour. Any other
    hyperparameter draws the same way: ``x="log2_<name>"`` with
    :func:`~toolkit.analysis.optima.hyperparameter_curves` and
    :func:`~toolkit.analysis.optima.optimal_hyperparameter` frames of ``<name>``.
    """
    layout = Layout.facets(curves, col=col, hue=hue, width=3.2, height=2.6, fig=fig)
    finite = curves.filter(~pl.col("diverged"))[y]
    top = float(finite.quantile(0.98)) if finite.len() else 1.0
    bottom = float(finite.min()) if finite.len() else 0.0
    top = top + 0.08 * (top - bottom) if top > bottom else bottom + 1.0
    for ax, panel, here in layout.panel_rows(curves):
        stars, bars = [], []  # one artist each per panel: a redraw costs ~1 ms per artist
        for value, color, line in layout.series(here, by=x):
            ok = line.filter(~pl.col("diverged"))
            ax.plot(ok[x], ok[y], marker="o", ms=3, lw=1.4, color=color, label=str(value))
            if (bad := line.filter(pl.col("diverged"))).height:
                ax.scatter(bad[x], [top] * bad.height, marker="x", s=22, color=color)
            if optima is None:
                continue
            where = [pl.col(hue) == value] + ([] if col is None else [pl.col(col) == panel])
            for row in optima.filter(*where).iter_rows(named=True):
                if row[f"{x}_opt"] is None:
                    continue
                stars.append((row[f"{x}_opt"], row["loss_opt"], color))
                lo, hi = row[f"{x}_lo"], row[f"{x}_hi"]
                if lo is not None and hi is not None:
                    bars.append(([(lo, row["loss_opt"]), (hi, row["loss_opt"])], color))
        if bars:  # each optimum's interval, a horizontal bar in its series' colour
            ax.add_collection(LineCollection([b for b, _ in bars], colors=[c for _, c in bars],
                                             linewidths=1.2, zorder=4))  # fmt: skip
        if stars:
            ax.scatter([s[0] for s in stars], [s[1] for s in stars], marker="*", s=80,
                       c=[s[2] for s in stars], edgecolors="black", linewidths=0.5,
                       zorder=5)  # fmt: skip
        ax.set(xlabel=f"log2 {x.removeprefix('log2_')}", title=str(panel) if col else None)
        ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.04 * (top - bottom))
    layout.axes[0].set_ylabel(ylabel)
    return layout.finish(title)


def optimum_vs_size(
    optima: pl.DataFrame,
    *,
    x: str = "width",
    hue: str = "parametrization",
    drift: pl.DataFrame | None = None,
    y: str = "log2_lr",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Optimal log2 LR against log2 ``x``, one series per ``hue``.

    Measured optima (``fit == "ok"``) are dots with intervals; censored ones (grid edge)
    open triangles at the bound, pointing to the optimum's side; unfitted ones open
    circles at the grid minimum. Each ``drift`` line (:func:`~toolkit.analysis.transfer.drift`)
    is drawn in its series' colour with its slope interval as label and band. Another
    hyperparameter's optima (:func:`~toolkit.analysis.optima.optimal_hyperparameter`)
    draw with ``y="log2_<name>"``."""
    layout = Layout.one_panel(optima, hue=hue, fig=fig)
    ax = layout.ax
    for value, color in layout.colors.items():
        rows = optima.filter(pl.col(hue) == value, pl.col(f"{y}_opt").is_not_null()).sort(x)
        measured = rows.filter(pl.col("fit") == "ok")
        sizes = np.log2(measured[x].to_numpy().astype(float))
        optimum = measured[f"{y}_opt"].to_numpy()
        lo = measured[f"{y}_lo"].fill_null(np.nan).to_numpy()
        hi = measured[f"{y}_hi"].fill_null(np.nan).to_numpy()
        ax.errorbar(sizes, optimum, yerr=[np.nan_to_num(optimum - lo), np.nan_to_num(hi - optimum)],
                    fmt="o", ms=4, capsize=2, color=color, label=str(value))  # fmt: skip
        for side, marker in (("below", "v"), ("above", "^")):
            bounds = rows.filter(pl.col("censored") == side)
            ax.plot(np.log2(bounds[x].to_numpy().astype(float)), bounds[f"{y}_grid"].to_numpy(),
                    marker, ms=6, mfc="none", color=color, ls="none")  # fmt: skip
        unfitted = rows.filter(pl.col("fit") != "ok", pl.col("censored").is_null())
        ax.plot(np.log2(unfitted[x].to_numpy().astype(float)), unfitted[f"{y}_grid"].to_numpy(),
                "o", ms=5, mfc="none", color=color, ls="none")  # fmt: skip
        lines = [] if drift is None else drift.filter(
            pl.col(hue) == value, pl.col("axis") == x, pl.col("slope").is_not_null()
        ).iter_rows(named=True)  # fmt: skip
        for line in lines:
            span = np.log2(rows[x].to_numpy().astype(float))
            grid = np.linspace(span.min(), span.max(), 50)
            label = f"{value}: slope {line['slope']:+.2f}"
            if line["slope_lo"] is not None and np.isfinite(line["slope_lo"]):
                label += f" [{line['slope_lo']:+.2f}, {line['slope_hi']:+.2f}]"
                pivot = sizes.mean()
                mid = line["intercept"] + line["slope"] * pivot
                ax.fill_between(grid, mid + line["slope_lo"] * (grid - pivot),
                                mid + line["slope_hi"] * (grid - pivot),
                                color=color, alpha=0.15, lw=0)  # fmt: skip
            ax.plot(grid, line["intercept"] + line["slope"] * grid, color=color, lw=1, label=label)
    name = y.removeprefix("log2_")
    ax.set(xlabel=f"log2 {x}", ylabel=f"log2 optimal {'LR' if name == 'lr' else name}")
    return layout.finish(title)


def regret_vs_size(
    regret: pl.DataFrame,
    *,
    x: str = "width",
    hue: str = "parametrization",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Transfer regret (loss at the transferred LR minus the optimum's) against log2 ``x``.
    Infinite regret (divergence at the transferred LR) is drawn as a cross at the top."""
    layout = Layout.one_panel(regret, hue=hue, fig=fig)
    ax = layout.ax
    finite = regret.filter(pl.col("regret").is_finite())["regret"]
    top = float(finite.max()) * 1.1 + 1e-3 if finite.len() else 1.0
    for value, color, rows in layout.series(regret, by=x):
        sizes = np.log2(rows[x].to_numpy().astype(float))
        values = rows["regret"].to_numpy()
        ok = np.isfinite(values)
        ax.plot(sizes[ok], values[ok], marker="o", ms=4, color=color, label=str(value))
        ax.scatter(sizes[~ok], [top] * int((~ok).sum()), marker="x", color=color)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set(xlabel=f"log2 {x}", ylabel="regret (loss)", ylim=(-0.02 * top, top * 1.05))
    return layout.finish(title)


def predicted_vs_observed(
    prediction: pl.DataFrame,
    *,
    size: str = "width",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Observed loss against size with the power law fitted on the filled points, its
    prediction for the hollow (held-out) ones and the prediction interval."""
    layout = Layout.one_panel(prediction, fig=fig)
    ax = layout.ax
    rows = prediction.sort(size)
    n = rows[size].to_numpy()
    ax.plot(n, rows["predicted"], color="C0", lw=1.2, label="a N^-b + c")
    if rows["interval"].all():
        ax.fill_between(n, rows["predicted_lo"], rows["predicted_hi"], color="C0", alpha=0.15,
                        lw=0, label="prediction interval")  # fmt: skip
    fitted = rows.filter(pl.col("fitted"))
    held = rows.filter(~pl.col("fitted"))
    ax.scatter(fitted[size], fitted["loss"], color="black", s=18, label="fitted", zorder=3)
    ax.scatter(held[size], held["loss"], facecolor="white", edgecolor="black", s=22,
               label="predicted, observed", zorder=3)  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set(xlabel=size, ylabel="loss")
    return layout.finish(title)


def loss_heatmaps(
    curves: pl.DataFrame,
    *,
    x: str = "log2_lr",
    y: str = "weight_decay",
    col: str = "width",
    value: str = "loss_mean",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Loss over an (``x``, ``y``) grid, one heatmap per ``col`` value with a shared colour
    scale; the best cell of each panel is outlined. Diverged cells are blank."""
    layout = Layout.facets(curves, col=col, width=2.8, height=2.6, fig=fig)
    finite = curves[value].drop_nulls()
    vmin, vmax = float(finite.min()), float(finite.quantile(0.9))
    for ax, panel, here in layout.panel_rows(curves):
        grid = here.pivot(on=x, index=y, values=value, sort_columns=True).sort(y)
        matrix = grid.drop(y).to_numpy().astype(float)
        image = ax.imshow(matrix, origin="lower", aspect="auto", cmap="mako_r", vmin=vmin,
                          vmax=vmax)  # fmt: skip
        columns = grid.drop(y).columns
        ax.set_xticks(range(len(columns)), [f"{float(c):g}" for c in columns], fontsize="x-small")
        ax.set_yticks(range(grid.height), [f"{v:g}" for v in grid[y]], fontsize="x-small")
        if np.isfinite(matrix).any():
            i, j = np.unravel_index(np.nanargmin(matrix), matrix.shape)
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="red"))
        ax.set(title=f"{col} {panel}", xlabel=x.replace("_", " "))
    layout.axes[0].set_ylabel(y.replace("_", " "))
    layout.fig.colorbar(image, ax=layout.axes, shrink=0.8, label=value.replace("_", " "))
    return layout.finish(title, legend=None)


def esd_plot(
    density: pl.DataFrame,
    *,
    hue: str = "width",
    col: str | None = "parametrization",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Empirical spectral densities on log-log axes, one line per ``hue`` value
    (sequential palette), one panel per ``col`` value with shared axes.

    ``density`` is :func:`toolkit.analysis.spectra.esd_density` output
    (``eigenvalue``, ``density``) for one layer. A power-law tail
    ``p(lambda) ~ lambda**-alpha`` is a straight line of slope ``-alpha``.
    """
    layout = Layout.facets(density, col=col, hue=hue, width=2.9, height=2.6, fig=fig)
    for ax, panel, here in layout.panel_rows(density):
        for value, color, line in layout.series(here, by="eigenvalue"):
            ax.plot(line["eigenvalue"], line["density"], marker="o", ms=2, lw=1.2, color=color,
                    label=str(value))  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="eigenvalue of W^T W",
               title=str(panel) if col else None)  # fmt: skip
    layout.axes[0].set_ylabel("density")
    return layout.finish(title)


def intrinsic_curves(
    curves: pl.DataFrame,
    *,
    threshold: float = 0.9,
    hue: str = "width",
    col: str | None = "parametrization",
    d_int: pl.DataFrame | None = None,
    mark_d: int | None = None,
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Performance against log2 subspace dimension ``d``, one line per ``hue`` value
    (sequential palette) with its seed range, one panel per ``col`` value.

    ``curves`` is :func:`toolkit.analysis.intrinsic.performance_curves` output; the
    y axis is the fraction of the full-training baseline, so one dashed line at
    ``threshold`` serves every curve. With ``d_int``
    (:func:`toolkit.analysis.intrinsic.d_int_table` rows) each curve's ``d_int`` is
    marked where it crosses; ``mark_d`` draws a vertical line at that ``d``.
    """
    layout = Layout.facets(curves, col=col, hue=hue, width=3.0, height=2.6, fig=fig)
    for ax, panel, here in layout.panel_rows(curves):
        for value, color, line in layout.series(here, by="d"):
            log2_d = np.log2(line["d"].to_numpy().astype(float))
            ax.plot(log2_d, line["fraction"], marker="o", ms=2, lw=1.2, color=color,
                    label=str(value))  # fmt: skip
            ax.fill_between(log2_d, line["metric_lo"] / line["baseline"],
                            line["metric_hi"] / line["baseline"], color=color,
                            alpha=0.15, lw=0)  # fmt: skip
            marks = pl.DataFrame() if d_int is None else d_int.filter(pl.col(hue) == value)
            if col is not None and marks.height:
                marks = marks.filter(pl.col(col) == panel)
            for d in marks["d_int"].to_list() if marks.height else []:
                if np.isfinite(d):
                    ax.plot(np.log2(d), threshold, marker="v", ms=6, color=color)
        ax.axhline(threshold, color="0.3", ls="--", lw=0.8)
        if mark_d is not None:
            ax.axvline(np.log2(mark_d), color="0.5", ls=":", lw=1)
        ax.set(xlabel="log2 subspace d", title=str(panel) if col else None)
    layout.axes[0].set_ylabel("performance / full training")
    return layout.finish(title)


def exponent_plot(
    points: pl.DataFrame,
    fits: pl.DataFrame | None = None,
    *,
    x: str = "width",
    hue: str = "parametrization",
    ylabel: str = "sigma_max",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """A statistic against ``x`` on log2-log2 axes, one series per ``hue`` value: the
    seed mean with its seed range (``value``, ``lo``, ``hi``, as from
    :func:`toolkit.analysis.spectra.seed_mean`) and, with ``fits``
    (:func:`toolkit.analysis.spectra.fit_exponent`), the fitted power law
    ``x**k``, labelled with ``k`` and its interval."""
    layout = Layout.one_panel(points, hue=hue, fig=fig)
    ax = layout.ax
    for value, color in layout.colors.items():
        rows = points.filter(pl.col(hue) == value, pl.col("value") > 0).sort(x)
        sizes = np.log2(rows[x].to_numpy().astype(float))
        y = np.log2(rows["value"].to_numpy())
        spread = [y - np.log2(rows["lo"].to_numpy()), np.log2(rows["hi"].to_numpy()) - y]
        label = str(value)
        lines = [] if fits is None else fits.filter(pl.col(hue) == value).rows(named=True)
        for line in lines:
            if not np.isfinite(line["exponent"]):
                continue
            grid = np.linspace(sizes.min(), sizes.max(), 20)
            ax.plot(grid, line["intercept"] + line["exponent"] * grid, color=color, lw=1)
            label = f"{value}: k = {line['exponent']:+.2f}"
            if np.isfinite(line["exponent_lo"]):
                label += f" [{line['exponent_lo']:+.2f}, {line['exponent_hi']:+.2f}]"
        ax.errorbar(sizes, y, yerr=spread, fmt="o", ms=4, capsize=2, color=color, label=label)
    ax.set(xlabel=f"log2 {x}", ylabel=f"log2 {ylabel}")
    return layout.finish(title)


def ratio_heatmaps(
    table: pl.DataFrame,
    *,
    col: str = "parametrization",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Layers x widths heatmaps of a statistic relative to the smallest width, one panel
    per ``col`` value on a shared diverging colour scale (log2 of the ``ratio``; white
    is width-independent). Cells are annotated with the statistic's ``value``.

    ``table`` is :func:`toolkit.analysis.spectra.width_table` output; rows keep its
    layer order.
    """
    layers = table["layer"].unique(maintain_order=True).to_list()
    widths = table["width"].unique().sort().to_list()
    layout = Layout.facets(table, col=col, width=2.2 + 0.45 * len(widths),
                           height=1.2 + 0.35 * len(layers), fig=fig)  # fmt: skip
    logs = np.log2(table["ratio"].to_numpy())
    finite = logs[np.isfinite(logs)]
    limit = max(float(np.abs(finite).max()) if finite.size else 1.0, 0.25)
    for ax, panel, here in layout.panel_rows(table):
        ratio = np.full((len(layers), len(widths)), np.nan)
        value = np.full_like(ratio, np.nan)
        for row in here.iter_rows(named=True):
            i, j = layers.index(row["layer"]), widths.index(row["width"])
            ratio[i, j], value[i, j] = row["ratio"], row["value"]
        image = ax.imshow(np.log2(ratio), cmap="vlag", vmin=-limit, vmax=limit, aspect="auto")
        for (i, j), v in np.ndenumerate(value):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize="x-small")
        ax.set_xticks(range(len(widths)), [str(w) for w in widths], fontsize="x-small")
        ax.set_yticks(range(len(layers)), layers, fontsize="x-small")
        ax.set(title=str(panel), xlabel="width")
    layout.fig.colorbar(image, ax=layout.axes, shrink=0.8, label="log2 ratio to smallest width")
    return layout.finish(title, legend=None)


def claim_interval(
    card: pl.DataFrame,
    *,
    claim: str,
    value: str = "value",
    lo: str = "lo",
    hi: str = "hi",
    unit: str = "unit",
    title: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """One claim of the card: its number with its interval (``value``, ``lo``, ``hi``)
    against the band the claim expects (shaded; its ``target`` a dashed line), so a
    verdict reads at a glance: inside the band holds, outside does not, across an edge
    cannot tell. ``card`` is :func:`toolkit.analysis.claims.card` output; ``claim`` the
    row's ``id``. A claim without a number shows its reason instead."""
    rows = card.filter(pl.col("id") == claim)
    if rows.height != 1:
        raise InputError(f"claim={claim!r} is not a row of the card; ids: "
                         f"{', '.join(card['id'])}")  # fmt: skip
    row = rows.row(0, named=True)
    layout = Layout.one_panel(rows, fig=fig)
    ax = layout.ax
    low, high = band(row["expect"], row["target"], row["tolerance"])
    numbers = [x for x in (row[value], row[lo], row[hi], low, high, row["target"])
               if x is not None and np.isfinite(x)]  # fmt: skip
    span = (max(numbers) - min(numbers)) or 1.0
    left, right = min(numbers) - 0.3 * span, max(numbers) + 0.3 * span
    ax.axvspan(max(low, left), min(high, right), color="C2", alpha=0.2, lw=0,
               label=f"expected ({row['expect']})")  # fmt: skip
    ax.axvline(row["target"], color="grey", ls="--", lw=1)
    if np.isfinite(row[value]):
        ax.errorbar([row[value]], [0], xerr=[[row[value] - row[lo]], [row[hi] - row[value]]],
                    fmt="o", color="black", capsize=3, label="value, interval")  # fmt: skip
    else:
        ax.text(0.5, 0.5, "no number:\n" + row["reason"], transform=ax.transAxes, ha="center",
                va="center", fontsize="small", wrap=True)  # fmt: skip
    ax.set(xlim=(left, right), ylim=(-1, 1), yticks=[], xlabel=row[unit])
    figure = layout.finish(title if title is not None else f"{claim}\n{row['verdict']}")
    ax.title.set_fontsize("small")
    return figure
