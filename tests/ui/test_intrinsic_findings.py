"""The intrinsic-dimension sentences of notebook 06 quote the table they are given."""

import math

import polars as pl
import pytest

from toolkit.analysis import intrinsic
from toolkit.errors import InputError
from toolkit.ui import landscape_findings


def _row(task, param, width, d, lo, hi, *, projection="fastfood", baseline=0.9) -> dict:
    return {"task": task, "parametrization": param, "projection": projection, "width": width,
            "depth": 2, "D": 100 * width, "baseline": baseline, "d_int": d, "d_int_lo": lo,
            "d_int_hi": hi, "threshold": 0.9, "confidence": 0.9}  # fmt: skip


def test_width_sentences_quote_every_d_int_and_say_where_sp_and_mup_are_apart():
    table = pl.DataFrame([
        _row("toy", "sp", 32, 100.0, 90.0, 110.0), _row("toy", "mup", 32, 100.0, 90.0, 110.0),
        _row("toy", "sp", 64, 400.0, 350.0, math.inf), _row("toy", "mup", 64, 200.0, 180.0, 220.0),
        _row("toy", "sp", 128, math.inf, math.inf, math.inf),
        _row("toy", "mup", 128, 300.0, 250.0, 500.0, baseline=0.95),
    ])  # fmt: skip
    text = landscape_findings.d_int_across(table)
    assert text.startswith("`d_int90` with its 90% interval:")
    sp, mup = (line for line in text.splitlines() if line.startswith("- **"))
    assert sp.startswith("- **toy, SP**") and mup.startswith("- **toy, muP**")
    assert "64 (D = 6,400): 400 [350, more]" in sp and "128 (D = 12,800): not reached" in sp
    assert "full training reaches 0.90 to 0.95" in mup
    assert text.endswith("On toy muP needs fewer directions than SP at width 64, 128 (intervals "
                         "apart); elsewhere they overlap.")  # fmt: skip


def test_the_shipped_width_study_quotes_its_fitted_exponents():
    table = intrinsic.d_int_table(intrinsic.load_measurements(), threshold=0.9)
    width = table.filter(pl.col("depth") == 2, pl.col("projection") == "fastfood",
                         pl.col("task") == "digits")  # fmt: skip
    scaling = intrinsic.d_int_scaling(width, by=("task", "parametrization"))
    text = landscape_findings.d_int_across(width, scaling=scaling)
    for row in scaling.iter_rows(named=True):
        assert (f"k = {row['exponent']:+.2f} [{row['exponent_lo']:+.2f}, "
                f"{row['exponent_hi']:+.2f}] over {row['points']} sizes") in text  # fmt: skip
    for row in width.iter_rows(named=True):
        assert f"{row['width']} (D = {row['D']:,}): {row['d_int']:,.0f} [" in text


def test_projection_sentences_give_each_shape_s_spread_and_the_largest():
    table = pl.DataFrame([
        _row("toy", "sp", 32, 100.0, 90.0, 110.0, projection="dense"),
        _row("toy", "sp", 32, 125.0, 90.0, 150.0, projection="fastfood"),
        _row("toy", "sp", 64, 200.0, 90.0, 250.0, projection="dense"),
        _row("toy", "sp", 64, 300.0, 90.0, 350.0, projection="sparse"),
        _row("toy", "sp", 128, 300.0, 90.0, 350.0, projection="fastfood"),
    ])  # fmt: skip
    text = landscape_findings.projections_compared(table)
    assert "width 32, depth 2 (D = 3,200): dense 100 [90, 110], Fastfood 125 [90, 150]; " \
           "1.25x apart." in text
    assert "width 128" not in text  # one projection: nothing to compare
    assert text.endswith("At most 1.50x apart over these shapes.")
    with pytest.raises(InputError, match="two projections"):
        landscape_findings.projections_compared(table.filter(pl.col("width") == 128))


def test_the_toy_problem_sentence_counts_exact_searches_and_names_the_others():
    rows = [{"projection": p, "seed": s, "D": 1000, "groups": 10, "d_int": 10, "max_d": 20}
            for p in ("dense", "fastfood") for s in range(3)]  # fmt: skip
    table = pl.DataFrame(rows)
    text = landscape_findings.toy_problem(table)
    assert "6 of 6 subspace searches (3 seeds of each of dense, Fastfood)" in text
    assert "The others" not in text
    odd = table.with_columns(
        d_int=pl.when(pl.col("seed") == 1).then(pl.lit(None, pl.Int64)).otherwise(pl.col("d_int"))
    )
    text = landscape_findings.toy_problem(odd)
    assert "4 of 6" in text and "dense seed 1: none up to d = 20" in text
