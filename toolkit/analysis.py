"""Analysis of results: polars frames in, polars frames out.

No training, no plotting.
"""

from __future__ import annotations

import polars as pl

#: Columns that identify one LR curve: everything that is not LR, seed or outcome.
CONFIG_KEYS = ("study", "model", "task", "parametrization", "optimizer", "width", "depth",
               "weight_decay", "batch_size", "steps")  # fmt: skip


def grid_optima(runs: pl.DataFrame, *, metric: str = "final_train_loss") -> pl.DataFrame:
    """Best learning rate on the grid per configuration, averaging ``metric`` over seeds.

    Diverged runs count as worse than any finite loss (their LR is not optimal);
    a configuration whose runs all diverged has a null optimum. Returns one row
    per configuration with ``lr_opt``, ``log2_lr_opt``, ``loss_opt``,
    ``lrs`` (grid size) and ``diverged`` (runs that diverged).
    """
    keys = [k for k in CONFIG_KEYS if k in runs.columns]
    per_lr = runs.group_by(*keys, "lr").agg(
        pl.col(metric).filter(pl.col("status") == "ok").mean().alias("loss"),
        (pl.col("status") == "diverged").sum().alias("diverged"),
    )
    best = (
        per_lr.sort("loss", nulls_last=True)
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("lr").first().alias("lr_opt"),
            pl.col("loss").first().alias("loss_opt"),
            pl.len().alias("lrs"),
            pl.col("diverged").sum(),
        )
        .with_columns(
            pl.when(pl.col("loss_opt").is_null())
            .then(None)
            .otherwise(pl.col("lr_opt"))
            .alias("lr_opt")
        )
        .with_columns(log2_lr_opt=pl.col("lr_opt").log(2))
    )
    return best.sort(keys)
