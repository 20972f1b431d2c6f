"""Figures: a tidy polars frame and column names in, a matplotlib Figure out.

No function here trains or loads anything.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl
import seaborn as sns
from matplotlib.figure import Figure


def coord_check_plot(
    frame: pl.DataFrame,
    *,
    stat: str = "l1",
    x: str = "width",
    hue: str = "layer",
    col: str = "step",
    title: str | None = None,
) -> Figure:
    """Activation size vs width (log-log), one panel per step, one line per layer.

    ``frame`` is the output of :func:`toolkit.coord_check.coord_check` (columns
    ``width, layer, role, step, stat, value``). Flat lines are what muP promises
    for hidden layers.
    """
    rows = frame.filter(pl.col("stat") == stat).sort(col, hue, x)
    panels = rows[col].unique(maintain_order=True).to_list()
    layers = rows[hue].unique(maintain_order=True).to_list()
    colors = dict(zip(layers, sns.color_palette("colorblind", len(layers)), strict=True))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(2.6 * len(panels), 2.6),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        for layer in layers:
            line = rows.filter(pl.col(col) == panel, pl.col(hue) == layer)
            ax.plot(line[x], line["value"], marker="o", ms=3, color=colors[layer], label=layer)
        ax.set(xscale="log", yscale="log", title=f"{col} {panel}", xlabel=x)
        ax.set_xscale("log", base=2)
    axes[0][0].set_ylabel(f"{stat} of activations")
    axes[0][-1].legend(
        fontsize="small", frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5)
    )
    if title:
        fig.suptitle(title)
    return fig
