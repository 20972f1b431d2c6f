"""The search for ``d_int``: full-training baseline, subspace runs, refinement near the threshold.

``d_int_t`` (Li et al. 2018; see :mod:`toolkit.analysis.intrinsic`) is the
smallest ``d`` whose subspace training ``theta = theta0 + P theta_d``
(:mod:`toolkit.engine.subspace`) reaches ``t`` times the performance of full
training on the same budget. :func:`measure_intrinsic_dim` trains the baseline at
the best of its LR grid, measures ``d`` on a first grid and refines between the
largest failing ``d`` and the estimate (:func:`sweep_intrinsic_dim`); the subspace
LR is tuned per ``d`` on a grid (best mean over seeds), every LR's runs kept so
that the grid-edge status and the interval's allowance for the choice can be
recomputed (:mod:`toolkit.analysis.intrinsic_interval`).

Every run's row carries ``seed, lr, metric, final_val_loss, final_val_accuracy,
status, wall_s`` (subspace rows add ``d``): the performance is the validation
accuracy for classification and ``R^2`` for regression
(:func:`toolkit.engine.subspace.performance`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl
import torch

from toolkit.analysis.intrinsic import IntrinsicDimension, best_lr, estimate_intrinsic_dim
from toolkit.engine.data import Task, load_task
from toolkit.engine.projections import PROJECTION_CLASSES
from toolkit.engine.subspace import (
    SubspaceMember,
    eval_split,
    parameter_count,
    performance,
    stack_start,
    train_subspace,
)
from toolkit.engine.train import Member, TrainConfig, train
from toolkit.studies.intrinsic_settings import DSearch, Measurement

Start = Mapping[int, Mapping[str, torch.Tensor]]
"""``seed -> {tensor name: tensor without the member axis}``: weights replacing the
seeded initialisation (e.g. pre-trained ones)."""

COST_BUDGET = 2.0**26
"""Multiply-adds of projection per step allowed in one ensemble of subspace runs."""


def final_metrics(runs: pl.DataFrame, task: Task, config: TrainConfig) -> pl.DataFrame:
    """``seed, lr, metric, final_val_loss, final_val_accuracy, status, wall_s`` of
    :func:`toolkit.engine.train.train`'s runs, in member order."""
    val = eval_split(task, config.eval_examples)
    loss = torch.tensor(runs["final_val_loss"].fill_null(math.nan).to_numpy())
    accuracy = torch.tensor(runs["final_val_accuracy"].fill_null(math.nan).to_numpy())
    return runs.select(
        "seed",
        "lr",
        pl.Series("metric", performance(val, loss, accuracy).numpy()),
        "final_val_loss",
        "final_val_accuracy",
        "status",
        "wall_s",
    )


def full_training_baseline(
    measurement: Measurement,
    *,
    task: Task,
    start: Start | None = None,
    device: str | torch.device = "cpu",
) -> pl.DataFrame:
    """Full-parameter training (:func:`toolkit.engine.train.train`) at the best of the
    measurement's ``lrs``: one row per seed.

    All ``seeds x lrs`` runs train as one ensemble with the parametrization's
    per-tensor multipliers, from the seeded initialisation or ``start``.
    """
    config = measurement.config()
    members = [Member(lr=lr, seed=s) for s in range(measurement.seeds) for lr in measurement.lrs]
    init = None if start is None else stack_start(start, [m.seed for m in members])
    runs = train(config, members, task=task, device=device, init=init).runs
    frame = final_metrics(runs, task, config).with_columns(key=pl.lit(0))
    return best_lr(frame, ["key"]).drop("key").sort("seed")


def subspace_measure(
    measurement: Measurement,
    *,
    task: Task,
    start: Start | None = None,
    device: str | torch.device = "cpu",
) -> Callable[[Sequence[int]], pl.DataFrame]:
    """A ``measure(ds)`` for :func:`sweep_intrinsic_dim` on the measurement's model.

    Runs every ``d x seed x lr`` of ``subspace_lrs`` with ``theta_d``'s learning
    rate ``lr * sqrt(D / d)``: with unit-norm, nearly orthogonal columns a step
    ``delta`` of ``theta_d`` moves ``theta`` by ``|P delta| ~ |delta|``, and an
    Adam step moves each coordinate by about the LR, so ``theta`` moves by about
    ``lr sqrt(d)`` against ``lr sqrt(D)`` in full training at ``lr`` (for SGD,
    ``|P P^T g| ~ sqrt(d/D) |g|`` asks for the same factor). The factor
    lets one grid of LRs, on the scale of full-training LRs, fit every ``d``;
    the ``lr`` column reports the grid value.

    Members train as ensembles of at most ``max_members``, packed in order of
    ``d`` while the padded projection cost (members times
    :meth:`toolkit.engine.projections.Projection.cost` at the largest ``d``) stays within
    :data:`COST_BUDGET` multiply-adds per step: every ``d <= L`` in one ensemble for
    Fastfood, small ``d`` together and large ``d`` apart for dense and sparse.
    Returns one row per ``d x seed x lr`` (the LR is chosen per ``d`` by
    :func:`toolkit.analysis.intrinsic.estimate_intrinsic_dim`); ``wall_s`` is the
    time of the ensemble the run trained in.
    """
    config = measurement.config()
    D = parameter_count(config, task)
    cost = PROJECTION_CLASSES[measurement.projection].cost

    def train_group(members: list[SubspaceMember]) -> pl.DataFrame:
        started = time.perf_counter()
        frame = train_subspace(config, members, projection=measurement.projection, task=task,
                               start=start, device=device)  # fmt: skip
        return frame.with_columns(wall_s=pl.lit(time.perf_counter() - started))

    def measure(ds: Sequence[int]) -> pl.DataFrame:
        groups: list[list[SubspaceMember]] = [[]]
        for d in sorted(ds):
            for s in range(measurement.seeds):
                for lr in measurement.subspace_lrs:
                    group = groups[-1]
                    full = len(group) == measurement.max_members
                    if group and (full or (len(group) + 1) * cost(D, d) > COST_BUDGET):
                        groups.append(group := [])
                    group.append(SubspaceMember(int(d), lr * math.sqrt(D / d), s))
        frame = pl.concat([train_group(g) for g in groups]).select(
            "d", "seed", pl.col("lr") / (D / pl.col("d")).sqrt(), "metric",
            pl.col("val_loss").alias("final_val_loss"),
            pl.col("val_accuracy").alias("final_val_accuracy"), "status", "wall_s",
        )  # fmt: skip
        return frame.sort("d", "seed", "lr")

    return measure


def _refinement(evaluated: Sequence[int], estimate: int, points: int) -> list[int]:
    """Up to ``points`` log-spaced new integers between the last failing ``d`` and ``estimate``."""
    below = [d for d in evaluated if d < estimate]
    low = max(below) if below else 0
    inside = list(range(low + 1, estimate))
    if len(inside) <= points:
        return inside
    spaced = np.geomspace(max(low, 1), estimate, points + 2)[1:-1]
    picks = np.unique(np.clip(np.round(spaced), low + 1, estimate - 1).astype(int))
    return [int(d) for d in picks]


def sweep_intrinsic_dim(
    measure: Callable[[Sequence[int]], pl.DataFrame],
    baseline: pl.DataFrame,
    *,
    D: int,
    search: DSearch,
) -> IntrinsicDimension:
    """Measure the search's first grid, refine near the threshold, and estimate ``d_int``.

    With a doubling grid and ``points=3`` each refinement round shrinks the
    bracket's ratio to its fourth root (2 -> 1.19 -> 1.044 -> 1.011); the
    rounds stop early once no integer is left in the bracket.

    Args:
        measure: ``measure(ds) -> frame`` with ``d, seed, metric`` and optionally
            ``lr`` (the subspace LR grid, every LR on the same seeds) for every
            ``d`` in ``ds``.
        baseline: ``seed, metric`` of full training.
        D: the model's parameter count.
        search: the first grid, threshold, refinement and interval.
    """
    frame = measure(search.first_grid(D))
    target = search.threshold * baseline["metric"].mean()
    for _ in range(search.rounds):
        selected = best_lr(frame, ["d"]) if "lr" in frame.columns else frame
        means = selected.group_by("d").agg(pl.col("metric").mean()).sort("d")
        reaching = means.filter(pl.col("metric") >= target)["d"]
        if reaching.len() == 0:
            break
        new = _refinement(means["d"].to_list(), int(reaching[0]), search.points)
        if not new:
            break
        frame = pl.concat([frame, measure(new)], how="diagonal_relaxed")
    return estimate_intrinsic_dim(
        frame,
        baseline,
        D=D,
        threshold=search.threshold,
        confidence=search.confidence,
    )


def measure_intrinsic_dim(
    measurement: Measurement,
    *,
    task: Task | None = None,
    start: Start | None = None,
    device: str | torch.device = "cpu",
) -> IntrinsicDimension:
    """``d_int`` of a toolkit model: full-training baseline, then a refined sweep of ``d``.

    ``task`` replaces the measurement's task by a loaded one (e.g. a subset of
    its classes); ``start`` replaces the seeded initialisation of both the
    baseline and the subspace runs. See :func:`full_training_baseline`,
    :func:`subspace_measure` and :func:`sweep_intrinsic_dim`.
    """
    task = task or load_task(measurement.task)
    baseline = full_training_baseline(measurement, task=task, start=start, device=device)
    measure = subspace_measure(measurement, task=task, start=start, device=device)
    D = parameter_count(measurement.config(), task)
    return sweep_intrinsic_dim(measure, baseline, D=D, search=measurement.search)
