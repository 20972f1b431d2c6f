"""An explorer draws only when asked or shown, says in the figure area why it cannot draw
(logging the traceback, never printing it under the figure), shows a sharp picture at its
size on the page, greys out controls its view does not use, disables its controls while
busy, and sets several controls with one redraw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import logging  # noqa: E402
import struct  # noqa: E402

import ipywidgets as widgets  # noqa: E402
import pytest  # noqa: E402

from toolkit.errors import InputError  # noqa: E402
from toolkit.ui.explorer import SCREEN_SCALE, Explorer, labels  # noqa: E402


def _line_explorer(calls: list) -> Explorer:
    choice = widgets.Dropdown(options=["fine", "empty", "broken", "flat"], value="fine")
    slope = widgets.IntSlider(value=1, min=-2, max=2)

    def render(fig, values):
        calls.append(dict(values))
        if values["choice"] == "empty":
            raise InputError("no runs for optimizer=sgd, width 48: all diverged")
        if values["choice"] == "broken":
            raise RuntimeError("no data for this choice")
        ax = fig.subplots()
        ax.plot([0, 1], [0, values["slope"]])
        ax.set(title=f"slope {values['slope']}", xlabel="x", ylabel="y")

    def unused(values):
        return ("slope",) if values["choice"] == "flat" else ()

    return Explorer({"choice": choice, "slope": slope}, render, inactive=unused)


def _figure_text(explorer: Explorer) -> str:
    return " ".join(t.get_text() for t in explorer.figure.texts).replace("\n", " ")


def test_building_an_explorer_draws_nothing_until_it_is_shown():
    calls: list = []
    explorer = _line_explorer(calls)
    assert not calls and not explorer.image.value
    explorer._ipython_display_()  # what a notebook does when the cell shows it
    assert len(calls) == 1 and bytes(explorer.image.value).startswith(b"\x89PNG")


def test_nothing_to_draw_is_said_in_the_figure_area_not_left_under_an_old_picture(caplog):
    explorer = _line_explorer([])
    explorer.redraw()
    good = explorer.image.value
    with caplog.at_level(logging.INFO, logger="toolkit.ui"):
        explorer.controls["choice"].value = "empty"
    assert explorer.message == "no runs for optimizer=sgd, width 48: all diverged"
    assert explorer.message in _figure_text(explorer)
    assert explorer.image.value != good and not explorer.figure.axes
    assert not any(isinstance(w, widgets.Output) for w in explorer.widget.children)
    (record,) = [r for r in caplog.records if r.name == "toolkit.ui"]
    assert record.levelno == logging.INFO and record.exc_info
    explorer.controls["choice"].value = "fine"
    assert not explorer.message and explorer.image.value == good


def test_a_bug_is_one_line_in_the_figure_and_its_traceback_is_logged_as_an_error(caplog):
    explorer = _line_explorer([])
    with caplog.at_level(logging.INFO, logger="toolkit.ui"):
        explorer.select(choice="broken")
    assert "RuntimeError: no data for this choice" in explorer.message
    assert "Traceback" not in explorer.message
    assert "RuntimeError: no data for this choice" in _figure_text(explorer)
    (record,) = [r for r in caplog.records if r.name == "toolkit.ui"]
    assert record.levelno == logging.ERROR and record.exc_info[0] is RuntimeError


def _png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def test_the_picture_has_twice_the_pixels_of_its_size_on_the_page():
    explorer = _line_explorer([])
    explorer.redraw()
    width, height = _png_size(bytes(explorer.image.value))
    shown = explorer.figure.get_size_inches() * explorer.dpi
    assert explorer.image.layout.width == f"{round(shown[0])}px"
    assert explorer.image.layout.height == f"{round(shown[1])}px"
    assert (width, height) == (round(shown[0] * SCREEN_SCALE), round(shown[1] * SCREEN_SCALE))


def test_controls_the_view_does_not_use_are_greyed_out():
    explorer = _line_explorer([])
    explorer.redraw()
    assert not explorer.controls["slope"].disabled
    explorer.controls["choice"].value = "flat"
    assert explorer.controls["slope"].disabled and not explorer.controls["choice"].disabled
    explorer.controls["choice"].value = "fine"
    assert not explorer.controls["slope"].disabled


def test_busy_work_disables_the_controls_and_says_what_it_does():
    explorer = _line_explorer([])
    explorer.select(choice="flat")
    with explorer.busy("training sp, adam..."):
        assert all(c.disabled for c in explorer.controls.values())
        assert "training sp, adam..." in explorer.status.value
    assert not explorer.controls["choice"].disabled and explorer.controls["slope"].disabled
    assert not explorer.status.value


def test_select_sets_several_controls_and_redraws_once():
    calls: list = []
    explorer = _line_explorer(calls)
    explorer.select(slope=-2, choice="fine")
    assert calls == [{"choice": "fine", "slope": -2}]
    explorer.controls["slope"].value = 2  # the controls still redraw on their own
    assert calls[-1] == {"choice": "fine", "slope": 2}
    with pytest.raises(ValueError, match=r"controls=\['colour'\]"):
        explorer.select(colour="red")


def test_a_failed_export_click_says_why_in_one_line(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    explorer = _line_explorer([])
    explorer.select(choice="empty")
    with caplog.at_level(logging.INFO, logger="toolkit.ui"):
        explorer.export_button.click()
    assert explorer.status.value == (
        "Export failed: no runs for optimizer=sgd, width 48: all diverged"
    )
    assert [r.levelno for r in caplog.records if r.name == "toolkit.ui"][-1] == logging.INFO
    explorer.select(choice="fine")
    explorer.export_button.click()
    assert explorer.status.value.startswith("exported ")


def test_the_explorer_knows_the_words_of_the_picture_on_screen_or_its_message():
    explorer = _line_explorer([])
    explorer.redraw()
    assert explorer.shown == "slope 1 | x | y" == " | ".join(labels(explorer.figure))
    explorer.select(slope=2)
    assert explorer.shown == "slope 2 | x | y"
    explorer.select(choice="empty")
    assert explorer.shown == explorer.message != ""
