"""Summaries the notebooks show: run counts, how far optima move, each grid's best cell,
and drift and regret along width and depth in one frame."""

from __future__ import annotations

import polars as pl
import pytest

from toolkit import store
from toolkit.analysis import transfer
from toolkit.paths import shipped


@pytest.fixture(scope="module")
def transformer_runs() -> pl.DataFrame:
    return store.open(shipped("transformer_transfer")).runs().collect()


def test_run_counts_add_up_to_every_run_and_count_the_diverged_ones():
    runs = pl.DataFrame({
        "width": [32, 32, 64, 64, 64],
        "status": ["ok", "diverged", "ok", "diverged", "diverged"],
    })  # fmt: skip
    counts = transfer.run_counts(runs, by=("width",))
    assert counts.rows() == [(32, 2, 1), (64, 3, 2)]


def test_optimum_span_is_the_octaves_the_optimum_moves_across_sizes():
    optima = pl.DataFrame({
        "parametrization": ["sp", "sp", "sp", "mup", "mup", "mup"],
        "width": [32, 64, 128] * 2,
        "log2_lr_grid": [-7.0, -8.0, -9.0, -6.0, -6.0, -6.0],
        "weight_decay": [0.1, 0.1, 0.2, 0.1, 0.1, 0.1],
    })  # fmt: skip
    span = transfer.optimum_span(optima, by=("parametrization",), distinct=("weight_decay",))
    assert span.rows() == [("mup", 0.0, 1), ("sp", 2.0, 2)]
    assert span.columns == ["parametrization", "octaves", "weight_decay_values"]


def test_best_cell_is_the_lowest_loss_and_never_a_diverged_point():
    curves = pl.DataFrame({
        "width": [64, 64, 64, 128, 128],
        "log2_lr": [-8.0, -6.0, -4.0, -8.0, -6.0],
        "weight_decay": [0.0, 0.1, 0.0, 0.1, 0.0],
        "loss_mean": [0.9, 0.5, None, 0.4, 0.7],
    })  # fmt: skip
    best = transfer.best_cells(curves, by=("width",))
    assert best.select("width", "log2_lr", "weight_decay", "loss_mean").rows() == [
        (64, -6.0, 0.1, 0.5),
        (128, -8.0, 0.1, 0.4),
    ]
    assert best["log2_lr_at_edge"].to_list() == [False, True]  # -6 inside [-8, -4]; -8 lowest
    assert best["weight_decay_at_edge"].to_list() == [True, True]


def test_drift_along_width_and_depth_holds_each_axis_own_fit(transformer_runs):
    optima = transfer.optimal_lr(transformer_runs)
    both = transfer.drift_along(optima, axes=("width", "depth"))
    assert set(both["axis"]) == {"width", "depth"}
    for axis in ("width", "depth"):
        alone = transfer.drift(optima, axis=axis)
        mine = both.filter(pl.col("axis") == axis).select(alone.columns)
        assert alone.height > 0 and mine.equals(alone)


def test_regret_along_width_and_depth_is_zero_at_each_axis_base(transformer_runs):
    both = transfer.regret_along(transformer_runs, axes=("width", "depth"))
    for axis in ("width", "depth"):
        alone = transfer.transfer_regret(transformer_runs, axis=axis)
        mine = both.filter(pl.col("axis") == axis)
        assert mine.height == alone.height > 0
        assert mine["regret"].to_list() == alone["regret"].to_list()
        at_base = mine.filter(pl.col(axis) == pl.col("base"))["regret"]
        assert at_base.len() > 0 and (at_base == 0).all()
