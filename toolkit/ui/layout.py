"""Where a figure's panels, legend and title go: on screen, and on a page.

Every plot of :mod:`toolkit.ui.plots` is a :class:`Layout`: panels, one per value of
``col``, one colour per value of ``hue`` (both in :func:`~toolkit.ui.style.ordered`
order), a legend and a title; a single-panel figure keeps its legend inside and its
title on the axes.

* On screen, panels sit in one row at the size each plot asks for, with the legend
  right of the last panel and fixed margins (no layout pass on every redraw).
* On a page (inside :func:`page`), the figure is exactly the venue's text width wide,
  in the venue's fonts, with constrained layout. Panels keep the aspect ratio they have
  on screen but wrap into more rows where one row would make them narrower than
  :data:`MIN_PANEL_IN`; on a page narrower than :data:`LEGEND_BELOW_IN` the legend
  goes below the panels instead of beside them. The height follows from the panels,
  plus room for the title, axis labels and legend, so nothing is squeezed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import matplotlib as mpl
import matplotlib.pyplot as plt
import polars as pl
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from toolkit.ui.style import ordered, rc, text_width

SEQUENTIAL = "flare"
"""Palette for an ordered ``hue`` (widths, depths, steps)."""

CATEGORICAL = "colorblind"
"""Palette for named series (parametrizations, layers, rules)."""

MIN_PANEL_IN = 1.35
"""Narrowest panel on a page, inches: below it the panels wrap into another row."""

LEGEND_BELOW_IN = 4.5
"""Pages narrower than this (inches; one column of a two-column venue) put a facet
figure's legend below its panels."""

MAX_PANEL_HEIGHT_IN = 2.6
"""Tallest panel on a page, inches (a lone panel across a whole text block stays short)."""

_PAGE: ContextVar[float | None] = ContextVar("page_width", default=None)


@contextlib.contextmanager
def page(venue: str, width: str = "column") -> Iterator[float]:
    """Draw for ``venue``'s page: its fonts (:func:`~toolkit.ui.style.rc`), constrained
    layout and figures exactly ``width`` (``column`` or ``full``) wide; yields the width
    in inches. Figures made inside get the page layout (module docstring)."""
    inches = text_width(venue, width)
    token = _PAGE.set(inches)
    try:
        with mpl.rc_context(rc(venue, width=width)):
            yield inches
    finally:
        _PAGE.reset(token)


def _grid(n: int, page_width: float, *, legend_right: bool) -> tuple[int, int, float]:
    """Rows, columns and panel width (inches) of ``n`` panels on a page."""
    room = page_width - 0.55 - (1.0 if legend_right else 0.0)  # y label; legend beside
    ncols = max(1, min(n, math.floor(room / MIN_PANEL_IN)))
    return math.ceil(n / ncols), ncols, room / ncols


def _figure(fig: Figure | None) -> Figure:
    if fig is None:
        fig = plt.figure(layout="constrained")
    fig.clear()
    return fig


def _screen_row(fig: Figure | None, n: int, *, width: float, height: float,
                sharey: bool, margins: dict) -> tuple[Figure, list[Axes]]:  # fmt: skip
    """A row of ``n`` panels of ``width`` x ``height`` inches on screen.

    A figure that holds exactly the row this call made last time (and nothing added
    since but its title and what plots draw into panels; a message clears it) keeps
    its axes: only what was drawn in them is removed, and every property a plot sets
    is reset (titles, labels, scales, limits, autoscaling). Axes, ticks and their text
    objects are a third of the cost of a redraw, which this saves on every new setting
    of an explorer (``tests/ui/test_redraw_in_place.py`` checks the picture is the one a
    fresh figure gives).
    """
    key = (n, width, height, sharey)
    if (fig is not None and getattr(fig, "_toolkit_row", None) == key and len(fig.axes) == n
            and not fig.legends and fig.get_layout_engine() is None):  # fmt: skip
        fig.suptitle("")
        for ax in fig.axes:
            _wipe(ax)
        return fig, list(fig.axes)
    fig = _figure(fig)
    fig.set_size_inches(width * n, height)
    if fig.get_layout_engine() is None:  # fixed margins (inches): cheaper than a layout pass
        fig.subplots_adjust(**margins)
    axes = list(fig.subplots(1, n, sharey=sharey, squeeze=False)[0])
    fig._toolkit_row = key
    return fig, axes


def _wipe(ax: Axes) -> None:
    """Remove what a plot drew in ``ax`` and reset what it set, keeping the axes."""
    for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images]:
        artist.remove()
    ax.containers.clear()
    if (legend := ax.get_legend()) is not None:
        legend.remove()
    ax.set(title="", xlabel="", ylabel="")
    if ax.get_xscale() != "linear":
        ax.set_xscale("linear")
    if ax.get_yscale() != "linear":
        ax.set_yscale("linear")
    ax.ignore_existing_data_limits = True
    ax.set_autoscale_on(True)


@dataclass(frozen=True)
class Layout:
    """Panels (one per value of ``col``; one panel without it) and the colour of each
    value of ``hue``; ``single`` marks a one-panel figure (legend inside, title on the
    axes); ``legend_below`` a page layout whose legend goes under the panels."""

    fig: Figure
    axes: list[Axes]
    col: str | None
    panels: list
    hue: str | None
    colors: dict
    single: bool
    ncols: int = 1
    legend_below: bool = False

    @classmethod
    def facets(
        cls,
        frame: pl.DataFrame,
        *,
        col: str | None,
        hue: str | None = None,
        palette: str = SEQUENTIAL,
        width: float,
        height: float,
        fig: Figure | None,
    ) -> Layout:
        """One panel per value of ``col`` in the order shown (shared y axis), ``width`` x
        ``height`` inches each on screen (on a page: that aspect ratio)."""
        panels = [None] if col is None else ordered(frame, col)
        colors = _colors(frame, hue, palette)
        n, page_width = len(panels), _PAGE.get()
        if page_width is None:  # screen: one row, fixed margins unless the figure has a layout
            total = width * n
            margins = dict(left=0.75 / total, right=1 - 1.15 / total, bottom=0.5 / height,
                           top=1 - 0.55 / height, wspace=0.08)  # fmt: skip
            fig, axes = _screen_row(fig, n, width=width, height=height, sharey=True,
                                    margins=margins)  # fmt: skip
            return cls(fig, axes, col, panels, hue, colors, single=False, ncols=n)
        fig = _figure(fig)
        below = page_width < LEGEND_BELOW_IN and bool(colors)
        nrows, ncols, panel = _grid(n, page_width, legend_right=bool(colors) and not below)
        panel_height = min(panel * height / width, MAX_PANEL_HEIGHT_IN)
        legend_rows = math.ceil(len(colors) / max(1, math.floor(page_width / 0.9))) if below else 0
        fig.set_size_inches(page_width, nrows * (panel_height + 0.5) + 0.35 + 0.2 * legend_rows)
        grid = fig.subplots(nrows, ncols, sharey=True, squeeze=False)
        axes = list(grid.flat)
        for spare in axes[n:]:
            spare.remove()
        return cls(fig, axes[:n], col, panels, hue, colors, single=False, ncols=ncols,
                   legend_below=below)  # fmt: skip

    @classmethod
    def one_panel(
        cls, frame: pl.DataFrame, *, hue: str | None = None, fig: Figure | None
    ) -> Layout:
        """One 3.6 x 2.8 in panel on screen (on a page: the page's width, at most
        :data:`MAX_PANEL_HEIGHT_IN` tall), a categorical colour per value of ``hue``."""
        colors = _colors(frame, hue, CATEGORICAL)
        page_width = _PAGE.get()
        if page_width is None:
            width, height = 3.6, 2.8
            margins = dict(left=0.75 / width, right=1 - 1.15 / width, bottom=0.5 / height,
                           top=1 - 0.55 / height)  # fmt: skip
            fig, axes = _screen_row(fig, 1, width=width, height=height, sharey=False,
                                    margins=margins)  # fmt: skip
            return cls(fig, axes, None, [None], hue, colors, single=True)
        fig = _figure(fig)
        fig.set_size_inches(page_width, min(page_width * 2.8 / 3.6, MAX_PANEL_HEIGHT_IN) + 0.6)
        return cls(fig, [fig.subplots()], None, [None], hue, colors, single=True)

    @property
    def ax(self) -> Axes:
        """The only panel of a one-panel figure."""
        (ax,) = self.axes
        return ax

    def panel_rows(self, frame: pl.DataFrame) -> Iterator[tuple[Axes, object, pl.DataFrame]]:
        """Each panel's axes, its ``col`` value and the rows of ``frame`` it shows."""
        for ax, panel in zip(self.axes, self.panels, strict=True):
            yield ax, panel, frame if self.col is None else frame.filter(pl.col(self.col) == panel)

    def series(
        self, frame: pl.DataFrame, *, by: str
    ) -> Iterator[tuple[object, tuple, pl.DataFrame]]:
        """Each ``hue`` value with rows in ``frame``, its colour and its rows sorted by ``by``."""
        for value, color in self.colors.items():
            rows = frame.filter(pl.col(self.hue) == value).sort(by)
            if rows.height:
                yield value, color, rows

    def finish(
        self, title: str | None, *, legend: str | None = "top", legend_title: bool = True
    ) -> Figure:
        """Add the legend and the title; returns the figure.

        A facet figure's legend sits right of its last panel, aligned with its ``top`` or
        its ``middle`` (``None``: no legend), or below the panels on a narrow page;
        titled with ``hue`` unless ``legend_title`` is false. Its title goes above all
        panels, and the first panel's y label is repeated on every row of panels.
        """
        if self.single:
            self.ax.legend(fontsize="small", frameon=False)
            if title:
                self.ax.set_title(title)
            return self.fig
        for ax in self.axes[self.ncols :: self.ncols]:
            ax.set_ylabel(self.axes[0].get_ylabel())
        legend_name = self.hue if legend_title else None
        if legend is not None and self.legend_below:
            handles, labels = self.axes[-1].get_legend_handles_labels()
            ncols = max(1, min(len(labels), math.floor(self.fig.get_figwidth() / 0.9)))
            self.fig.legend(handles, labels, title=legend_name, loc="outside lower center",
                            ncols=ncols, fontsize="small", frameon=False)  # fmt: skip
        elif legend is not None:
            middle = legend == "middle"
            self.axes[-1].legend(
                title=legend_name, fontsize="small", frameon=False,
                loc="center left" if middle else "upper left",
                bbox_to_anchor=(1.0, 0.5 if middle else 1.0),
            )  # fmt: skip
        if title:
            self.fig.suptitle(title)
        return self.fig


def _colors(frame: pl.DataFrame, hue: str | None, palette: str) -> dict:
    """A colour per value of ``hue`` in the order shown (:func:`~toolkit.ui.style.ordered`;
    none without ``hue``); the legend follows it."""
    values = [] if hue is None else ordered(frame, hue)
    return dict(zip(values, sns.color_palette(palette, len(values)), strict=True))
