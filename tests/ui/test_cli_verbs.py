"""The intrinsic-dimension and Transformer coordinate-check verbs print their contract records."""

from __future__ import annotations

import json
import subprocess
import sys


def _json(*argv: str):
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", *argv], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_intrinsic_dim_json_records_name_the_threshold():
    records = _json(
        "intrinsic-dim", "--model", "mlp", "--task", "digits", "--parametrization", "sp,mup",
        "--widths", "16", "--depths", "1", "--seeds", "2", "--steps", "20",
        "--projection", "fastfood", "--threshold", "0.8", "--json",
    )  # fmt: skip
    assert [r["parametrization"] for r in records] == ["sp", "mup"]
    keys = {"width", "depth", "parametrization", "projection", "D", "baseline", "d_int80",
            "d_int80_lo", "d_int80_hi"}  # fmt: skip
    assert all(set(r) == keys for r in records)
    assert all(r["D"] > 0 and 0 < r["baseline"] <= 1 for r in records)


def test_transformer_coord_check_defaults_to_the_character_corpus_and_shows_attention_logits():
    records = _json(
        "coord-check", "--model", "transformer", "--widths", "32,64", "--depth", "1",
        "--steps", "1", "--batch-size", "4", "--json",
    )  # fmt: skip
    roles = {r["layer"]: r["role"] for r in records}
    assert roles["block1.attn.logits"] == "hidden"
    assert {r["stat"] for r in records} >= {"l1", "rms"}
    assert {r["width"] for r in records} == {32, 64}


def test_spectra_json_records_carry_the_spectral_statistics():
    records = _json(
        "spectra", "--task", "digits", "--parametrization", "sp,mup", "--widths", "16,32",
        "--depths", "2", "--lrs", "0.01", "--steps", "10", "--json",
    )  # fmt: skip
    assert {"width", "depth", "parametrization", "layer", "role", "step", "stat", "value"} <= set(
        records[0]
    )
    assert {tuple(sorted(r)) for r in records} == {tuple(sorted(
        ("width", "depth", "parametrization", "optimizer", "lr", "weight_decay", "seed",
         "layer", "role", "step", "stat", "value")))}  # fmt: skip
    stats = {r["stat"] for r in records}
    assert stats >= {"sigma_max", "stable_rank", "fro_norm", "cond_ratio", "delta_cond_ratio",
                     "update_cond_ratio", "act_rms"}  # fmt: skip
    assert not any(s.startswith("sv_") for s in stats)
    assert {r["parametrization"] for r in records} == {"sp", "mup"}
