"""What a study's data shows, as sentences built from the numbers in its store.

A notebook's "what the data shows" cell calls one of these, so its prose quotes the
numbers of the store it was run on (shipped or regenerated), never numbers typed by
hand that a regeneration could silently contradict. Each function takes the runs
frame of its study and returns Markdown.
"""

from __future__ import annotations

import polars as pl

from toolkit.analysis.optima import CONFIG_KEYS, optimal_lr
from toolkit.analysis.transfer import drift, transfer_regret
from toolkit.ui.style import ordered

_NAMES = {"sp": "SP", "mup": "muP", "ntk": "NTK", "mf": "mean-field"}


def _octaves(value: float) -> str:
    return f"{value:+.2f} octave{'s' if abs(value) != 1 else ''}"


def _power(log2: float) -> str:
    return f"2^{log2:.0f}" if float(log2).is_integer() else f"2^{log2:.2f}"


def _drift_sentence(row: dict) -> str:
    """The drift of one configuration, with its interval and how it was fitted."""
    if row["slope"] is None:
        return (
            f"no drift can be fitted: only {row['points']} optima are measured "
            f"({row['censored']} lie at the grid's edge)"
        )
    text = (
        f"a fitted drift of {_octaves(row['slope'])} per doubling "
        f"(95% interval [{row['slope_lo']:+.2f}, {row['slope_hi']:+.2f}], "
        f"{row['points']} measured optima"
    )
    if row["censored"]:
        text += f"; {row['censored']} more at the grid's edge"
        if row["contradicting"]:
            text += f", {row['contradicting']} of them contradicting the line"
    return text + ")"


def _label(row: dict, varying: list[str]) -> str:
    return ", ".join(_NAMES.get(str(row[k]), str(row[k])) for k in varying)


def transfer(runs: pl.DataFrame, *, axis: str = "width") -> str:
    """One bullet per series (the settings that differ between series name it): the grid
    optimum at the smallest and the largest size, the fitted drift with its interval,
    and the loss the LR tuned at the smallest size costs at the largest."""
    optima = optimal_lr(runs)
    drifts = drift(optima, axis=axis)
    regret = transfer_regret(runs, axis=axis)
    keys = [k for k in CONFIG_KEYS if k in drifts.columns and k != axis]
    varying = [k for k in keys if drifts[k].n_unique() > 1] or keys[:1]
    lines = []
    rank = [  # series in the order they are shown (SP before muP, ...)
        pl.col(k).replace_strict({v: i for i, v in enumerate(ordered(drifts, k))}, default=None)
        for k in varying
    ]
    for row in drifts.sort(rank, nulls_last=True).iter_rows(named=True):
        same = [pl.col(k).eq_missing(row[k]) for k in keys]
        series = optima.filter(*same).sort(axis)
        first, last = series.row(0, named=True), series.row(-1, named=True)
        cost = regret.filter(*same, pl.col(axis) == last[axis])["regret"]
        lines.append(
            f"- **{_label(row, varying)}**: the best grid learning rate goes from "
            f"{_power(first['log2_lr_grid'])} at {axis} {first[axis]} to "
            f"{_power(last['log2_lr_grid'])} at {last[axis]}, {_drift_sentence(row)}; the LR "
            f"tuned at {axis} {first[axis]} costs {cost[0]:.3f} in loss at {axis} {last[axis]}."
        )
    return "\n".join(lines)


def grid_optima(best: pl.DataFrame, *, by: tuple[str, ...]) -> str:
    """Whether a grid can locate its optimum: :func:`toolkit.analysis.transfer.best_cells`
    rows that sit on an edge of their grid are bounds, not locations, and the sentence
    says how many there are and what that leaves unanswered."""
    edges = [c for c in best.columns if c.endswith("_at_edge")]
    if not edges:
        return ""
    on_edge = best.filter(pl.any_horizontal(*edges))
    axes = " / ".join(c.removesuffix("_at_edge").replace("log2_lr", "learning rate") for c in edges)
    if on_edge.height == 0:
        return f"All {best.height} best cells are inside their {axes} grid: each locates one."
    groups = ", ".join(
        "/".join(str(row[k]) for k in by) for row in on_edge.select(by).iter_rows(named=True)
    )
    verdict = (
        "so this grid cannot say where the optimum is, nor whether a rule keeps it in place: "
        "the study needs a grid around the optimum (and longer training) to answer"
        if on_edge.height == best.height
        else "those optima are bounds; the others are located"
    )
    return (
        f"**{on_edge.height} of {best.height} best cells lie on an edge of their {axes} grid** "
        f"({groups}), {verdict}."
    )
