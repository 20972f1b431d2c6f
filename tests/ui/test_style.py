"""Venue styles and export: exact sizes, Type 42 fonts, identical bytes, atomic files."""

from __future__ import annotations

import re
import struct

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from toolkit.ui.style import FORMATS, GOLDEN, VENUES, export, figsize, rc

matplotlib.use("Agg")

PT_PER_INCH = 72


@pytest.fixture
def fig():
    """A 4 x 3 in figure with a title, axis labels, math text and a legend."""
    figure, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 2, 3], [3, 1, 2], label="loss")
    ax.set_title(r"Loss at $\eta = 10^{-2}$")
    ax.set_xlabel("width")
    ax.set_ylabel("loss")
    ax.legend()
    yield figure
    plt.close(figure)


def _font_subtypes(pdf: bytes) -> set[str]:
    """``/Subtype`` of every ``/Type /Font`` dictionary in ``pdf``.

    Matplotlib writes object dictionaries uncompressed (only stream bodies are
    deflated), so the header of each ``N 0 obj`` up to ``stream`` is plain text.
    """
    subtypes = set()
    for body in re.findall(rb"\d+ 0 obj(.*?)endobj", pdf, re.DOTALL):
        header = body.split(b"stream", 1)[0]
        if re.search(rb"/Type\s*/Font\b", header):
            subtypes.add(re.search(rb"/Subtype\s*/(\w+)", header).group(1).decode())
    return subtypes


def _media_box(pdf: bytes) -> tuple[float, float]:
    """Page width and height in pt from the single page's ``/MediaBox``."""
    (box,) = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    return float(box[0]), float(box[1])


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels from the PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_font_helper_sees_type3(fig, tmp_path):
    with plt.rc_context({"pdf.fonttype": 3}):
        fig.savefig(tmp_path / "type3.pdf")
    assert "Type3" in _font_subtypes((tmp_path / "type3.pdf").read_bytes())


def test_pdf_embeds_truetype_fonts(fig, tmp_path):
    with plt.rc_context({"pdf.fonttype": 3}):  # export overrides the caller's setting
        (path,) = export(fig, tmp_path / "fig.pdf", venue="icml")
    subtypes = _font_subtypes(path.read_bytes())
    assert subtypes, "no font dictionaries found"
    assert subtypes <= {"TrueType", "Type0", "CIDFontType2"}, subtypes


@pytest.mark.parametrize(("venue", "width"), [("icml", "column"), ("icml", "full"), ("jmlr", None)])
def test_export_has_requested_size(fig, tmp_path, venue, width):
    inches = getattr(VENUES[venue], width or "column")
    pdf, png = export(
        fig, tmp_path / "fig", formats=("pdf", "png"), venue=venue, width=width, dpi=100
    )
    w, h = _media_box(pdf.read_bytes())
    assert w == pytest.approx(inches * PT_PER_INCH, abs=0.5)
    assert h == pytest.approx(inches * 0.75 * PT_PER_INCH, abs=0.5)  # aspect ratio kept
    png_w, png_h = _png_size(png.read_bytes())
    assert png_w == round(inches * 100)
    assert png_h == pytest.approx(inches * 0.75 * 100, abs=1)
    assert tuple(fig.get_size_inches()) == (4, 3)  # the figure itself is left as it was


def test_export_without_venue_keeps_size(fig, tmp_path):
    (path,) = export(fig, tmp_path / "fig.pdf")
    assert _media_box(path.read_bytes()) == pytest.approx((4 * 72, 3 * 72), abs=0.5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_figure_gives_identical_bytes(fig, tmp_path, fmt):
    (first,) = export(fig, tmp_path / "a", formats=(fmt,), venue="neurips", dpi=100)
    (second,) = export(fig, tmp_path / "b", formats=(fmt,), venue="neurips", dpi=100)
    assert first.read_bytes() == second.read_bytes()
    assert b"Matplotlib v" not in first.read_bytes()  # no version string in the metadata


def test_pdf_has_no_dates(fig, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # would be used if a date were written
    (path,) = export(fig, tmp_path / "fig.pdf")
    assert b"CreationDate" not in path.read_bytes() and b"ModDate" not in path.read_bytes()


@pytest.mark.parametrize("venue", VENUES)
def test_rc_is_a_plain_dict_matplotlib_accepts(venue):
    params = rc(venue, width="full", nrows=2, ncols=3)
    assert type(params) is dict
    assert params["pdf.fonttype"] == params["ps.fonttype"] == 42
    full = VENUES[venue].full
    assert params["figure.figsize"] == pytest.approx((full, full * GOLDEN * 2 / 3))
    assert figsize(venue, "full", 2, 3) == params["figure.figsize"]
    with plt.rc_context(params):
        figure = plt.figure()
        assert tuple(figure.get_size_inches()) == pytest.approx(params["figure.figsize"])
        assert plt.rcParams["pdf.fonttype"] == 42
        plt.close(figure)
    params["font.size"] = 99  # the caller's copy; the next call is fresh
    assert rc(venue)["font.size"] == VENUES[venue].base


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: rc("nips"), "venue='nips'"),
        (lambda: rc("icml", width="half"), "width='half'"),
        (lambda: figsize("icml", nrows=0), "nrows=0"),
        (lambda: figsize("icml", height_ratio=-1.0), "height_ratio=-1.0"),
        (lambda: export(Figure(), "fig.jpg"), "format='jpg'"),
        (lambda: export(Figure(), "fig", formats=("pdf", "eps")), "format='eps'"),
        (lambda: export(Figure(), "fig", formats="pdf"), "formats='pdf'"),
        (lambda: export(Figure(), "fig", formats=()), "formats=()"),
        (lambda: export(Figure(), "fig.pdf", venue="cvpr"), "venue='cvpr'"),
        (lambda: export(Figure(), "fig.pdf", venue="icml", width="double"), "width='double'"),
        (lambda: export(Figure(), "fig.pdf", width="full"), "width='full'"),
        (lambda: export(Figure(), "fig.png", dpi=0), "dpi=0"),
    ],
)
def test_bad_input_names_the_value(call, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        call()


def test_failed_export_leaves_existing_files(fig, tmp_path, monkeypatch):
    pdf, png = tmp_path / "fig.pdf", tmp_path / "fig.png"
    pdf.write_bytes(b"good pdf")
    png.write_bytes(b"good png")
    save = Figure.savefig

    def fail_on_png(self, fname, *, format, **kwargs):
        if format == "png":
            fname.write(b"half a png")
            raise RuntimeError("disk full")
        save(self, fname, format=format, **kwargs)

    monkeypatch.setattr(Figure, "savefig", fail_on_png)
    with pytest.raises(RuntimeError, match="disk full"):
        export(fig, tmp_path / "fig", formats=("pdf", "png"))
    assert pdf.read_bytes() == b"good pdf"  # rendered fine, but not moved in alone
    assert png.read_bytes() == b"good png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png"]


def test_export_to_missing_directory_writes_nothing(fig, tmp_path):
    with pytest.raises(FileNotFoundError):
        export(fig, tmp_path / "missing" / "fig.pdf")
    assert list(tmp_path.iterdir()) == []


def test_paths_follow_the_formats(tmp_path):
    blank = Figure(figsize=(1, 1))
    assert export(blank, tmp_path / "fig.pdf", formats=("svg", "png")) == [
        tmp_path / "fig.svg",
        tmp_path / "fig.png",
    ]
    assert export(blank, tmp_path / "fig") == [tmp_path / "fig.pdf"]
    assert export(blank, tmp_path / "run.w64", formats=("pdf",)) == [tmp_path / "run.w64.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fig.pdf",
        "fig.png",
        "fig.svg",
        "run.w64.pdf",
    ]
