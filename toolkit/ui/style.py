"""Paper figure styles as plain data, and exact, reproducible figure export.

A venue is a frozen :class:`Venue` in :data:`VENUES`: text widths in inches,
read from the venue's LaTeX style file, and the font sizes (pt) at which
figure text matches the paper's small print when the figure is included at
100% (``\\includegraphics`` without ``width=``):

======= =========================== ========= ======= ==== =====
venue   style file                  column in full in base small
======= =========================== ========= ======= ==== =====
neurips ``neurips_20xx.sty``        5.5       5.5     9    8
iclr    ``iclr20xx_conference.sty`` 5.5       5.5     9    8
icml    ``icml20xx.sty``            3.25      6.75    9    8
aistats ``aistats20xx.sty``         3.25      6.75    9    8
jmlr    ``jmlr2e.sty``              6.0       6.0     10   9
======= =========================== ========= ======= ==== =====

NeurIPS and ICLR set one 5.5 in column; ICML and AISTATS set a 6.75 in text
block as two 3.25 in columns with a 0.25 in gap; JMLR sets one 6.0 in column.
For single-column venues ``column`` and ``full`` are both the text width. All
five use 10 pt body text except JMLR (11 pt); ``base`` (labels, titles) is
LaTeX's ``\\small`` and ``small`` (ticks, legends) its ``\\footnotesize`` at
that body size.

:func:`rc` turns a venue into an rcParams dict to read, override and use as
``with plt.rc_context(rc("icml")):``. :func:`export` writes PDF, SVG and PNG
files with the requested size, embedded TrueType (Type 42) fonts, no
timestamps or version strings (the same figure gives byte-identical files,
so ``SOURCE_DATE_EPOCH`` has nothing to set), and atomically (a failed export
leaves any existing file as it was).

:func:`ordered` is the order series, panels, legends and options are shown in:
by meaning where a column has one (:data:`MEANING_ORDER`), else sorted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import polars as pl
from matplotlib.figure import Figure

from toolkit.analysis.spectra import layer_order
from toolkit.errors import InputError, check_choice, check_positive
from toolkit.io import write_all_atomically

GOLDEN = (math.sqrt(5) - 1) / 2
"""Default panel height / panel width, about 0.618."""

WIDTHS = ("column", "full")
"""Allowed ``width`` names: one column, or the whole text block."""

FORMATS = ("pdf", "svg", "png")
"""File formats :func:`export` writes."""

_TIMES = ("Times New Roman", "Times", "Nimbus Roman", "TeX Gyre Termes", "STIXGeneral")
_COMPUTER_MODERN = ("CMU Serif", "Latin Modern Roman", "Computer Modern Roman", "cmr10")


@dataclass(frozen=True)
class Venue:
    """Page geometry and type of one venue.

    Args:
        column: width of one text column, inches.
        full: width of the whole text block, inches (equals ``column`` for
            single-column venues).
        base: font size of axis labels and titles, pt.
        small: font size of tick labels and legends, pt.
        serif: serif font families, first installed one wins (matplotlib
            ships ``STIXGeneral``, a Times look-alike, and ``cmr10``).
        mathtext: ``mathtext.fontset`` matching the body font.
    """

    column: float
    full: float
    base: float
    small: float
    serif: tuple[str, ...] = _TIMES
    mathtext: str = "stix"


VENUES: dict[str, Venue] = {
    "neurips": Venue(column=5.5, full=5.5, base=9, small=8),
    "iclr": Venue(column=5.5, full=5.5, base=9, small=8),
    "icml": Venue(column=3.25, full=6.75, base=9, small=8),
    "aistats": Venue(column=3.25, full=6.75, base=9, small=8),
    "jmlr": Venue(column=6.0, full=6.0, base=10, small=9, serif=_COMPUTER_MODERN, mathtext="cm"),
}
"""Venue presets by name; see the module docstring for sources."""

# Part of every rc(), and forced by export whatever the caller's rcParams:
# TrueType fonts embedded in PDF/PS (Type 42; some publishers reject Type 3),
# SVG text as paths (SVG cannot embed fonts, so this looks the same
# everywhere) and a fixed salt for SVG element ids (otherwise random on every
# save).
_EXPORT_RC: dict[str, Any] = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "toolkit",
}

# Per-format metadata without dates or version strings.
_METADATA: dict[str, dict[str, Any]] = {
    "pdf": {"Creator": "toolkit", "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": "toolkit", "Date": None},
    "png": {"Software": None},
}


MEANING_ORDER: dict[str, tuple[str, ...]] = {
    "parametrization": ("sp", "ntk", "mf", "mup"),
    "depth_rule": ("none", "depth-mup", "completep"),
}
"""Named values in the order a reader compares them: the standard parametrization
before the ones that fix it (SP, NTK, mean-field, muP), no depth scaling before the
depth rules (depth-muP, CompleteP). Values not listed follow, alphabetically."""


def ordered(frame: pl.DataFrame, column: str) -> list:
    """The distinct values of ``frame[column]`` in the order they are shown.

    Layers go input to readout (:func:`toolkit.analysis.spectra.layer_order`, by the
    ``role`` column, hidden layers numbered in order); a column of
    :data:`MEANING_ORDER` follows it; anything else is sorted (numbers by value).
    """
    if column == "layer" and "role" in frame.columns:
        return layer_order(frame.select("layer", "role"))
    values = frame[column].unique().drop_nulls().sort().to_list()
    meaning = MEANING_ORDER.get(column, ())
    rank = {value: i for i, value in enumerate(meaning)}
    return sorted(values, key=lambda value: rank.get(value, len(meaning)))


def _venue(venue: str) -> Venue:
    check_choice("venue", venue, VENUES)
    return VENUES[venue]


def text_width(venue: str = "neurips", width: str = "column") -> float:
    """Width in inches of ``venue``'s ``width`` (``"column"`` or ``"full"``)."""
    preset = _venue(venue)
    check_choice("width", width, WIDTHS)
    return preset.column if width == "column" else preset.full


def figsize(
    venue: str = "neurips",
    width: str = "column",
    nrows: int = 1,
    ncols: int = 1,
    height_ratio: float = GOLDEN,
) -> tuple[float, float]:
    """Figure ``(width, height)`` in inches for a grid of panels.

    The width is the venue's ``width``; the height makes every one of the
    ``nrows x ncols`` panels ``height_ratio`` times as tall as it is wide
    (ignoring the space taken by labels and gaps).
    """
    w = text_width(venue, width)
    check_positive("nrows", nrows, integer=True)
    check_positive("ncols", ncols, integer=True)
    check_positive("height_ratio", height_ratio)
    return w, w * height_ratio * nrows / ncols


def rc(
    venue: str = "neurips",
    *,
    width: str = "column",
    nrows: int = 1,
    ncols: int = 1,
    height_ratio: float = GOLDEN,
) -> dict[str, Any]:
    """rcParams for a figure in ``venue``: a new plain dict on every call.

    Sets the figure size (:func:`figsize`), serif fonts and sizes (pt)
    matching the venue (tick labels in math text, in the same font as
    formulas), constrained layout (so labels fit inside the exact size),
    ``savefig.bbox: "standard"`` (a tight bbox would change the size)
    and the font embedding :func:`export` uses (Type 42 in PDF/PS, text as
    paths in SVG).
    """
    preset = _venue(venue)
    return {
        "figure.figsize": figsize(venue, width, nrows, ncols, height_ratio),
        "figure.constrained_layout.use": True,
        "font.family": "serif",
        "font.serif": list(preset.serif),
        "mathtext.fontset": preset.mathtext,
        "axes.formatter.use_mathtext": True,
        "font.size": preset.base,
        "axes.labelsize": preset.base,
        "axes.titlesize": preset.base,
        "figure.titlesize": preset.base,
        "xtick.labelsize": preset.small,
        "ytick.labelsize": preset.small,
        "legend.fontsize": preset.small,
        "legend.title_fontsize": preset.small,
        "savefig.bbox": "standard",
        **_EXPORT_RC,
    }


def _targets(path: Path, formats: tuple[str, ...] | None) -> list[tuple[str, Path]]:
    """``(format, file)`` pairs; a known suffix of ``path`` is replaced, others kept."""
    suffix = path.suffix[1:].lower()
    if formats is None:
        fmt = suffix or "pdf"
        check_choice("format", fmt, FORMATS)
        return [(fmt, path if suffix else path.with_name(f"{path.name}.{fmt}"))]
    if isinstance(formats, str) or not formats:
        names = ", ".join(map(repr, FORMATS))
        raise InputError(f"formats={formats!r} must be a non-empty tuple of {names}")
    for fmt in formats:
        check_choice("format", fmt, FORMATS)
    stem = path.with_suffix("") if suffix in FORMATS else path
    return [(fmt, stem.with_name(f"{stem.name}.{fmt}")) for fmt in dict.fromkeys(formats)]


def export(
    fig: Figure,
    path: str | os.PathLike[str],
    *,
    formats: tuple[str, ...] | None = None,
    venue: str | None = None,
    width: str | None = None,
    dpi: float = 300,
) -> list[Path]:
    """Write ``fig`` to ``path`` as PDF, SVG and/or PNG; return the files written.

    Args:
        fig: the figure; left as it was (size included).
        path: output file. With ``formats=None`` its suffix is the format
            (no suffix: PDF). With ``formats`` given, a ``.pdf/.svg/.png``
            suffix is replaced by each format's, any other name gets it
            appended.
        formats: any of ``"pdf"``, ``"svg"``, ``"png"``.
        venue: key of :data:`VENUES`; if given, the figure is resized to the
            venue's ``width`` keeping its aspect ratio, and saved without a
            tight bbox, so the file is exactly that size (PDF page
            ``width * 72`` pt wide, PNG ``width * dpi`` pixels wide).
            Without it the figure keeps its size and ``savefig.bbox`` applies.
        width: ``"column"`` (default with a venue) or ``"full"``; needs ``venue``.
        dpi: dots per inch of PNGs and of rasterized parts of PDF/SVG.

    PDFs embed TrueType fonts (Type 42), SVGs draw text as paths. No dates or
    version strings are written, so the same figure gives byte-identical
    files. Each file is first rendered to a temporary file beside it; only
    when every format has rendered are they moved into place, so a failure
    leaves existing files untouched. The directory must exist.
    """
    if width is not None and venue is None:
        raise InputError(f"width={width!r} needs a venue, one of {', '.join(map(repr, VENUES))}")
    size = None if venue is None else text_width(venue, width or "column")
    check_positive("dpi", dpi)
    targets = _targets(Path(path), formats)

    original = tuple(fig.get_size_inches())
    options = dict(_EXPORT_RC)
    if size is not None:
        fig.set_size_inches(size, size * original[1] / original[0])
        options["savefig.bbox"] = "standard"

    def render(fmt: str):
        return lambda handle: fig.savefig(handle, format=fmt, dpi=dpi, metadata=_METADATA[fmt])

    try:
        with mpl.rc_context(options):
            write_all_atomically({target: render(fmt) for fmt, target in targets})
    finally:
        fig.set_size_inches(original)
    return [target for _, target in targets]
