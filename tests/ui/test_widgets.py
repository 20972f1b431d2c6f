"""Explorers of a stored study redraw in place, export, and train more points on request."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import logging  # noqa: E402

import ipywidgets as widgets  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from toolkit.errors import InputError  # noqa: E402
from toolkit.studies.sweep import SweepSpec, run_local  # noqa: E402
from toolkit.ui.explorer import RunMore, StudyData, step_slider  # noqa: E402
from toolkit.ui.widgets import heatmap_explorer, transfer_explorer  # noqa: E402

SPEC = SweepSpec(task="digits", parametrizations=("sp", "mup"), widths=(16, 32), depths=(1,),
                 lrs=(2.0**-8, 2.0**-6, 2.0**-4, 2.0**-2), weight_decays=(0.0, 0.1),
                 optimizers=("adamw",), steps=(20,), eval_every=10, base_width=16)  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("study")
    run_local(SPEC, path, quiet=True)
    return path


def test_a_control_change_redraws_the_same_figure_with_a_new_picture(study):
    explorer = transfer_explorer(StudyData(study), hue="width", col="parametrization")
    figure, first = explorer.figure, explorer.image.value
    assert first  # drew from the stored data at once
    explorer.controls["split"].value = "val"
    assert explorer.figure is figure
    assert explorer.image.value != first
    for view in ("optimum", "regret"):
        explorer.controls["view"].value = view
        assert explorer.image.value and not explorer.message


def test_sliders_redraw_on_release_not_on_every_pixel(study):
    slider = step_slider([10, 20])
    assert slider.continuous_update is False
    explorer = transfer_explorer(StudyData(study))
    assert explorer.controls["step"].continuous_update is False


def test_export_writes_the_current_figure(study, tmp_path):
    explorer = heatmap_explorer(StudyData(study), name="decay")
    explorer.format.value = "png"
    (written,) = explorer.export(tmp_path)
    assert written == tmp_path / "decay.png" and written.stat().st_size > 0


def test_run_more_appends_a_new_size_to_the_store_and_redraws(study):
    data = StudyData(study)
    more = RunMore(data, [SPEC], axis="widths", options=[48])
    explorer = transfer_explorer(data, hue="width", run_more=more)
    assert more.widget in explorer.widget.children  # shown with the explorer it was given to
    redraws = []
    more.on_trained(lambda: redraws.append(explorer.draw_seconds))
    before = data.runs.height
    assert more.run() == 16  # 2 parametrizations x 4 LRs x 2 WDs
    assert data.runs.height == before + 16
    assert 48 in data.runs["width"].to_list()
    assert 48 in data.losses["width"].to_list()  # the explorer's frames were re-read
    assert more.run() == 0  # already there: nothing retrained
    assert data.runs.filter(pl.col("width") == 48).height == 16
    assert len(redraws) == 2 and not explorer.message


def _files(path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_export_writes_the_view_on_screen_not_the_last_one_drawn(study, tmp_path):
    explorer = transfer_explorer(StudyData(study), hue="width", col="parametrization")
    explorer.format.value = "svg"
    explorer.controls["view"].value = "optimum"
    explorer.controls["view"].value = "curves"  # a kept picture: the figure holds the optimum
    (written,) = explorer.export(tmp_path)
    svg = written.read_text()
    assert "optimal LR" not in svg  # the optimum view's y label is not in the export
    explorer.controls["view"].value = "optimum"
    (again,) = explorer.export(tmp_path)
    assert "optimal LR" in again.read_text()


def test_export_never_overwrites_an_earlier_file(study, tmp_path):
    explorer = heatmap_explorer(StudyData(study), name="decay")
    first = explorer.export(tmp_path)[0]
    content = first.read_bytes()
    second = explorer.export(tmp_path)[0]
    assert second == tmp_path / "decay-2.pdf" and first.read_bytes() == content


def test_points_trained_over_a_read_only_store_go_to_the_user_store(study, tmp_path):
    """A store opened with a separate user store (as the shipped ones are) is never written:
    new runs land in the user store, are read on top of it, and their width is offered."""
    before = _files(study)
    data = StudyData(study, user=tmp_path / "mine")
    more = RunMore(data, [SPEC], axis="widths", options=[24])
    explorer = transfer_explorer(data, hue="width", run_more=more)
    assert 24 not in explorer.controls["width"].options
    assert more.run() == 16
    assert _files(study) == before  # byte-identical
    assert (tmp_path / "mine" / "store.json").exists()
    assert 24 in explorer.controls["width"].options
    assert 24 in explorer.controls["width"].value  # shown at once
    assert data.runs.filter(pl.col("width") == 24).height == 16
    assert not explorer.message


def _labelled(widget) -> list:
    """Every control with a label inside ``widget``, depth first."""
    found = [widget] if getattr(widget, "description", "") else []
    for child in getattr(widget, "children", ()):
        found += _labelled(child)
    return found


def test_labels_are_distinct_and_never_truncated(study, tmp_path):
    data = StudyData(study, user=tmp_path / "mine")
    more = RunMore(data, [SPEC], axis="widths", options=[24])
    explorer = transfer_explorer(data, hue="width", run_more=more)
    labelled = _labelled(explorer.widget)
    labels = [w.description for w in labelled]
    assert len(labels) == len(set(labels)), labels
    assert {"widths shown", "train width", "page width"} <= set(labels)
    for control in labelled:
        if isinstance(control, widgets.Button):  # the button is as wide as its label
            assert control.layout.width == "auto", control.description
        else:
            assert control.style.description_width == "initial", control.description


def test_a_setting_whose_runs_all_diverged_says_so_in_the_figure_area(study):
    data = StudyData(study)
    data.losses = data.losses.with_columns(  # as if every run at width 32 had blown up
        status=pl.when(pl.col("width") == 32).then(pl.lit("diverged")).otherwise("status")
    )
    explorer = transfer_explorer(data, hue="width", col="parametrization")
    for view in ("curves", "optimum", "regret"):
        explorer.select(view=view, width=(32,))
        assert explorer.message == "no runs for optimizer=adamw, width 32: all diverged"
        assert not explorer.figure.axes
        explorer.select(width=())
        assert explorer.message == "no runs for optimizer=adamw, no width chosen"
        explorer.select(width=(16, 32))
        assert not explorer.message and explorer.figure.axes


def test_a_failed_training_click_is_one_line_by_the_button_and_an_error_in_the_log(
    study, monkeypatch, caplog
):
    more = RunMore(StudyData(study), [SPEC], axis="widths", options=[48])

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("toolkit.studies.sweep.run_local", broken)
    with caplog.at_level(logging.INFO, logger="toolkit.ui"):
        more.button.click()
    assert more.note.value == "Train more points failed: RuntimeError: disk full"
    assert not more.button.disabled and more.button.description == "Train more points"
    (record,) = [r for r in caplog.records if r.name == "toolkit.ui"]
    assert record.levelno == logging.ERROR and record.exc_info[0] is RuntimeError


def test_the_explorer_switches_between_swept_hyperparameters_each_where_it_is_swept(
    tmp_path,
):
    base = dict(task="digits", parametrizations=("sp", "mup"), widths=(16, 32), depths=(1,),
                lrs=(2.0**-6,), optimizers=("adam",), steps=(20,), eval_every=10,
                base_width=16)  # fmt: skip
    specs = [SweepSpec(**base, output_alphas=(0.25, 1.0, 4.0)),
             SweepSpec(**base, init_sigmas=(0.5, 1.0, 2.0))]  # fmt: skip
    run_local(specs, tmp_path / "store", quiet=True)
    explorer = transfer_explorer(StudyData(tmp_path / "store"), hue="width",
                                 hyperparameters=("output_alpha", "init_sigma"))  # fmt: skip
    assert explorer.controls["hyperparameter"].options == ("output_alpha", "init_sigma")
    pictures = set()
    for x in ("output_alpha", "init_sigma"):
        for view in ("curves", "optimum", "regret"):
            explorer.select(hyperparameter=x, view=view)
            assert not explorer.message and explorer.figure.axes
            pictures.add(explorer.image.value)
            if view == "curves":
                ax = explorer.figure.axes[0]
                assert ax.get_xlabel() == f"log2 {x}"
                # one line per width: the other multiplier's runs (one value each) are left out
                assert len([line for line in ax.get_lines() if line.get_marker() == "o"]) == 2
    assert len(pictures) == 6


def test_the_heatmaps_open_on_the_loss_split_asked_for(study):
    explorer = heatmap_explorer(StudyData(study), name="decay", split="val")
    assert explorer.controls["split"].value == "val" and not explorer.message
    with pytest.raises(InputError, match="split='test'"):
        heatmap_explorer(StudyData(study), split="test")
