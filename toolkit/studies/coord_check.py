"""The coordinate check: does each layer's activation size stay put as width grows?

Train models of several widths for a few steps at a large learning rate and
record the mean absolute value (and RMS) of every layer's output at steps
``t = 0..steps`` on one fixed batch (Yang et al. 2021, "Tensor Programs V",
section 7.1). Under muP each hidden layer's value is nearly width-independent
at every step; under SP with Adam the hidden layers grow with width once the
first update lands. Seeds are trained together as one ensemble per width.

The divergence guard of :func:`~toolkit.engine.train.train` does not stop anything
here: a member that blows up keeps training and is recorded with its real values
(inf/NaN where they are), flagged ``diverged`` from the step its loss first diverged
or a recorded value first stopped being finite. A frozen member would read as zeros,
which look like activations collapsing where they exploded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl

from toolkit.analysis.coord_check import seed_mean
from toolkit.engine.data import Task, load_task
from toolkit.engine.probes import activation_stats
from toolkit.engine.train import Member, TrainConfig, train
from toolkit.errors import InputError, check_positive

DEFAULT_SEEDS = tuple(range(4))
"""Seeds a coordinate check averages over unless told otherwise: single seeds of a
correct muP MLP scatter by up to 1.5x between widths at step 3."""


def coord_check_seeds(
    config: TrainConfig,
    widths: Sequence[int],
    *,
    lr: float,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    task: Task | None = None,
    device: str = "cpu",
) -> pl.DataFrame:
    """Activation sizes per width, seed, layer and step, each seed on its own.

    Args:
        config: shared settings; ``config.steps`` is the number of updates,
            records are at ``t = 0..steps``; ``config.width`` is replaced by
            each of ``widths``.
        widths: widths to compare (each at least the parametrization's base width).
        lr: the (large) learning rate used at every width.
        seeds: seeds to measure (trained together as one ensemble per width).

    Returns:
        A tidy frame ``width, seed, layer, role, step, stat, value, diverged`` with
        ``stat`` in ``l1`` (mean |activation|) and ``rms``; ``value`` is what the
        member computed, inf or NaN included; ``diverged`` is true from the step the
        member's loss diverged (non-finite, or ``config.divergence_factor`` times its
        first loss) or one of its values stopped being finite.
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
            freeze_diverged=False,
        )
        runs = records.runs.select("run_id", "seed", "diverged_at_step")
        frames.append(
            records.probes.join(runs, on="run_id").with_columns(
                width=pl.lit(int(width), dtype=pl.Int64)
            )
        )
    rows = pl.concat(frames)
    member = ["width", "seed"]
    first_bad = (
        rows.filter(~pl.col("value").is_finite())
        .group_by(member)
        .agg(pl.col("step").min().alias("non_finite_at"))
    )
    onset = pl.min_horizontal("diverged_at_step", "non_finite_at")
    return (
        rows.join(first_bad, on=member, how="left")
        .with_columns(diverged=(pl.col("step") >= onset).fill_null(False))
        .select("width", "seed", "layer", "role", "step", "stat", "value", "diverged")
        .sort("width", "seed", maintain_order=True)
    )


def coord_check(*args: object, **kwargs: object) -> pl.DataFrame:
    """Activation sizes per width, layer and step, averaged over ``seeds``.

    The arguments are those of :func:`coord_check_seeds`. Returns
    :func:`toolkit.analysis.coord_check.seed_mean` of its frame: ``width, layer,
    role, step, stat, value, diverged, seeds_diverged``; a diverged member's inf or
    NaN makes the mean inf or NaN, never a number that hides it.
    """
    return seed_mean(coord_check_seeds(*args, **kwargs))
