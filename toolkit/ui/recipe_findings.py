"""What studies of the training recipe show, as sentences built from the store (see
:mod:`toolkit.ui.findings`): optimizers compared at their own tuned learning rates, and
AdamW's optimal weight decay and timescale across batch sizes."""

from __future__ import annotations

import math

import polars as pl

from toolkit.analysis.optima import (
    FIT_OK,
    config_keys,
    lr_curves,
    optimal_hyperparameter,
    optimal_lr,
)
from toolkit.analysis.spectra import DECAY_OBJECTIVE
from toolkit.analysis.transfer import COVARYING, drift
from toolkit.errors import InputError
from toolkit.ui.findings import drift_sentence, two_to
from toolkit.ui.style import ordered

OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "adam-atan2": "Adam-atan2",
                   "muon": "Muon"}  # fmt: skip
"""How sentences name the optimizers."""


def _at_tuned_lr(row: dict) -> str:
    name = OPTIMIZER_NAMES.get(row["optimizer"], row["optimizer"])
    where = two_to(row["log2_lr_grid"])
    if row["fit"] != FIT_OK:
        where += f" (the grid's {row['censored'] or 'edge'} edge: a bound, not an optimum)"
    return f"{name} {row['loss_grid']:.3f} at its tuned LR {where}"


def optimizer_comparison(runs: pl.DataFrame, *, axis: str = "width") -> str:
    """One bullet per value of ``axis``: every optimizer's lowest seed-mean final training
    loss over its own LR grid, the grid LR that reached it
    (:func:`~toolkit.analysis.optima.optimal_lr`'s ``log2_lr_grid``) and how much lower the
    best optimizer's loss is than the next one. ``runs`` must differ only in ``optimizer``,
    ``axis`` and the learning rate."""
    optima = optimal_lr(runs)
    held = ("parametrization", "width", "depth", "depth_rule", "steps", "batch_size")
    mixed = [k for k in held if k in optima.columns and k != axis and optima[k].n_unique() > 1]
    if mixed:
        raise InputError(f"runs differ in {', '.join(mixed)} besides optimizer and {axis}: "
                         "allowed: one value of each")  # fmt: skip
    best_mean = pl.col("loss_mean").min().alias("loss_grid")
    grid = lr_curves(runs).filter(pl.col("loss_mean").is_not_null())
    grid = grid.group_by("optimizer", axis).agg(best_mean)
    optima = optima.join(grid, on=["optimizer", axis])
    order = {name: i for i, name in enumerate(ordered(optima, "optimizer"))}
    lines = []
    for size in sorted(optima[axis].unique()):
        rows = sorted(optima.filter(pl.col(axis) == size).iter_rows(named=True),
                      key=lambda r: order[r["optimizer"]])  # fmt: skip
        text = f"- **{axis} {size}**: " + "; ".join(_at_tuned_lr(r) for r in rows)
        ranked = sorted(rows, key=lambda r: r["loss_grid"])
        if len(ranked) > 1:
            best, next_best = ranked[0], ranked[1]
            gap = next_best["loss_grid"] - best["loss_grid"]
            text += (f"; {OPTIMIZER_NAMES.get(best['optimizer'], best['optimizer'])} is lower "
                     f"by {gap:.3f}")  # fmt: skip
        lines.append(text + ".")
    return "\n".join(lines)


def batch_size_timescale(runs: pl.DataFrame, *, loss: str = DECAY_OBJECTIVE) -> str:
    """One bullet per series of an AdamW study that holds the number of training examples
    ``D = steps x batch_size`` fixed: the best grid weight decay at the smallest and the
    largest batch size, the fitted drift of the optimal weight decay per doubling of the
    batch size (+1 when the timescale ``tau = B / (lr wd D)`` stays constant, Bergsma et al.
    2025) and the range of ``tau`` at the measured optima."""
    optima = optimal_hyperparameter(runs, "weight_decay", loss=loss)
    keys = config_keys(optima, exclude=("batch_size", COVARYING["batch_size"]), x="weight_decay")
    lines = []
    for row in drift(optima, axis="batch_size").iter_rows(named=True):
        series = optima.filter(*(pl.col(k).eq_missing(row[k]) for k in keys)).sort("batch_size")
        first, last = series.row(0, named=True), series.row(-1, named=True)
        measured = series.filter(pl.col("fit") == FIT_OK)
        tau = 1.0 / (measured["lr"] * measured["weight_decay_opt"] * measured["steps"])
        text = (f"- **{OPTIMIZER_NAMES.get(row['optimizer'], row['optimizer'])} at LR "
                f"{two_to(math.log2(row['lr']))}**, {first['steps'] * first['batch_size']:,} "
                f"examples: the best grid weight decay goes from "
                f"{two_to(first['log2_weight_decay_grid'])} at batch size {first['batch_size']} "
                f"to {two_to(last['log2_weight_decay_grid'])} at {last['batch_size']}, "
                f"{drift_sentence(row)}; a constant timescale would give +1.00")  # fmt: skip
        if tau.len():
            text += (f"; the optimal timescale tau = B / (lr wd D) is {tau.min():.3f} to "
                     f"{tau.max():.3f} of the data")  # fmt: skip
        lines.append(text + ".")
    return "\n".join(lines)
