"""Panels, legends and options follow meaning, not the alphabet: SP before muP, no depth
scaling before the depth rules, layers from input to readout."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import polars as pl  # noqa: E402

from toolkit.ui import plots  # noqa: E402
from toolkit.ui.style import ordered  # noqa: E402


def test_parametrizations_go_sp_ntk_mf_mup_then_the_rest_alphabetically():
    frame = pl.DataFrame({"parametrization": ["mup", "zeta", "mf", "sp", "alpha", "ntk", "sp"]})
    assert ordered(frame, "parametrization") == ["sp", "ntk", "mf", "mup", "alpha", "zeta"]


def test_depth_rules_go_none_depth_mup_completep():
    frame = pl.DataFrame({"depth_rule": ["completep", "depth-mup", "none"]})
    assert ordered(frame, "depth_rule") == ["none", "depth-mup", "completep"]


def test_layers_go_from_input_to_readout_with_hidden_layers_numbered_in_order():
    layers = ["readout", "hidden10", "hidden2", "input", "hidden1"]
    roles = ["output", "hidden", "hidden", "input", "hidden"]
    frame = pl.DataFrame({"layer": layers, "role": roles})
    assert ordered(frame, "layer") == ["input", "hidden1", "hidden2", "hidden10", "readout"]


def test_numbers_sort_by_value():
    assert ordered(pl.DataFrame({"width": [512, 64, 1024, 128]}), "width") == [64, 128, 512, 1024]


def test_panels_and_legends_of_a_figure_follow_that_order():
    rows = [
        {"parametrization": p, "layer": layer, "role": role, "step": 1, "stat": "l1",
         "width": w, "value": 1.0 + w / 64, "diverged": False}
        for p in ("mup", "sp")
        for layer, role in (("readout", "output"), ("hidden2", "hidden"),
                            ("hidden1", "hidden"), ("input", "input"))
        for w in (64, 128)
    ]  # fmt: skip
    fig = plots.coord_check_plot(pl.DataFrame(rows), col="parametrization")
    assert [ax.get_title() for ax in fig.axes] == ["parametrization sp", "parametrization mup"]
    legend = [t.get_text() for t in fig.axes[-1].get_legend().texts]
    assert legend == ["input", "hidden1", "hidden2", "readout"]
