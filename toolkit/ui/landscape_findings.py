"""What the loss-landscape studies show, as sentences built from their numbers: sharpness
across width (notebook 05) and intrinsic dimensions across sizes, parametrizations,
projections and starts (notebook 06). The same contract as :mod:`toolkit.ui.findings`:
prose quotes the store it runs on."""

from __future__ import annotations

import math

import polars as pl

from toolkit.errors import InputError
from toolkit.ui.findings import PARAMETRIZATION_NAMES, two_to
from toolkit.ui.style import ordered


def finetuning(estimates: pl.DataFrame) -> str:
    """What a fine-tuning measurement shows: ``estimates`` has one row per start
    (``start``: ``pretrained`` or ``scratch``) with the columns of
    :data:`toolkit.analysis.intrinsic.ESTIMATE`. Says which start needs fewer
    directions only when the two intervals do not overlap; an unreached ``d_int`` is
    "more than" the largest ``d`` tried."""
    rows = {row["start"]: row for row in estimates.iter_rows(named=True)}
    missing = {"pretrained", "scratch"} - set(rows)
    if missing:
        raise InputError(f"estimates lack the start(s) {sorted(missing)}; expected "
                         "'pretrained' and 'scratch'")  # fmt: skip

    def phrase(row: dict) -> str:
        if not math.isfinite(row["d_int"]):
            return "not reached in the d tried"
        hi = "more" if not math.isfinite(row["d_int_hi"]) else f"{row['d_int_hi']:,.0f}"
        return f"{row['d_int']:,.0f} [{row['d_int_lo']:,.0f}, {hi}]"

    pre, scratch = rows["pretrained"], rows["scratch"]
    level = f"{pre['confidence']:.0%}"
    said = (f"`d_int{round(100 * pre['threshold'])}` from the pre-trained weights: "
            f"{phrase(pre)}; from a random initialisation: {phrase(scratch)} ({level} "
            "intervals). ")  # fmt: skip
    if pre["d_int_hi"] < scratch["d_int_lo"]:
        return said + "Fine-tuning needs fewer directions here, as Aghajanyan et al. found."
    if scratch["d_int_hi"] < pre["d_int_lo"]:
        return said + ("Fine-tuning needs *more* directions here: at this scale the "
                       "pre-trained start does not help, unlike in Aghajanyan et al.")  # fmt: skip
    return said + (
        "The intervals overlap: at this scale the measurement cannot tell the two "
        "starts apart, so it neither confirms nor contradicts Aghajanyan et al."
    )


def _exponent_phrase(row: dict) -> str:
    """``k = +0.12 [-0.03, +0.27]`` and what it says about width-independence."""
    if row["status"] != "ok":
        return f"no exponent ({row['widths']} widths with a converged value)"
    text = f"k = {row['exponent']:+.2f} [{row['exponent_lo']:+.2f}, {row['exponent_hi']:+.2f}]"
    if row["exponent_lo"] <= 0.0 <= row["exponent_hi"]:
        return text + ", consistent with no change in width"
    return text + (", growing with width" if row["exponent_lo"] > 0 else ", falling with width")


def sharpness(fits: pl.DataFrame) -> str:
    """What a sharpness study shows: ``fits`` is
    :func:`toolkit.analysis.sharpness.width_exponent` output. Per optimizer, the exponent
    ``k`` of ``lambda_max ~ width**k`` of each parametrization at the last probe step and
    at the first step after initialisation, with 95% intervals; the runs left out (not
    converged, diverged) are counted."""
    if fits.height == 0:
        raise InputError("fits is empty: no sharpness values to describe")
    sentences = []
    for optimizer in ordered(fits, "optimizer"):
        rows = fits.filter(pl.col("optimizer") == optimizer)
        steps = sorted(rows["step"].unique().to_list())
        later = [s for s in steps if s > 0]
        shown = [later[0], steps[-1]] if len(later) > 1 else steps[-1:]
        parts = []
        for step in shown:
            at = rows.filter(pl.col("step") == step).sort("parametrization")
            said = "; ".join(
                f"{PARAMETRIZATION_NAMES.get(r['parametrization'], r['parametrization'])} "
                f"{_exponent_phrase(r)}"
                for r in at.iter_rows(named=True)
            )
            parts.append(f"at step {step}: {said}")
        excluded = int(rows["excluded"].sum())
        note = f" ({excluded} probe values left out: not converged or diverged)" if excluded else ""
        lr = rows["lr"][0]
        stat = f"`{rows['stat'][0]}`" if "stat" in rows.columns else "the sharpness"
        sentences.append(f"**{optimizer}** (LR {two_to(math.log2(lr))}), exponent of "
                         f"{stat} in width {'; '.join(parts)}{note}.")  # fmt: skip
    return "\n\n".join(sentences) + (
        "\n\nSuper consistency (Noci et al. 2024) predicts `k` near 0 under muP at every "
        "step; a `k` away from 0 under SP means the same LR meets a different curvature at "
        "each width."
    )


PROJECTION_NAMES = {"dense": "dense", "sparse": "sparse", "fastfood": "Fastfood"}
"""How sentences name the random projections."""


def _d_int_phrase(row: dict) -> str:
    """``d_int [lo, hi]``, ``more`` for an unbounded upper end, ``not reached`` when no
    ``d`` tried reaches the target."""
    if not math.isfinite(row["d_int"]):
        return "not reached"
    hi = "more" if not math.isfinite(row["d_int_hi"]) else f"{row['d_int_hi']:,.0f}"
    return f"{row['d_int']:,.0f} [{row['d_int_lo']:,.0f}, {hi}]"


def _key(table: pl.DataFrame) -> str:
    return f"`d_int{round(100 * table['threshold'][0])}`"


def _apart(table: pl.DataFrame, axis: str, task: str) -> str:
    """Where SP's and muP's intervals on ``task`` do not overlap, along ``axis``."""
    by_size: dict[int, dict[str, dict]] = {}
    for row in table.filter(pl.col("task") == task).iter_rows(named=True):
        by_size.setdefault(row[axis], {})[row["parametrization"]] = row
    fewer: dict[str, list[int]] = {"mup": [], "sp": []}
    for size, pair in sorted(by_size.items()):
        if {"sp", "mup"} <= set(pair):
            for first, second in (("mup", "sp"), ("sp", "mup")):
                if pair[first]["d_int_hi"] < pair[second]["d_int_lo"]:
                    fewer[first].append(size)
    said = [f"{PARAMETRIZATION_NAMES[p]} needs fewer directions than "
            f"{PARAMETRIZATION_NAMES['sp' if p == 'mup' else 'mup']} at {axis} "
            f"{', '.join(map(str, sizes))}" for p, sizes in fewer.items() if sizes]  # fmt: skip
    if not said:
        return f"On {task} the SP and muP intervals overlap at every {axis}."
    return f"On {task} {'; '.join(said)} (intervals apart); elsewhere they overlap."


def d_int_across(table: pl.DataFrame, *, axis: str = "width",
                 scaling: pl.DataFrame | None = None) -> str:  # fmt: skip
    """What a slice of :func:`toolkit.analysis.intrinsic.d_int_table` along ``axis`` shows:
    one bullet per task and parametrization with ``d_int`` and its interval at every size
    (with the parameter count ``D``), the exponent of ``d_int ~ D**k`` from ``scaling``
    (:func:`toolkit.analysis.intrinsic.d_int_scaling` by task and parametrization) when
    given, and the range of the full-training baseline; then, per task, where SP and muP
    need a different number of directions (only where their intervals are apart)."""
    if table.height == 0:
        raise InputError("the d_int table is empty: no measurement to describe")
    lines = []
    series = [(task, param) for task in ordered(table, "task")
              for param in ordered(table, "parametrization")]  # fmt: skip
    for task, param in series:
        rows = table.filter(pl.col("task") == task, pl.col("parametrization") == param)
        if rows.height == 0:
            continue
        rows = rows.sort(axis)
        sizes = "; ".join(f"{r[axis]} (D = {r['D']:,}): {_d_int_phrase(r)}"
                          for r in rows.iter_rows(named=True))  # fmt: skip
        text = f"- **{task}, {PARAMETRIZATION_NAMES.get(param, param)}**, by {axis}: {sizes}"
        fit = None if scaling is None else scaling.filter(
            pl.col("task") == task, pl.col("parametrization") == param)
        if fit is not None and fit.height == 1 and math.isfinite(fit["exponent_lo"][0]):
            row = fit.row(0, named=True)
            text += (f"; `d_int ~ D^k` with k = {row['exponent']:+.2f} "
                     f"[{row['exponent_lo']:+.2f}, {row['exponent_hi']:+.2f}] over "
                     f"{row['points']} sizes with a bounded interval")  # fmt: skip
        baseline = rows["baseline"]
        text += f"; full training reaches {baseline.min():.2f} to {baseline.max():.2f}."
        lines.append(text)
    both = [task for task in ordered(table, "task")
            if table.filter(pl.col("task") == task)["parametrization"].n_unique() > 1]
    compared = [_apart(table, axis, task) for task in both]
    intervals = f"{table['confidence'][0]:.0%}"
    return (f"{_key(table)} with its {intervals} interval:\n\n" + "\n".join(lines)
            + ("\n\n" + " ".join(compared) if compared else ""))


def projections_compared(table: pl.DataFrame) -> str:
    """Per model shape (width, depth) of a :func:`toolkit.analysis.intrinsic.d_int_table`
    slice measured under more than one projection, ``d_int`` under each and how far apart
    they are (largest over smallest reached value); then the largest such ratio."""
    lines, ratios = [], []
    shapes = table.sort("width", "depth").group_by(["width", "depth"], maintain_order=True)
    for (width, depth), rows in shapes:
        if rows["projection"].n_unique() < 2:
            continue
        said = ", ".join(f"{PROJECTION_NAMES.get(r['projection'], r['projection'])} "
                         f"{_d_int_phrase(r)}" for r in rows.iter_rows(named=True))  # fmt: skip
        reached = rows.filter(pl.col("d_int").is_finite())["d_int"]
        text = f"- width {width}, depth {depth} (D = {rows['D'][0]:,}): {said}"
        if reached.len() > 1:
            ratios.append(reached.max() / reached.min())
            text += f"; {ratios[-1]:.2f}x apart"
        lines.append(text + ".")
    if not lines:
        raise InputError("no model shape in the table is measured under two projections")
    summary = (f"\n\nAt most {max(ratios):.2f}x apart over these shapes." if ratios else "")
    return f"{_key(table)} by projection:\n\n" + "\n".join(lines) + summary


def toy_problem(table: pl.DataFrame) -> str:
    """What the toy-problem store shows: ``table`` is
    :func:`toolkit.analysis.intrinsic.toy_d_int` (a row per projection and seed). Says
    how many searches reached an exact minimum first at ``d`` = the number of
    constraints, and names every one that did not."""
    if table.is_empty():
        raise InputError("table is empty: give toy_d_int of a toy-problem store")
    groups, D = int(table["groups"][0]), int(table["D"][0])
    names = ", ".join(PROJECTION_NAMES.get(p, p) for p in table["projection"].unique(
        maintain_order=True))  # fmt: skip
    exact = table.filter(pl.col("d_int") == groups)
    said = (f"On Li et al.'s toy problem (D = {D:,}, {groups} constraints, so an intrinsic "
            f"dimension of exactly {groups}), {exact.height} of {table.height} subspace "
            f"searches ({table['seed'].n_unique()} seeds of each of {names}) first hold an "
            f"exact minimum at d = {groups}.")  # fmt: skip
    others = table.filter(pl.col("d_int").is_null() | (pl.col("d_int") != groups))
    if others.height:
        listed = "; ".join(
            f"{r['projection']} seed {r['seed']}: "
            + (f"d = {r['d_int']}" if r["d_int"] is not None else f"none up to d = {r['max_d']}")
            for r in others.iter_rows(named=True)
        )
        said += f" The others: {listed}."
    return said
