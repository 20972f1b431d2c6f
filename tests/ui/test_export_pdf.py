"""Every explorer view exported at every venue and width is a well-formed page.

Read back from the PDF itself (pdfminer.six, the ``dev`` extra): the page is the venue's
text width wide, every font is embedded, no glyph lies outside the page, and no two
pieces of text overlap.
The views are those of the notebooks' explorers on the shipped stores, and a small live
coordinate check.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

pdfminer = pytest.importorskip("pdfminer", reason="pdfminer.six (the dev extra) reads the PDFs")

from pdfminer.high_level import extract_pages  # noqa: E402
from pdfminer.layout import LTChar, LTContainer  # noqa: E402
from pdfminer.pdfdocument import PDFDocument  # noqa: E402
from pdfminer.pdfpage import PDFPage  # noqa: E402
from pdfminer.pdfparser import PDFParser  # noqa: E402
from pdfminer.pdftypes import resolve1  # noqa: E402

from toolkit.ui.style import VENUES, WIDTHS, text_width  # noqa: E402

pytestmark = pytest.mark.slow

SWEPT = ("output_alpha", "init_sigma")
"""The hyperparameters notebook 08's explorer switches between."""
POINTS_PER_INCH = 72.0
PAGE_TOLERANCE = 0.5
"""Points a page may differ from the venue's width, and a glyph may reach past the edge."""
OVERLAP = 0.2
"""Largest share of the smaller glyph's box that two glyphs of different text may share."""


def _glyphs(item) -> list[LTChar]:
    if isinstance(item, LTChar):
        return [item] if item.get_text().strip() else []
    if isinstance(item, LTContainer):
        return [glyph for child in item for glyph in _glyphs(child)]
    return []


def _fonts(path: Path) -> dict[str, bool]:
    """Every font the page uses (its base name) and whether it is embedded."""
    with path.open("rb") as handle:
        document = PDFDocument(PDFParser(handle))
        fonts = {}
        for page in PDFPage.create_pages(document):
            for ref in (resolve1(page.resources.get("Font")) or {}).values():
                font = resolve1(ref)
                fonts[str(font.get("BaseFont"))] = _embedded(font)
        return fonts


def _embedded(font: dict) -> bool:
    subtype = getattr(font.get("Subtype"), "name", font.get("Subtype"))
    if subtype == "Type3":  # glyphs are drawing procedures inside the file
        return "CharProcs" in font
    if subtype == "Type0":
        font = resolve1(resolve1(font["DescendantFonts"])[0])
    descriptor = resolve1(font.get("FontDescriptor")) or {}
    return any(key in descriptor for key in ("FontFile", "FontFile2", "FontFile3"))


def _box(glyph: LTChar) -> tuple[float, float, float, float]:
    """The glyph's box from its baseline: ``-0.2`` to ``0.75`` em across, its advance
    along. (pdfminer's box starts at the font's descent, which for TeX's symbol fonts is
    most of an em below the baseline: a minus sign would seem to reach the line below.)"""
    a, b, c, d, e, f = glyph.matrix
    det = a * d - b * c
    corners = [(glyph.x0, glyph.y0), (glyph.x1, glyph.y1)]
    text_y = [(-b * (x - e) + a * (y - f)) / det for x, y in corners]
    em = abs(text_y[1] - text_y[0])  # pdfminer's box is one em high in text space
    points = [(x, y) for x in (0.0, glyph.adv) for y in (-0.2 * em, 0.75 * em)]
    xs = [a * x + c * y + e for x, y in points]
    ys = [b * x + d * y + f for x, y in points]
    return min(xs), min(ys), max(xs), max(ys)


def _overlap(a: LTChar, b: LTChar) -> float:
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _box(a), _box(b)
    width, height = min(ax1, bx1) - max(ax0, bx0), min(ay1, by1) - max(ay0, by0)
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
    return width * height / smaller if smaller > 0 else 0.0


def page_problems(path: Path, *, width_in: float) -> list[str]:
    """What is wrong with the one-page PDF at ``path`` (empty when it is well-formed)."""
    problems = []
    (page,) = list(extract_pages(path, laparams=None))
    if abs(page.width - width_in * POINTS_PER_INCH) > PAGE_TOLERANCE:
        problems.append(f"page is {page.width / 72:.3f} in wide, the venue's width {width_in}")
    for name, embedded in _fonts(path).items():
        if not embedded:
            problems.append(f"font {name} is not embedded")
    glyphs = _glyphs(page)
    if not glyphs:
        problems.append("no text on the page")
    for glyph in glyphs:
        x0, y0, x1, y1 = _box(glyph)
        if (x0 < -PAGE_TOLERANCE or y0 < -PAGE_TOLERANCE or x1 > page.width + PAGE_TOLERANCE
                or y1 > page.height + PAGE_TOLERANCE):  # fmt: skip
            problems.append(f"{glyph.get_text()!r} at {_box(glyph)} is outside the page")
    lines = _text_lines(glyphs)
    for line, other in itertools.combinations(lines, 2):
        for a, b in itertools.product(line, other):
            if _overlap(a, b) > OVERLAP:
                problems.append(f"{_text(line)!r} overlaps {_text(other)!r}")
                break
    return problems


def _text(glyphs: list[LTChar]) -> str:
    return "".join(glyph.get_text() for glyph in glyphs)


def _text_lines(glyphs: list[LTChar]) -> list[list[LTChar]]:
    """Glyphs grouped into runs of one string: same size and orientation, each glyph
    starting where the previous one ends (matplotlib writes a string glyph after glyph)."""
    runs: list[list[LTChar]] = []
    for glyph in glyphs:
        last = runs[-1][-1] if runs else None
        if last is not None and last.matrix[:4] == glyph.matrix[:4] and _follows(last, glyph):
            runs[-1].append(glyph)
        else:
            runs.append([glyph])
    return runs


def _follows(a: LTChar, b: LTChar) -> bool:
    """``b`` continues the string ``a`` belongs to (along its writing direction)."""
    along = a.adv * 1.5 + 1.0
    if a.upright:
        return abs(b.y0 - a.y0) < a.size and -1.0 <= b.x0 - a.x0 <= along + a.width
    return abs(b.x0 - a.x0) < a.size and -1.0 <= abs(b.y0 - a.y0) <= along + a.height


def _explorers():
    """``(name, build, views)`` of every explorer in the notebooks: ``build()`` makes the
    explorer, ``views`` the control values that pick each of its views."""
    from toolkit.analysis.intrinsic import load_measurements
    from toolkit.paths import shipped
    from toolkit.ui import widgets as ui
    from toolkit.ui.coord_check_explorer import CoordCheckExplorer
    from toolkit.ui.explorer import StudyData

    transfer = [{"view": view} for view in ("curves", "optimum", "regret")]
    spectra = [{"view": view} for view in ui.SPECTRA_VIEWS]
    intrinsic = [{"view": view} for view in ui.INTRINSIC_VIEWS]
    return [
        ("width", lambda: ui.transfer_explorer(StudyData(shipped("width_transfer")),
                                               hue="width", col="parametrization"), transfer),
        ("depth", lambda: ui.transfer_explorer(StudyData(shipped("depth_transfer")), hue="depth",
                                               col="depth_rule", fixed=()), transfer),
        ("horizon", lambda: ui.transfer_explorer(StudyData(shipped("horizon")), hue="steps",
                                                 col="parametrization", fixed=()), transfer),
        ("transformer", lambda: ui.transfer_explorer(
            StudyData(shipped("transformer_transfer")), hue="width", col="parametrization",
            fixed=("optimizer", "depth", "depth_rule")), transfer),
        ("hyperparameters", lambda: ui.transfer_explorer(
            StudyData(shipped("hyperparameter_transfer")), hue="width", col="parametrization",
            hyperparameters=SWEPT), [{"hyperparameter": x, **view} for x in SWEPT
                                     for view in transfer]),
        ("weight decay", lambda: ui.heatmap_explorer(StudyData(shipped("weight_decay_transfer")),
                                                     row="weight_decay_scaling"), [{}]),
        ("spectra", lambda: ui.spectra_explorer(StudyData(shipped("spectra")), study="spectra"),
         spectra),
        ("intrinsic", lambda: ui.intrinsic_explorer(load_measurements()), intrinsic),
        ("coord check", lambda: CoordCheckExplorer(widths=(16, 32, 64), seeds=2), [{}]),
    ]  # fmt: skip


EXPLORERS = _explorers()


@pytest.mark.parametrize(("name", "build", "views"), EXPLORERS, ids=[e[0] for e in EXPLORERS])
def test_every_view_exports_a_well_formed_page_at_every_venue_and_width(
    name, build, views, tmp_path
):
    explorer = build()
    explorer.format.value = "pdf"
    failures = []
    for values, venue, width in itertools.product(views, sorted(VENUES), WIDTHS):
        explorer.select(**values)
        assert not explorer.message, f"{name} {values}: {explorer.message}"
        explorer.venue.value, explorer.column.value = venue, width
        (path,) = explorer.export(tmp_path)
        for problem in page_problems(path, width_in=text_width(venue, width)):
            failures.append(f"{name} {values} {venue} {width}: {problem}")
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} problems)"
