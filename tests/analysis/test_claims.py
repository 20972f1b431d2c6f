"""The claims card: every claim judged on the shipped stores, by one rule, with its number."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from toolkit import store as results
from toolkit.analysis.claim_data import Stores, largest, magnitude
from toolkit.analysis.claim_measures import (
    SHARPNESS_STAT,
    SHARPNESS_STORE,
    WEIGHT_DECAY_STORE,
    base_width_gap,
)
from toolkit.analysis.claim_rules import CLAIMS, Claim
from toolkit.analysis.claims import (
    CARD_COLUMNS,
    FAILS,
    HOLDS,
    UNKNOWN,
    VERDICTS,
    card,
    counts,
    judge,
)
from toolkit.analysis.optima import FIT_OK, optimal_lr
from toolkit.errors import InputError
from toolkit.paths import DATA, REPOSITORY


@pytest.fixture(scope="module")
def shipped() -> pl.DataFrame:
    """The card on the shipped stores, evaluated once for the module."""
    return card()


def _row(frame: pl.DataFrame, claim: str) -> dict:
    return frame.filter(pl.col("id") == claim).row(0, named=True)


def test_the_card_checks_at_least_twelve_claims_each_with_every_field(shipped):
    assert shipped.height >= 12
    assert tuple(shipped.columns) == CARD_COLUMNS
    assert shipped["id"].n_unique() == shipped.height
    for row in shipped.iter_rows(named=True):
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", row["id"]), row["id"]
        assert row["verdict"] in VERDICTS
        for text in ("claim", "source", "unit", "method", "reason", "expect"):
            assert row[text], (row["id"], text)
        assert re.search(r"\d{4}", row["source"]), row["source"]
        if row["verdict"] != UNKNOWN:  # a verdict needs a number, its interval and its level
            assert row["lo"] <= row["value"] <= row["hi"], row
            assert 0 < row["level"] <= 1, row
            assert f"{row['value']:+.3g}" in row["reason"], row["reason"]


def test_every_verdict_quotes_its_tolerance(shipped):
    for row in shipped.filter(pl.col("store").is_not_null(), pl.col("value").is_not_nan()).rows(
        named=True
    ):
        if row["expect"] == "near":
            assert f"± {row['tolerance']:.3g}" in row["reason"], row["reason"]


def test_mup_equals_sp_at_the_base_width_recomputed_from_the_runs(shipped):
    runs = results.open(DATA / "width_transfer").runs().collect()
    base = runs.filter(pl.col("width") == runs["width"].min())
    losses = {}
    for run in base.iter_rows(named=True):
        losses.setdefault((run["optimizer"], run["lr"], run["seed"]), {})[
            run["parametrization"]
        ] = run["final_train_loss"]
    gaps = [abs(p["mup"] - p["sp"]) for p in losses.values() if {"mup", "sp"} <= set(p)]
    row = _row(shipped, "mup-equals-sp-at-base-width")
    assert len(gaps) > 10
    assert row["value"] == pytest.approx(max(gaps), abs=1e-12)
    assert row["verdict"] == (HOLDS if max(gaps) <= row["tolerance"] else FAILS)


def test_sp_drift_recomputed_by_a_direct_least_squares_fit(shipped):
    """SP's drift on the card against an unweighted fit through each width's grid optimum
    (the seed-mean minimum, no refinement): the card's weighted, quadratic-refined slope
    agrees within 0.1 octave per doubling, and both say the optimum falls."""
    runs = results.open(DATA / "width_transfer").runs().collect()
    sp = runs.filter(pl.col("parametrization") == "sp", pl.col("optimizer") == "adam",
                     pl.col("status") == "ok")  # fmt: skip
    mean = sp.group_by("width", "lr").agg(pl.col("final_train_loss").mean())
    best = mean.sort("final_train_loss").group_by("width").first().sort("width")
    x, y = np.log2(best["width"].to_numpy()), np.log2(best["lr"].to_numpy())
    slope = np.polyfit(x, y, 1)[0]
    row = _row(shipped, "sp-optimal-lr-drifts-down")
    assert slope < 0 and row["value"] < 0
    assert abs(row["value"] - slope) < 0.1, (row["value"], slope)


def test_a_pair_where_only_one_run_diverged_is_an_unbounded_gap():
    runs = pl.DataFrame({
        "parametrization": ["sp", "mup", "sp", "mup"], "optimizer": ["adam"] * 4,
        "lr": [0.1, 0.1, 0.2, 0.2], "seed": [0] * 4, "width": [32] * 4, "base_width": [32] * 4,
        "status": ["ok", "ok", "ok", "diverged"], "final_train_loss": [1.0, 1.5, 0.9, None],
    })  # fmt: skip
    assert base_width_gap(runs) == (math.inf, 2, 1)
    assert base_width_gap(runs.head(2)) == (0.5, 1, 0)
    verdict, _ = judge(math.inf, math.inf, math.inf, expect="near", target=0.0, tolerance=1e-6,
                       level=1.0)  # fmt: skip
    assert verdict == FAILS


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((0.05, -0.1, 0.2), HOLDS),  # inside 0 ± 0.25
        ((0.6, 0.4, 0.8), FAILS),  # wholly above the band
        ((-0.6, -0.9, -0.3), FAILS),  # wholly below it
        ((0.2, 0.1, 0.3), UNKNOWN),  # straddles its upper edge
        ((0.0, -0.3, 0.3), UNKNOWN),  # wider than the band on both sides
        ((math.nan, math.nan, math.nan), UNKNOWN),  # no number
        ((0.1, math.nan, math.nan), UNKNOWN),  # no interval
    ],
)
def test_near_verdicts_on_synthetic_intervals(interval, verdict):
    assert judge(*interval, expect="near", target=0.0, tolerance=0.25)[0] == verdict


def test_one_sided_and_coverage_verdicts_on_synthetic_intervals():
    below = {"expect": "below", "target": 0.0, "tolerance": 0.25}
    assert judge(-0.6, -0.7, -0.4, **below)[0] == HOLDS
    assert judge(-0.2, -0.3, -0.1, **below)[0] == UNKNOWN  # straddles -0.25
    assert judge(0.1, -0.1, 0.2, **below)[0] == FAILS  # wholly above -0.25
    above = {"expect": "above", "target": 0.0, "tolerance": 0.1}
    assert judge(0.5, 0.3, 0.7, **above)[0] == HOLDS
    assert judge(0.05, 0.0, 0.09, **above)[0] == FAILS
    covers = {"expect": "covers", "target": 0.0, "tolerance": 0.0}
    assert judge(0.1, -0.1, 0.3, **covers)[0] == HOLDS
    assert judge(0.5, 0.2, 0.8, **covers)[0] == FAILS


def test_the_reason_quotes_the_number_the_interval_and_the_tolerance():
    verdict, reason = judge(0.2, 0.1, 0.3, expect="near", target=0.0, tolerance=0.25)
    assert verdict == UNKNOWN
    assert all(text in reason for text in ("+0.2", "[+0.1, +0.3]", "95%", "0 ± 0.25"))


def test_envelopes_cover_the_largest_value_and_the_largest_magnitude():
    value, lo, hi = largest(np.array([0.1, 0.5]), np.array([0.0, 0.3]), np.array([0.9, 0.6]))
    assert (value, lo, hi) == (0.5, 0.3, 0.9)
    size, near, far = magnitude(np.array([-0.2, 0.1]), np.array([-0.4, -0.1]),
                                np.array([-0.1, 0.3]))  # fmt: skip
    assert near.tolist() == [0.1, 0.0] and far.tolist() == [0.4, 0.3]
    assert size.tolist() == [0.2, 0.1]


def test_the_toy_problem_has_exactly_ten_dimensions_on_every_projection_and_seed(shipped):
    toy = _row(shipped, "toy-d-int-is-10")
    assert toy["verdict"] == HOLDS
    assert (toy["value"], toy["lo"], toy["hi"]) == (10.0, 10.0, 10.0)
    assert "dense" in toy["reason"] and "fastfood" in toy["reason"]


def test_sharpness_is_cannot_tell_until_its_store_is_shipped(shipped):
    row = _row(shipped, "sharpness-width-independent-under-mup")
    if (DATA / SHARPNESS_STORE / "store.json").exists():
        assert row["verdict"] in VERDICTS
    else:
        assert row["verdict"] == UNKNOWN
        assert "no sharpness store shipped" in row["reason"]


def test_a_data_directory_without_a_store_makes_its_claims_cannot_tell(tmp_path):
    shutil.copytree(DATA / "horizon", tmp_path / "horizon")
    frame = card(tmp_path)
    horizon = _row(frame, "optimal-lr-falls-with-horizon")
    assert horizon["verdict"] == HOLDS and horizon["value"] < 0
    width = _row(frame, "mup-optimal-lr-stays")
    assert width["verdict"] == UNKNOWN
    assert f"no width_transfer store in {tmp_path}" in width["reason"]


def test_every_horizon_of_the_shipped_horizon_store_has_an_interior_optimum():
    """The horizon claim rests on measured optima only: at least 6 horizons spanning 16x or
    more, at least 2 seeds each, and every horizon's optimum inside its LR grid."""
    runs = results.open(DATA / "horizon").runs().collect()
    horizons = sorted(runs["steps"].unique())
    assert len(horizons) >= 6 and horizons[-1] >= 16 * horizons[0], horizons
    assert runs.group_by("steps", "lr").agg(pl.col("seed").n_unique())["seed"].min() >= 2
    optima = optimal_lr(runs)
    assert optima.height == len(horizons)
    assert optima.filter(pl.col("fit") != FIT_OK).height == 0, optima.select("steps", "fit")
    assert optima["censored"].null_count() == optima.height


def test_a_data_path_that_is_not_a_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        card(tmp_path / "missing")


def test_counts_add_up_to_the_claims(shipped):
    assert sum(counts(shipped).values()) == shipped.height == len(CLAIMS)


def test_a_claim_rule_must_name_a_known_direction():
    with pytest.raises(ValueError, match="expect"):
        Claim("x", "x.", "x 2020", None, lambda stores: None, "sideways", 0.0, 0.1)


def test_stores_read_each_table_once():
    stores = Stores(DATA)
    assert stores.runs("horizon") is stores.runs("horizon")
    assert not stores.has("no_such_store")


def _sharpness_store(path, exponent: float) -> None:
    """A store of muP runs whose sharpness grows like ``width**exponent`` (times a small
    seed-to-seed scatter), recorded at one step."""
    rows, probes = [], []
    for width in (64, 128, 256, 512):
        for seed in (0, 1, 2):
            run_id = f"w{width}s{seed}"
            rows.append({"run_id": run_id, "study": "sharpness", "model": "mlp",
                         "task": "mnist1d", "parametrization": "mup", "optimizer": "adam",
                         "width": width, "depth": 3, "lr": 2.0**-7, "weight_decay": 0.0,
                         "batch_size": 128, "steps": 100, "seed": seed, "status": "ok",
                         "final_train_loss": 1.0, "final_val_loss": 1.0, "wall_s": 1.0,
                         "toolkit_version": "test", "created_at": "now"})  # fmt: skip
            value = 10.0 * width**exponent * (1 + 0.01 * (seed - 1))
            recorded = {SHARPNESS_STAT: value, f"{SHARPNESS_STAT}_iters": 20.0,
                        f"{SHARPNESS_STAT}_converged": 1.0}  # fmt: skip
            probes += [{"run_id": run_id, "step": 100, "layer": "model", "role": "model",
                        "stat": stat, "value": v} for stat, v in recorded.items()]  # fmt: skip
    curves = pl.DataFrame(schema=results.SCHEMAS["curves"])
    results.Store(path).write_group("g", results.Records(
        pl.DataFrame(rows, schema_overrides=results.SCHEMAS["runs"]), curves,
        pl.DataFrame(probes, schema_overrides=results.SCHEMAS["probes"])))  # fmt: skip


@pytest.mark.parametrize(("exponent", "verdict"), [(0.0, HOLDS), (0.5, FAILS)])
def test_the_sharpness_claim_reads_its_store_once_shipped(tmp_path, exponent, verdict):
    _sharpness_store(tmp_path / SHARPNESS_STORE, exponent)
    claim = [c for c in CLAIMS if c.id == "sharpness-width-independent-under-mup"]
    row = card(tmp_path, claims=claim).row(0, named=True)
    assert row["verdict"] == verdict, row["reason"]
    assert row["value"] == pytest.approx(exponent, abs=0.01)


def test_the_card_is_evaluated_without_torch():
    code = ("import sys; from toolkit.analysis.claims import card; card(); "
            "assert 'torch' not in sys.modules, 'torch imported'")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPOSITORY)


def _decay_store(path, *, lr_wd_exponent: float, width_exponent: float) -> None:
    """A 2000-step AdamW store (coupled and sqrt(width) rules, widths 64-256, a 4 x 5 LR x WD
    grid, 2 seeds) whose hidden matrix ends with ``sigma_max = 3 (lr/wd)**(k/2) (width/64)**e``
    (``k = lr_wd_exponent``, ``e = width_exponent``, times a 1% seed scatter) and whose
    validation loss is lowest at LR 2^-6, WD 1/8 at every width."""
    rows, probes = [], []
    for rule in ("coupled", "sqrt_width"):
        for width in (64, 128, 256):
            for a in range(-8, -4):
                for b in range(-5, 0):
                    for seed in (0, 1):
                        run_id = f"{rule}w{width}a{a}b{b}s{seed}"
                        lr, wd = 2.0**a, 2.0**b
                        rows.append({"run_id": run_id, "study": WEIGHT_DECAY_STORE,
                                     "model": "mlp", "task": "mnist1d", "parametrization": "mup",
                                     "optimizer": "adamw", "weight_decay_scaling": rule,
                                     "width": width, "depth": 2, "lr": lr, "weight_decay": wd,
                                     "batch_size": 128, "steps": 2000, "seed": seed,
                                     "status": "ok", "final_train_loss": 0.5,
                                     "final_val_loss": 0.7 + 0.01 * ((a + 6) ** 2 + (b + 3) ** 2),
                                     "wall_s": 1.0, "toolkit_version": "test",
                                     "created_at": "now"})  # fmt: skip
                        sigma = (3.0 * (lr / wd) ** (lr_wd_exponent / 2)
                                 * (width / 64) ** width_exponent * (1 + 0.01 * (seed - 0.5)))
                        probes.append({"run_id": run_id, "step": 2000, "layer": "hidden1",
                                       "role": "hidden", "stat": "sigma_max",
                                       "value": sigma})  # fmt: skip
    results.Store(path).write_group("g", results.Records(
        pl.DataFrame(rows, schema_overrides=results.SCHEMAS["runs"]),
        pl.DataFrame(schema=results.SCHEMAS["curves"]),
        pl.DataFrame(probes, schema_overrides=results.SCHEMAS["probes"])))  # fmt: skip


@pytest.mark.parametrize(("claim", "exponents", "value", "verdict"), [
    ("sigma-max-sqrt-lr-over-wd", (1.0, 0.0), 1.0, HOLDS),
    ("sigma-max-sqrt-lr-over-wd", (0.3, 0.0), 0.3, FAILS),
    ("sqrt-width-decay-flattens-sigma-max", (1.0, 0.0), 0.0, HOLDS),
    ("sqrt-width-decay-flattens-sigma-max", (1.0, 0.25), 0.25, FAILS),
])  # fmt: skip
def test_the_weight_decay_spectra_claims_read_the_steady_state_store(tmp_path, claim, exponents,
                                                                     value, verdict):
    _decay_store(tmp_path / WEIGHT_DECAY_STORE, lr_wd_exponent=exponents[0],
                 width_exponent=exponents[1])  # fmt: skip
    row = card(tmp_path, claims=[c for c in CLAIMS if c.id == claim]).row(0, named=True)
    assert row["verdict"] == verdict, row["reason"]
    assert row["value"] == pytest.approx(value, abs=0.02)


def test_the_sqrt_lr_over_wd_claim_counts_only_runs_in_steady_state(tmp_path):
    _decay_store(tmp_path / WEIGHT_DECAY_STORE, lr_wd_exponent=1.0, width_exponent=0.0)
    claim = [c for c in CLAIMS if c.id == "sigma-max-sqrt-lr-over-wd"]
    row = card(tmp_path, claims=claim).row(0, named=True)
    # lr * wd * 2000 >= 4 keeps 6 of the 20 (lr, wd) pairs (5 values of lr / wd): 12 runs
    # per width, 3 widths; every run would be 120
    assert "36 matrices, 5 values of lr/wd per width" in row["reason"], row["reason"]


def test_the_shipped_weight_decay_spectra_claims_have_numbers(shipped):
    for claim in ("sigma-max-sqrt-lr-over-wd", "sqrt-width-decay-flattens-sigma-max"):
        row = _row(shipped, claim)
        assert row["store"] == WEIGHT_DECAY_STORE
        assert row["lo"] <= row["value"] <= row["hi"], row["reason"]  # a number, not absent
