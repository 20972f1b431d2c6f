"""The prose a notebook shows quotes the numbers of the store it reads."""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl
import pytest

import toolkit.store
from toolkit.analysis.optima import optimal_lr
from toolkit.analysis.transfer import drift, transfer_regret
from toolkit.paths import shipped
from toolkit.ui import findings, landscape_findings


def test_width_findings_quote_the_shipped_optima_drifts_and_regrets():
    runs = toolkit.store.open(shipped("width_transfer")).runs().collect()
    text = findings.transfer(runs)
    lines = text.splitlines()
    series = [line.split("**")[1] for line in lines]
    assert series == ["SP, adam", "SP, sgd", "muP, adam", "muP, sgd"]
    optima = optimal_lr(runs)
    slopes = drift(optima)
    regret = transfer_regret(runs)
    for line in lines:
        name, optimizer = line.split("**")[1].split(", ")
        param = {"SP": "sp", "muP": "mup"}[name]
        mine = (pl.col("parametrization") == param) & (pl.col("optimizer") == optimizer)
        row = slopes.filter(mine).row(0, named=True)
        assert f"drift of {row['slope']:+.2f} " in line
        assert f"[{row['slope_lo']:+.2f}, {row['slope_hi']:+.2f}]" in line
        series = optima.filter(mine).sort("width")
        first, last = series["log2_lr_grid"][0], series["log2_lr_grid"][-1]
        narrow, wide = series["width"][0], series["width"][-1]
        assert re.search(rf"from 2\^{first:.0f} at width {narrow} to 2\^{last:.0f} at {wide}",
                         line)  # fmt: skip
        cost = regret.filter(mine, pl.col("width") == wide)["regret"][0]
        assert f"costs {cost:.3f} in loss" in line


def test_a_series_without_enough_measured_optima_says_so():
    runs = pl.DataFrame(
        {"parametrization": "sp", "optimizer": "adam", "width": w, "lr": 2.0**x, "seed": 0,
         "status": "ok", "final_train_loss": 1.0 + 0.1 * (x + 20) ** 2}
        for w in (32, 64, 128) for x in range(-12, -1)
    )  # fmt: skip
    text = findings.transfer(runs)
    assert "no drift can be fitted: only 0 optima are measured (3 lie at the grid's edge)" in text


def test_best_cells_on_the_grid_edge_are_reported_as_unable_to_locate_the_optimum():
    from toolkit.analysis.optima import lr_curves
    from toolkit.analysis.transfer import best_cells

    runs = pl.DataFrame(
        {"weight_decay_scaling": "none", "width": w, "lr": 2.0**x, "weight_decay": wd,
         "seed": 0, "status": "ok",
         "final_train_loss": 1.0 + 0.1 * (x + shift) ** 2 + wd}
        for w, shift in ((64, 7.0), (128, 12.0)) for x in range(-10, -4) for wd in (0.0, 0.1)
    )  # fmt: skip
    best = best_cells(lr_curves(runs), by=("weight_decay_scaling", "width"))
    assert best["log2_lr_at_edge"].to_list() == [False, True]  # -7 inside, -12 below -10
    text = findings.grid_optima(best, by=("weight_decay_scaling", "width"))
    assert text.startswith("**2 of 2 best cells lie on an edge") and "none/128" in text
    inside = best_cells(lr_curves(runs.filter(pl.col("width") == 64, pl.col("weight_decay") > 0)),
                        by=("weight_decay_scaling", "width"))  # fmt: skip
    assert inside["log2_lr_at_edge"].to_list() == [False]


def _constant_runs(drifts: dict, shifts: dict, *, noise: float = 0.004) -> pl.DataFrame:
    """Runs with a known optimum per LR-constant setting: ``log2 lr* = -6 + shift + drift *
    log2(width / 32)``, quadratic loss around it with seed noise; a null is a constant at 1."""
    rng = np.random.default_rng(0)
    rows = []
    for (name, value), slope in drifts.items():
        for w in (32, 64, 128, 256):
            best = -6.0 + shifts[name, value] + slope * math.log2(w / 32)
            for x in range(-12, 0):
                for seed in (0, 1):
                    loss = 1.0 + 0.05 * (x - best) ** 2 + noise * rng.standard_normal()
                    rows.append({"parametrization": "mup", "optimizer": "adam", "width": w,
                                 "lr": 2.0**x, "seed": seed, "status": "ok",
                                 "final_train_loss": loss,
                                 "lr_output": value if name == "lr_output" else None,
                                 "lr_input": value if name == "lr_input" else None})  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None)


def test_lr_constant_findings_name_the_constant_that_flattens_the_drift():
    drifts = {("lr_output", None): 0.3, ("lr_output", 4.0): 0.0, ("lr_input", 4.0): 0.3}
    shifts = {("lr_output", None): 0.0, ("lr_output", 4.0): -2.0, ("lr_input", 4.0): 0.0}
    runs = _constant_runs(drifts, shifts)
    text = findings.lr_constants(runs)
    filled = runs.with_columns(pl.col("lr_output", "lr_input").fill_null(1.0))
    slopes = drift(optimal_lr(filled))
    lines = text.splitlines()
    assert lines[0].startswith("- **every constant 1** (baseline)")
    # the baseline first, then input before output
    for line, (label, output, input_) in zip(
        lines[:3], [("every constant 1", 1.0, 1.0), ("lr_input = 4", 1.0, 4.0),
                    ("lr_output = 4", 4.0, 1.0)], strict=True
    ):  # fmt: skip
        assert line.startswith(f"- **{label}**")
        row = slopes.filter(pl.col("lr_output") == output, pl.col("lr_input") == input_).row(
            0, named=True
        )
        assert f"drift of {row['slope']:+.2f} " in line
        assert f"[{row['slope_lo']:+.2f}, {row['slope_hi']:+.2f}]" in line
    verdict = text.split("\n\n")[1]
    assert verdict.startswith("**lr_output = 4 flattens the drift**")
    # -2 octaves by design: the readout's LR alone sets the optimum in these runs
    assert re.search(r"moves most with \*\*lr_output = 4\*\*: -(1\.9\d|2\.0\d) octaves", verdict)
    assert re.search(r"moves by [+-]0\.0\d octaves \(\[-0\.\d\d, \+0\.\d\d\]", lines[1])


def test_lr_constant_findings_say_when_no_constant_flattens_the_drift():
    drifts = {("lr_output", None): 0.3, ("lr_output", 0.25): 0.3, ("lr_input", 4.0): 0.35}
    shifts = {("lr_output", None): 0.0, ("lr_output", 0.25): 1.0, ("lr_input", 4.0): 0.0}
    text = findings.lr_constants(_constant_runs(drifts, shifts))
    assert "**None of the constants flattens the drift**" in text
    assert "lr_output = 1/4" in text


def test_lr_constant_findings_treat_an_edge_optimum_as_a_bound():
    drifts = {("lr_output", None): 0.3, ("lr_output", 4.0): 0.3}
    shifts = {("lr_output", None): 0.0, ("lr_output", 4.0): -7.0}  # below the grid at 32
    text = findings.lr_constants(_constant_runs(drifts, shifts))
    assert "at width 32 its optimum is a bound (below the grid)" in text


def test_lr_constant_findings_quote_the_shipped_diagnosis_store():
    runs = toolkit.store.open(shipped("transfer_diagnosis")).runs().collect()
    text = findings.lr_constants(runs)
    settings = findings.lr_constant_settings(runs)
    optima = findings.lr_constant_settings(optimal_lr(settings))
    slopes = findings.lr_constant_settings(drift(optima))
    lines = text.split("\n\n")[0].splitlines()
    assert len(lines) == slopes.height == 7  # the baseline and six settings
    for line in lines:
        label = line.split("**")[1]
        row = slopes.filter(pl.col("setting") == label).row(0, named=True)
        assert f"drift of {row['slope']:+.2f} " in line
        assert f"[{row['slope_lo']:+.2f}, {row['slope_hi']:+.2f}]" in line
    base = slopes.filter(pl.col("setting") == "every constant 1").row(0, named=True)
    flattened = [
        row["setting"] for row in slopes.iter_rows(named=True)
        if abs(row["slope"]) < abs(base["slope"])
        and math.hypot(row["slope_hi"] - row["slope_lo"], base["slope_hi"] - base["slope_lo"]) / 2
        < abs(row["slope"] - base["slope"])
    ]  # fmt: skip
    verdict = text.split("\n\n")[1]
    if flattened:
        assert all(label in verdict.split("flatten")[0] for label in flattened)
    else:
        assert verdict.startswith("**None of the constants flattens the drift**")


SWEPT = ("output_alpha", "init_sigma")


def test_hyperparameter_findings_quote_the_shipped_optima_drifts_regrets_and_verdicts():
    from toolkit.analysis.optima import (
        grid_disagreement,
        hyperparameter_curves,
        optimal_hyperparameter,
        swept,
    )

    runs = toolkit.store.open(shipped("hyperparameter_transfer")).runs().collect()
    text = findings.hyperparameter_transfer(runs, SWEPT)
    paragraphs = text.split("\n\n**")  # one section per hyperparameter
    assert [p.lstrip("*").split("**")[0] for p in paragraphs] == list(SWEPT)
    for x, paragraph in zip(SWEPT, paragraphs, strict=True):
        mine = swept(runs, x)
        optima = grid_disagreement(optimal_hyperparameter(mine, x), hyperparameter_curves(mine, x))
        slopes = drift(optima)
        regret = transfer_regret(mine, x=x)
        stays = {}
        for param, name in (("sp", "SP"), ("mup", "muP")):
            (line,) = [ln for ln in paragraph.splitlines() if ln.startswith(f"- **{name}**")]
            row = slopes.filter(pl.col("parametrization") == param).row(0, named=True)
            assert f"drift of {row['slope']:+.2f} " in line
            assert f"[{row['slope_lo']:+.2f}, {row['slope_hi']:+.2f}]" in line
            stays[param] = row["slope_lo"] <= 0 <= row["slope_hi"]
            for width in (32, 512):
                end = optima.filter(pl.col("parametrization") == param, pl.col("width") == width)
                end = end.row(0, named=True)
                if end["fit"] == "ok":
                    lo, hi = end[f"log2_{x}_lo"], end[f"log2_{x}_hi"]
                    assert f"[{lo:.2f}, {hi:.2f}] in log2" in line
                    warned = f"disagrees with the best grid value, 2^{end[f'log2_{x}_grid']:g}"
                    assert (warned in line) == end["off_grid"]
                else:  # a bound or unmeasured: named as such, never an interval
                    assert f"at width {width}" in line and (
                        "a bound" in line or "unmeasured" in line
                    )
            cost = regret.filter(pl.col("parametrization") == param, pl.col("width") == 512)
            assert f"costs {cost['regret'][0]:.3f} in loss at width 512" in line
        holds = stays["mup"] and not stays["sp"]
        assert ("claim **holds** here" in paragraph) == holds
        assert ("claim does **not** hold here" in paragraph) == (not holds)


def _multiplier_runs(optima: dict[tuple[str, int], float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"parametrization": p, "optimizer": "adam", "width": w, "depth": 3, "lr": 2.0**-7,
         "output_alpha": 2.0**a, "init_sigma": 1.0, "seed": s, "status": "ok",
         "final_train_loss": 0.5 + 0.05 * (a - a_opt) ** 2 + 0.01 * ((7 * s + a) % 3 - 1)}
        for (p, w), a_opt in optima.items() for a in range(-4, 5) for s in range(3)
    )  # fmt: skip


def test_the_verdict_follows_the_drift_intervals_and_names_a_censored_optimum():
    widths = (32, 64, 128, 256, 512)
    as_claimed = {**{("mup", w): 0.5 for w in widths},
                  **{("sp", w): 2.0 - (i * 0.9) for i, w in enumerate(widths)}}  # fmt: skip
    text = findings.hyperparameter_transfer(_multiplier_runs(as_claimed), ("output_alpha",))
    assert "claim **holds** here for output_alpha" in text
    both_move = {**as_claimed, **{("mup", w): -1.0 + i for i, w in enumerate(widths)}}
    both_move[("mup", 512)] = 6.0  # above the grid at the widest width
    text = findings.hyperparameter_transfer(_multiplier_runs(both_move), ("output_alpha",))
    assert "claim does **not** hold here for output_alpha: muP's optimum moves" in text
    (mup,) = [line for line in text.splitlines() if line.startswith("- **muP**")]
    assert "above the grid (best at its edge, 2^4: a bound, not a measurement) at width 512" in mup


def _start(start: str, d: float, lo: float, hi: float) -> dict:
    return {"start": start, "threshold": 0.9, "confidence": 0.9, "d_int": d, "d_int_lo": lo,
            "d_int_hi": hi}  # fmt: skip


def test_the_finetuning_finding_claims_a_difference_only_when_the_intervals_do_not_overlap():
    from toolkit.ui.landscape_findings import finetuning

    apart = pl.DataFrame([_start("pretrained", 20, 16, 24), _start("scratch", 60, 50, 70)])
    assert "needs fewer directions" in finetuning(apart)
    worse = pl.DataFrame([_start("pretrained", 59, 50, 70), _start("scratch", 20, 16, 24)])
    assert "*more* directions" in finetuning(worse)
    overlap = pl.DataFrame([_start("pretrained", 59, 40, 80), _start("scratch", 55, 40, 70)])
    text = finetuning(overlap)
    assert "cannot tell" in text and "59 [40, 80]" in text and "55 [40, 70]" in text
    unreached = pl.DataFrame([_start("pretrained", math.inf, math.inf, math.inf),
                              _start("scratch", 55, 40, math.inf)])  # fmt: skip
    assert "not reached" in finetuning(unreached) and "55 [40, more]" in finetuning(unreached)


def test_the_sharpness_finding_quotes_each_exponent_and_what_its_interval_says():
    from toolkit.analysis.sharpness import width_exponent

    rows = []
    for parametrization, k in (("mup", 0.0), ("sp", 0.6)):
        for step in (0, 25, 500):
            for width in (32, 64, 128, 256):
                for seed, wobble in enumerate((-0.02, 0.03)):
                    log2_value = k * np.log2(width) + wobble * (1 + (width == 64))
                    rows.append({"run_id": f"{parametrization}{step}{width}{seed}",
                                 "step": step, "parametrization": parametrization,
                                 "optimizer": "adam", "lr": 2.0**-7, "width": width,
                                 "seed": seed, "iterations": 9,
                                 "converged": seed == 0 or width > 32,
                                 "sharpness": 2.0**log2_value})  # fmt: skip
    fits = width_exponent(pl.DataFrame(rows))
    text = landscape_findings.sharpness(fits)
    for row in fits.filter(pl.col("step") == 500).rows(named=True):
        lo, hi = row["exponent_lo"], row["exponent_hi"]
        assert f"{row['exponent']:+.2f} [{lo:+.2f}, {hi:+.2f}]" in text
    assert "at step 25" in text and "at step 500" in text and "at step 0:" not in text
    assert "muP k = " in text and "consistent with no change in width" in text
    assert "SP k = +0.6" in text and "growing with width" in text
    assert "LR 2^-7" in text and "(6 probe values left out" in text


def test_horizon_findings_quote_each_optimum_the_exponent_and_its_censored_count():
    from toolkit.analysis.transfer import power_law_exponent

    runs = toolkit.store.open(shipped("horizon")).runs().collect()
    text = findings.horizon(runs)
    optima = optimal_lr(runs)
    law = power_law_exponent(optima).row(0, named=True)
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(bullets) == optima.height
    for line, row in zip(bullets, optima.sort("steps").iter_rows(named=True), strict=True):
        assert line.startswith(f"- {row['steps']} steps: ")
        assert f"[{row['log2_lr_lo']:.2f}, {row['log2_lr_hi']:.2f}] in log2" in line
    assert f"**alpha = {law['alpha']:.2f}**" in text
    assert f"[{law['alpha_lo']:.2f}, {law['alpha_hi']:.2f}]" in text
    assert f"through the {law['points']} measured optima" in text
    assert f"{law['censored']} optima censored at the grid's edge" in text
    assert ("optimal LR **falls**" in text) == (law["alpha_lo"] > 0)
    assert "Bjorck et al. 2024" in text


def test_horizon_findings_without_enough_measured_optima_fit_no_power_law():
    runs = pl.DataFrame(
        {"parametrization": "mup", "optimizer": "adam", "steps": t, "lr": 2.0**x, "seed": 0,
         "status": "ok", "final_train_loss": 1.0 + 0.1 * (x - opt) ** 2}
        for t, opt in ((125, -6.0), (250, -20.0), (500, -20.0)) for x in range(-12, -1)
    )  # fmt: skip
    text = findings.horizon(runs)
    assert "No power law can be fitted: only 1 optimum is measured (2 censored" in text
    assert "below the grid" in text and "alpha =" not in text
    assert "cannot say whether the optimal LR falls" in text


def _decay_grid_runs(wd_drift: dict[str, float], rng: np.random.Generator) -> pl.DataFrame:
    """AdamW runs of three widths on a 4 x 5 (LR, WD) grid per rule: validation loss a bowl in
    (log2 lr, log2 wd) around LR 2^-6.2 and a WD optimum 2^-2.8 at width 64 that moves by
    ``wd_drift[rule]`` octaves per doubling of width; two seeds, noise 0.002."""
    rows = []
    for rule, slope in wd_drift.items():
        for width in (64, 128, 256):
            wd_opt = -2.8 + slope * np.log2(width / 64)
            for a in range(-8, -4):
                for b in range(-5, 0):
                    for seed in (0, 1):
                        loss = 0.6 + 0.05 * ((a + 6.2) ** 2 + (b - wd_opt) ** 2)
                        rows.append({"parametrization": "mup", "optimizer": "adamw",
                                     "weight_decay_scaling": rule, "width": width,
                                     "base_width": 64, "steps": 2000, "lr": 2.0**a,
                                     "weight_decay": 2.0**b, "seed": seed, "status": "ok",
                                     "final_val_loss": loss + rng.normal(0, 0.002)})  # fmt: skip
    return pl.DataFrame(rows)


def test_weight_decay_findings_name_the_rule_whose_optimal_pair_stays_flat():
    runs = _decay_grid_runs({"none": 0.5, "sqrt_width": 0.0}, np.random.default_rng(0))
    text = findings.weight_decay_transfer(runs)
    bullets = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- ")}
    assert set(bullets) == {"none", "sqrt_width"}
    for line in bullets.values():
        assert "3 of 3 widths have their optimum inside the grid on both axes" in line, line
    slopes = re.findall(r"optimal WD: a fitted drift of ([+-][\d.]+)", bullets["none"])
    assert float(slopes[0]) == pytest.approx(0.5, abs=0.1)
    # the best cell at width 64 is LR 2^-6, WD 2^-3: 1 / (2^-6 * 2^-3) = 512 steps of 2000
    assert "is 512 steps, 0.26 of the 2000 trained" in text
    assert text.endswith("both have 0 inside their drift's interval: sqrt_width.")


def test_weight_decay_findings_say_when_a_width_optimum_is_outside_the_grid():
    runs = _decay_grid_runs({"coupled": -1.5}, np.random.default_rng(1))  # 2^-5.8 at width 256
    text = findings.weight_decay_transfer(runs)
    assert "2 of 3 widths have their optimum inside the grid on both axes" in text, text
