"""An explorer draws only when asked or shown, keeps the last good picture on an error,
sets several controls with one redraw, and shows the "train more" row it was given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import pytest  # noqa: E402

from toolkit.ui.explorer import Explorer  # noqa: E402


def _line_explorer(calls: list) -> Explorer:
    choice = widgets.Dropdown(options=["fine", "broken"], value="fine")
    slope = widgets.IntSlider(value=1, min=-2, max=2)

    def render(fig, values):
        calls.append(dict(values))
        if values["choice"] == "broken":
            raise RuntimeError("no data for this choice")
        fig.subplots().plot([0, 1], [0, values["slope"]])

    return Explorer({"choice": choice, "slope": slope}, render)


def test_building_an_explorer_draws_nothing_until_it_is_shown():
    calls: list = []
    explorer = _line_explorer(calls)
    assert not calls and not explorer.image.value
    explorer._ipython_display_()  # what a notebook does when the cell shows it
    assert len(calls) == 1 and bytes(explorer.image.value).startswith(b"\x89PNG")


def test_an_error_is_shown_and_the_last_good_picture_stays():
    explorer = _line_explorer([])
    explorer.redraw()
    good = explorer.image.value
    assert good
    explorer.controls["choice"].value = "broken"
    assert explorer.image.value == good
    assert "no data for this choice" in str(explorer.errors.outputs)
    explorer.controls["choice"].value = "fine"
    assert not explorer.errors.outputs


def test_select_sets_several_controls_and_redraws_once():
    calls: list = []
    explorer = _line_explorer(calls)
    explorer.select(slope=-2, choice="fine")
    assert calls == [{"choice": "fine", "slope": -2}]
    explorer.controls["slope"].value = 2  # the controls still redraw on their own
    assert calls[-1] == {"choice": "fine", "slope": 2}
    with pytest.raises(ValueError, match=r"controls=\['colour'\]"):
        explorer.select(colour="red")
