"""What the loss-landscape studies show, as sentences built from their numbers: sharpness
across width (notebook 05) and the fine-tuning comparison of intrinsic dimensions (notebook
06). The same contract as :mod:`toolkit.ui.findings`: prose quotes the store it runs on."""

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
