"""The coordinate check: does each layer's activation size stay put as width grows?

Train models of several widths for a few steps at a large learning rate and
record the mean absolute value (and RMS) of every layer's output at steps
``t = 0..steps`` on one fixed batch (Yang et al. 2021, "Tensor Programs V",
section 7.1). Under muP each hidden layer's value is nearly width-independent
at every step; under SP with Adam the hidden layers grow with width once the
first update lands. Seeds are trained together as one ensemble per width and
averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl

from toolkit.engine.data import Task, load_task
from toolkit.engine.probes import activation_stats
from toolkit.engine.train import Member, TrainConfig, train
from toolkit.errors import InputError, check_positive


def coord_check(
    config: TrainConfig,
    widths: Sequence[int],
    *,
    lr: float,
    seeds: Sequence[int] = (0,),
    task: Task | None = None,
    device: str = "cpu",
) -> pl.DataFrame:
    """Activation sizes per width, layer and step, averaged over ``seeds``.

    Args:
        config: shared settings; ``config.steps`` is the number of updates,
            records are at ``t = 0..steps``; ``config.width`` is replaced by
            each of ``widths``.
        widths: widths to compare (each at least the parametrization's base width).
        lr: the (large) learning rate used at every width.
        seeds: seeds to average over (trained together as one ensemble).

    Returns:
        A tidy frame ``width, layer, role, step, stat, value`` with ``stat`` in
        ``l1`` (mean |activation|) and ``rms``.
    """
    if len(widths) == 0:
        raise InputError("widths=[] is empty: give at least one width")
    for width in widths:
        check_positive("width", width, integer=True)
    base = config.parametrization.base_width
    if min(widths) < base:
        raise InputError(
            f"base_width={base} is larger than the smallest width {min(widths)}: "
            "the coordinate check compares widths at or above the base width"
        )
    if len(seeds) == 0:
        raise InputError("seeds=[] is empty: give at least one seed")
    task = task or load_task(config.task)
    members = [Member(lr=lr, seed=int(s)) for s in seeds]
    frames = []
    for width in widths:
        width_config = replace(config, width=int(width), eval_every=config.steps)
        records = train(
            width_config,
            members,
            task=task,
            probes=[activation_stats],
            probe_steps=range(config.steps + 1),
            device=device,
        )
        frames.append(
            records.probes.group_by("layer", "role", "step", "stat", maintain_order=True)
            .agg(pl.col("value").mean())
            .with_columns(width=pl.lit(int(width), dtype=pl.Int64))
        )
    return pl.concat(frames).select("width", "layer", "role", "step", "stat", "value")


def width_ratios(frame: pl.DataFrame, *, stat: str = "l1") -> pl.DataFrame:
    """Ratio of each layer's value at each width to its value at the smallest width.

    Returns ``layer, role, step, width, ratio``; a ratio near 1 at every step is
    what muP promises for hidden layers.
    """
    rows = frame.filter(pl.col("stat") == stat)
    smallest = rows.filter(pl.col("width") == pl.col("width").min()).select(
        "layer", "step", pl.col("value").alias("base_value")
    )
    return (
        rows.join(smallest, on=["layer", "step"])
        .with_columns(ratio=pl.col("value") / pl.col("base_value"))
        .select("layer", "role", "step", "width", "ratio")
        .sort("layer", "step", "width")
    )
