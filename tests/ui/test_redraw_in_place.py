"""A new setting redraws into the explorer's axes kept from the last view, and the
picture is exactly the one a fresh figure gives: nothing of the previous view survives."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from toolkit.analysis.claims import card  # noqa: E402
from toolkit.analysis.intrinsic import load_measurements  # noqa: E402
from toolkit.paths import shipped  # noqa: E402
from toolkit.ui import widgets as ui  # noqa: E402
from toolkit.ui.explorer import SCREEN_PNG, SCREEN_SCALE, StudyData  # noqa: E402


def _fresh_png(explorer) -> bytes:
    figure = Figure()
    explorer.render(figure, explorer.values())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=explorer.dpi * SCREEN_SCALE, pil_kwargs=SCREEN_PNG)
    return buffer.getvalue()


def _changes(explorer) -> list[tuple[str, object]]:
    """Every other option of every one-value control with a few options, then back to
    the first: views
    that draw different things (log scales, limits, bars, legends) follow each other."""
    changes = []
    for name, control in explorer.controls.items():
        options = [o[1] if isinstance(o, tuple) else o for o in getattr(control, "options", ())]
        if isinstance(control.value, tuple) or not 1 < len(options) <= 6 or control.disabled:
            continue
        first = control.value
        changes += [(name, option) for option in options if option != first] + [(name, first)]
    return changes


EXPLORERS = {
    "width": lambda: ui.transfer_explorer(StudyData(shipped("width_transfer")), hue="width",
                                          col="parametrization"),
    "horizon": lambda: ui.transfer_explorer(StudyData(shipped("horizon")), hue="steps",
                                            col="parametrization", fixed=()),
    "hyperparameters": lambda: ui.transfer_explorer(
        StudyData(shipped("hyperparameter_transfer")), hue="width", col="parametrization",
        hyperparameters=("output_alpha", "init_sigma")),
    "spectra": lambda: ui.spectra_explorer(StudyData(shipped("spectra")), study="spectra"),
    "intrinsic": lambda: ui.intrinsic_explorer(load_measurements()),
    "claims": lambda: ui.claims_explorer(card()),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPLORERS))
def test_every_redraw_in_place_is_the_picture_a_fresh_figure_gives(name):
    explorer = EXPLORERS[name]()
    compared = 0
    for control, value in _changes(explorer):
        if control in explorer.inactive(explorer.values()):
            continue
        explorer.controls[control].value = value
        if explorer.message:
            continue
        assert explorer.image.value == _fresh_png(explorer), f"{control}={value!r}"
        compared += 1
    assert compared >= 3


def test_a_new_step_keeps_the_axes_and_a_new_view_rebuilds_them():
    explorer = EXPLORERS["width"]()
    kept = list(explorer.figure.axes)
    step = explorer.controls["step"]
    step.value = step.options[0]
    assert explorer.figure.axes == kept  # the same panels, redrawn in place
    explorer.controls["view"].value = "optimum"  # one panel instead of two
    assert len(explorer.figure.axes) == 1 and explorer.figure.axes[0] not in kept
