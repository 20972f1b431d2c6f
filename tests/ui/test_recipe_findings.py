"""Adam against Muon, each at its own tuned learning rate, in sentences from the runs."""

import math

import polars as pl
import pytest

from toolkit.errors import InputError
from toolkit.ui.recipe_findings import batch_size_timescale, optimizer_comparison


def _runs(centres: dict[str, float], floors: dict[str, float], **extra) -> pl.DataFrame:
    """Two seeds per LR, loss ``floor + 0.05 (log2 lr - centre)^2`` (exact, so the best
    grid LR is the centre)."""
    return pl.DataFrame(
        {"parametrization": "mup", "optimizer": o, "width": w, "depth": 2, "lr": 2.0**x,
         "seed": s, "status": "ok", **extra,
         "final_train_loss": floors[o] + 0.01 * w / 32 + 0.05 * (x - centres[o]) ** 2}
        for o in centres for w in (32, 64) for x in range(-10, -2) for s in (0, 1)
    )  # fmt: skip


def test_each_optimizer_is_quoted_at_its_own_best_lr_and_the_gap_is_the_difference():
    text = optimizer_comparison(_runs({"adam": -7, "muon": -5}, {"adam": 2.0, "muon": 1.8}))
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("- **width 32**")
    assert "Adam 2.010 at its tuned LR 2^-7" in lines[0]
    assert "Muon 1.810 at its tuned LR 2^-5" in lines[0]
    assert lines[0].endswith("Muon is lower by 0.200.")
    assert "Adam 2.020" in lines[1] and "Muon 1.820" in lines[1]


def test_an_optimum_at_the_grid_edge_is_called_a_bound():
    text = optimizer_comparison(_runs({"adam": -7, "muon": -3}, {"adam": 2.0, "muon": 1.8}))
    assert "Muon 1.810 at its tuned LR 2^-3 (the grid's above edge: a bound" in text


def test_runs_that_differ_in_more_than_the_optimizer_are_refused():
    runs = pl.concat([_runs({"adam": -7, "muon": -5}, {"adam": 2.0, "muon": 1.8}),
                      _runs({"adam": -7, "muon": -5}, {"adam": 2.0, "muon": 1.8})
                      .with_columns(depth=pl.lit(4, dtype=pl.Int64))])  # fmt: skip
    with pytest.raises(InputError, match="differ in depth"):
        optimizer_comparison(runs)


def test_the_batch_size_sentence_quotes_the_weight_decay_drift_and_the_timescale():
    """Best weight decay ``B / 2^9`` at ``D = 2^18`` examples and LR ``2^-6``: the optimum
    doubles with the batch size and ``tau = 1 / (lr wd steps) = 2^6 2^9 / 2^18 = 1/8``."""
    runs = pl.DataFrame(
        {"parametrization": "mup", "optimizer": "adamw", "width": 128, "lr": 2.0**-6,
         "batch_size": b, "steps": 2**18 // b, "weight_decay": 2.0**x, "seed": s,
         "status": "ok",
         "final_val_loss": 1.0 + 0.02 * (x - math.log2(b) + 9) ** 2 + 1e-3 * s}
        for b in (32, 64, 128, 256, 512) for x in range(-8, 3) for s in (0, 1)
    )  # fmt: skip
    text = batch_size_timescale(runs)
    assert text.count("\n") == 0 and "**AdamW at LR 2^-6**, 262,144 examples" in text
    assert "from 2^-4 at batch size 32 to 2^0 at 512" in text
    assert "a fitted drift of +1.00 octave" in text
    assert "tau = B / (lr wd D) is 0.125 to 0.125 of the data" in text
