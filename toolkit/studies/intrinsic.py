"""Intrinsic dimension of an objective landscape: the smallest random subspace that suffices.

Li, Farkhoor, Liu, Yosinski 2018 ("Measuring the intrinsic dimension of
objective landscapes") train a model in random subspaces ``theta = theta0 +
P theta_d`` of growing dimension ``d`` (:mod:`toolkit.engine.subspace`) and call

    d_int_t = min { d : mean_seeds perf(d) >= t * perf_full },

with ``perf_full`` the performance of full-parameter training on the same
budget (the *baseline*, at its best learning rate) and ``t = 0.9`` giving
``d_int90``. Performance is the validation accuracy for classification and
``R^2`` for regression (:func:`toolkit.engine.subspace.performance`); the subspace LR
is tuned per ``d`` on a small grid (best mean over seeds).

Sweep (:func:`sweep_intrinsic_dim`): ``d`` on a log grid, then rounds of
refinement between the largest failing ``d`` below the current estimate and
the estimate (a few log-spaced integers per round; bisection with one). The
interval is a percentile bootstrap over seeds (Efron & Tibshirani 1993):
resample the seeds with replacement, subspace runs and baseline together, and
recompute the estimate on the ``d`` evaluated.

Fine-tuning (Aghajanyan, Zettlemoyer, Gupta 2020, "Intrinsic dimensionality
explains the effectiveness of language model fine-tuning"): with ``theta0``
a pre-trained model, ``d_int`` of adapting to a second task is much lower
than from a random ``theta0``; :func:`finetune_intrinsic_dim` measures both on
two halves of a classification task's classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import torch

from toolkit.engine.data import Task, load_task
from toolkit.engine.parametrization import Parametrization, Role
from toolkit.engine.projections import PROJECTIONS, check_seed
from toolkit.engine.subspace import (
    SubspaceMember,
    eval_split,
    parameter_count,
    performance,
    stack_start,
    train_subspace,
)
from toolkit.engine.train import Member, ProbeContext, TrainConfig, build_model, train
from toolkit.errors import InputError, check_choice, check_positive

DEFAULT_SUBSPACE_LRS = (2.0**-8, 2.0**-6, 2.0**-4)
"""Full-training-equivalent LRs tried for ``theta_d`` (see :func:`subspace_measure`)."""

DEFAULT_LRS = (2.0**-9, 2.0**-7, 2.0**-5)
"""Adam LRs tried for the full-parameter baseline."""


def check_threshold(threshold: float) -> None:
    """Raise ``ValueError`` unless ``threshold`` is in ``(0, 1]``."""
    ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not ok or not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold={threshold!r} must be in (0, 1]")


def threshold_key(threshold: float) -> str:
    """Name of the estimate at ``threshold``: ``d_int90`` at 0.9, ``d_int87.5`` at 0.875."""
    return f"d_int{threshold * 100:g}"


def _best_lr(frame: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Rows of the LR with the best mean ``metric`` over seeds, per ``by`` group.

    A missing or NaN metric (a diverged full-training run) counts as ``-inf``.
    """
    score = pl.col("metric").fill_null(-math.inf).fill_nan(-math.inf)
    means = frame.group_by(*by, "lr").agg(score.mean().alias("score"))
    best = means.sort("score", descending=True).unique(subset=list(by), keep="first")
    return frame.join(best.select(*by, "lr"), on=[*by, "lr"])


def _final_metrics(runs: pl.DataFrame, task: Task, config: TrainConfig) -> pl.DataFrame:
    """``seed, lr, metric, val_loss, val_accuracy, status`` of ``train``'s runs, in member order."""
    val = eval_split(task, config.eval_examples)
    loss = torch.tensor(runs["final_val_loss"].fill_null(math.nan).to_numpy())
    accuracy = torch.tensor(runs["final_val_accuracy"].fill_null(math.nan).to_numpy())
    return runs.select(
        "seed",
        "lr",
        pl.Series("metric", performance(val, loss, accuracy).numpy()),
        pl.col("final_val_loss").alias("val_loss"),
        pl.col("final_val_accuracy").alias("val_accuracy"),
        "status",
    )


def full_training_baseline(
    config: TrainConfig,
    *,
    seeds: Sequence[int],
    lrs: Sequence[float] = DEFAULT_LRS,
    task: Task | None = None,
    start: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    device: str | torch.device = "cpu",
) -> pl.DataFrame:
    """Full-parameter training (:func:`toolkit.engine.train.train`) at the best of ``lrs``.

    All ``seeds x lrs`` runs train as one ensemble with the parametrization's
    per-tensor multipliers, from the seeded initialisation or ``start``
    (:func:`toolkit.engine.subspace.train_subspace`). Returns one row per seed:
    ``seed, lr, metric`` (:func:`toolkit.engine.subspace.performance`), ``val_loss``,
    ``val_accuracy``, ``status``.
    """
    if len(lrs) == 0:
        raise InputError("lrs=[] is empty: give at least one learning rate")
    task = task or load_task(config.task)
    members = [Member(lr=float(lr), seed=int(s)) for s in seeds for lr in lrs]
    init = None if start is None else stack_start(start, [m.seed for m in members])
    runs = train(config, members, task=task, device=device, init=init).runs
    frame = _final_metrics(runs, task, config).with_columns(key=pl.lit(0))
    return _best_lr(frame, ["key"]).drop("key").sort("seed")


# --------------------------------------------------------------------------- d_int


@dataclass(frozen=True)
class IntrinsicDimension:
    """``d_int`` at one threshold, with its bootstrap interval and the data behind it.

    ``estimate``, ``lo`` and ``hi`` are evaluated values of ``d``, or ``inf``
    when no evaluated ``d`` reaches the target. ``frame`` has one row per
    ``d x seed`` (``d, seed, metric`` and whatever the measurement added);
    ``baselines`` one row per seed of full training (``seed, metric``, ...) and
    ``baseline`` their mean metric.
    """

    threshold: float
    estimate: float
    lo: float
    hi: float
    confidence: float
    baseline: float
    D: int
    frame: pl.DataFrame
    baselines: pl.DataFrame

    @property
    def key(self) -> str:
        """``d_int90`` at threshold 0.9 (see :func:`threshold_key`)."""
        return threshold_key(self.threshold)

    @property
    def target(self) -> float:
        """The performance to reach: ``threshold * baseline``."""
        return self.threshold * self.baseline

    def record(self) -> dict:
        """``{"D", "baseline", key, key_lo, key_hi}``."""
        key = self.key
        return {
            "D": self.D,
            "baseline": self.baseline,
            key: self.estimate,
            f"{key}_lo": self.lo,
            f"{key}_hi": self.hi,
        }

    def tidy(self) -> pl.DataFrame:
        """Subspace and full-training rows in one frame, told apart by ``kind``
        (``subspace`` or ``baseline``; ``d`` is null on baseline rows)."""
        return pl.concat(
            [
                self.baselines.with_columns(kind=pl.lit("baseline")),
                self.frame.with_columns(kind=pl.lit("subspace")),
            ],
            how="diagonal_relaxed",
        ).with_columns(D=pl.lit(self.D))


def _first_reaching(ds: np.ndarray, means: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Smallest ``d`` (``ds`` ascending, rows of ``means``) with ``means >= targets``, else inf."""
    reached = means >= targets
    return np.where(reached.any(0), ds[reached.argmax(0)], np.inf)


def estimate_intrinsic_dim(
    frame: pl.DataFrame,
    baseline: pl.DataFrame,
    *,
    D: int,
    threshold: float = 0.9,
    confidence: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> IntrinsicDimension:
    """``d_int`` from measured performance: point estimate and seed-bootstrap interval.

    The estimate is the smallest ``d`` in ``frame`` with
    ``mean_seeds(metric) >= threshold * mean_seeds(baseline metric)``. The
    interval: draw ``n`` of the ``n`` seeds with replacement ``resamples``
    times, recompute the estimate on the same ``d`` (the baseline's seeds are
    drawn with the same indices when they are the subspace's seeds, else
    independently) and take the ``(1 -+ confidence)/2`` quantiles.

    Args:
        frame: ``d, seed, metric``; every ``d`` measured on the same seeds.
        baseline: ``seed, metric`` of full training.
        D: the model's parameter count (stored with the result).
    """
    check_threshold(threshold)
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence={confidence!r} must be in (0, 1)")
    check_positive("resamples", resamples, integer=True)
    if frame.height == 0 or baseline.height == 0:
        raise InputError("frame and baseline need at least one row each")
    table = frame.pivot(on="seed", index="d", values="metric", aggregate_function="mean").sort("d")
    seeds = [c for c in table.columns if c != "d"]
    scores = table.select(seeds).to_numpy().astype(float)  # (n_d, n_seeds)
    if np.isnan(scores).any():
        raise InputError("frame must hold a metric for every d on every seed")
    ds = table["d"].to_numpy().astype(float)
    base_frame = baseline.sort("seed")
    base = base_frame["metric"].to_numpy().astype(float)
    paired = [str(s) for s in base_frame["seed"].to_list()] == seeds
    target = threshold * base.mean()
    estimate = float(_first_reaching(ds, scores.mean(1, keepdims=True), np.array([target]))[0])

    rng = np.random.default_rng(seed)
    n = scores.shape[1]
    picks = rng.integers(0, n, size=(resamples, n))
    means = scores[:, picks].mean(-1)  # (n_d, resamples)
    base_picks = picks if paired else rng.integers(0, len(base), size=(resamples, len(base)))
    targets = threshold * base[base_picks].mean(-1)
    draws = _first_reaching(ds, means, targets)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha], method="inverted_cdf")
    return IntrinsicDimension(
        threshold=threshold,
        estimate=estimate,
        lo=float(lo),
        hi=float(hi),
        confidence=confidence,
        baseline=float(base.mean()),
        D=int(D),
        frame=frame.sort("d", "seed"),
        baselines=base_frame,
    )


def log_grid(D: int, *, start: int = 4, stop: int | None = None) -> list[int]:
    """Powers of two from ``start`` below ``min(D, stop)``, then ``min(D, stop)`` itself."""
    top = D if stop is None else min(D, stop)
    grid = []
    d = start
    while d < top:
        grid.append(d)
        d *= 2
    return [*grid, top]


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
    grid: Sequence[int],
    threshold: float = 0.9,
    rounds: int = 3,
    points: int = 3,
    confidence: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> IntrinsicDimension:
    """Measure ``grid``, refine near the threshold, and estimate ``d_int``.

    Each refinement round measures up to ``points`` log-spaced integers strictly
    between the largest failing ``d`` below the current estimate and the
    estimate (``points=1`` is bisection), and stops early once no integer is
    left between them. With a doubling grid and ``points=3`` each round shrinks
    the bracket's ratio to its fourth root (2 -> 1.19 -> 1.044 -> 1.011).

    Args:
        measure: ``measure(ds) -> frame`` with ``d, seed, metric`` for every
            ``d`` in ``ds`` on the same seeds.
        baseline: ``seed, metric`` of full training.
        D: the model's parameter count.
        grid: the first ``d`` to measure (e.g. :func:`log_grid`).
    """
    check_threshold(threshold)
    if len(grid) == 0:
        raise InputError("grid=[] is empty: give at least one d")
    for d in grid:
        check_positive("d", d, integer=True)
    if not isinstance(rounds, int) or rounds < 0:
        raise InputError(f"rounds={rounds!r} must be a non-negative integer")
    check_positive("points", points, integer=True)
    frame = measure(sorted({int(d) for d in grid}))
    target = threshold * baseline["metric"].mean()
    for _ in range(rounds):
        means = frame.group_by("d").agg(pl.col("metric").mean()).sort("d")
        reaching = means.filter(pl.col("metric") >= target)["d"]
        if reaching.len() == 0:
            break
        new = _refinement(means["d"].to_list(), int(reaching[0]), points)
        if not new:
            break
        frame = pl.concat([frame, measure(new)], how="diagonal_relaxed")
    return estimate_intrinsic_dim(
        frame,
        baseline,
        D=D,
        threshold=threshold,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


def subspace_measure(
    config: TrainConfig,
    *,
    projection: str,
    seeds: Sequence[int],
    lrs: Sequence[float] = DEFAULT_SUBSPACE_LRS,
    task: Task | None = None,
    start: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    max_members: int = 64,
    cost_budget: float = 2.0**26,
    device: str | torch.device = "cpu",
) -> Callable[[Sequence[int]], pl.DataFrame]:
    """A ``measure(ds)`` for :func:`sweep_intrinsic_dim` on toolkit models.

    Runs every ``d x seed x lr`` with ``theta_d``'s learning rate
    ``lr * sqrt(D / d)``: with unit-norm, nearly orthogonal columns a step
    ``delta`` of ``theta_d`` moves ``theta`` by ``|P delta| ~ |delta|``, and an
    Adam step moves each coordinate by about the LR, so ``theta`` moves by about
    ``lr sqrt(d)`` against ``lr sqrt(D)`` in full training at ``lr`` (for SGD,
    ``|P P^T g| ~ sqrt(d/D) |g|`` asks for the same factor). The factor
    lets one grid of ``lrs``, on the scale of full-training LRs, fit every ``d``;
    the ``lr`` column reports the grid value.

    Members train as ensembles of at most ``max_members``, packed in order of
    ``d`` while the padded projection cost (members times
    :meth:`toolkit.engine.projections.Projection.cost` at the largest ``d``) stays within
    ``cost_budget`` multiply-adds per step: every ``d <= L`` in one ensemble for
    Fastfood, small ``d`` together and large ``d`` apart for dense and sparse.
    Keeps, per ``d``, the LR with the best mean metric over seeds: one row per
    ``d x seed`` (columns of :func:`train_subspace`).
    """
    check_choice("projection", projection, PROJECTIONS)
    if len(lrs) == 0:
        raise InputError("lrs=[] is empty: give at least one learning rate")
    check_positive("max_members", max_members, integer=True)
    check_positive("cost_budget", cost_budget)
    task = task or load_task(config.task)
    D = parameter_count(config, task)
    cost = PROJECTIONS[projection].cost

    def measure(ds: Sequence[int]) -> pl.DataFrame:
        groups: list[list[SubspaceMember]] = [[]]
        for d in sorted(ds):
            for s in seeds:
                for lr in lrs:
                    group = groups[-1]
                    full = len(group) == max_members
                    if group and (full or (len(group) + 1) * cost(D, d) > cost_budget):
                        groups.append(group := [])
                    group.append(SubspaceMember(int(d), float(lr) * math.sqrt(D / d), s))
        frames = [
            train_subspace(config, g, projection=projection, task=task, start=start, device=device)
            for g in groups
        ]
        frame = pl.concat(frames).with_columns(lr=pl.col("lr") / (D / pl.col("d")).sqrt())
        return _best_lr(frame, ["d"]).sort("d", "seed")

    return measure


def measure_intrinsic_dim(
    config: TrainConfig,
    *,
    projection: str = "fastfood",
    seeds: Sequence[int] = (0, 1, 2),
    lrs: Sequence[float] = DEFAULT_LRS,
    subspace_lrs: Sequence[float] = DEFAULT_SUBSPACE_LRS,
    grid: Sequence[int] | None = None,
    threshold: float = 0.9,
    rounds: int = 3,
    points: int = 3,
    confidence: float = 0.9,
    resamples: int = 2000,
    task: Task | None = None,
    start: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    max_members: int = 64,
    device: str | torch.device = "cpu",
) -> IntrinsicDimension:
    """``d_int`` of a toolkit model: full-training baseline, then a refined sweep of ``d``.

    Both use ``config``'s steps, batch size, optimizer and schedule. ``grid``
    defaults to :func:`log_grid` up to ``min(D, 2**14)``. See
    :func:`full_training_baseline`, :func:`subspace_measure` and
    :func:`sweep_intrinsic_dim` for the other arguments.
    """
    check_choice("projection", projection, PROJECTIONS)
    check_threshold(threshold)
    if len(seeds) == 0:
        raise InputError("seeds=[] is empty: give at least one seed")
    for seed in seeds:
        check_seed(seed)
    task = task or load_task(config.task)
    D = parameter_count(config, task)
    baseline = full_training_baseline(
        config, seeds=seeds, lrs=lrs, task=task, start=start, device=device
    )
    measure = subspace_measure(
        config,
        projection=projection,
        seeds=seeds,
        lrs=subspace_lrs,
        task=task,
        start=start,
        max_members=max_members,
        device=device,
    )
    return sweep_intrinsic_dim(
        measure,
        baseline,
        D=D,
        grid=log_grid(D, stop=2**14) if grid is None else grid,
        threshold=threshold,
        rounds=rounds,
        points=points,
        confidence=confidence,
        resamples=resamples,
    )


def intrinsic_dims(
    model: str,
    task: str,
    parametrization: str | Parametrization,
    widths: Sequence[int],
    depths: Sequence[int],
    projection: str = "fastfood",
    threshold: float = 0.9,
    seeds: int = 3,
    steps: int = 500,
    batch_size: int = 128,
    lrs: Sequence[float] | None = None,
    *,
    subspace_lrs: Sequence[float] | None = None,
    grid: Sequence[int] | None = None,
    optimizer: str = "adam",
    base_width: int | None = None,
    rounds: int = 3,
    points: int = 3,
    resamples: int = 2000,
    confidence: float = 0.9,
    eval_examples: int = 2048,
    max_members: int = 64,
    skip: Callable[[dict], bool] | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[dict, IntrinsicDimension]]:
    """Measure ``d_int`` for every ``width x depth``, yielding ``(settings, result)``.

    ``settings`` names the measurement: ``model, task, parametrization,
    base_width, optimizer, projection, width, depth, steps, batch_size, seeds``.

    Args:
        model, task: names (:data:`toolkit.engine.models.MODELS`,
            :data:`toolkit.engine.data.TASKS`).
        parametrization: a name of :data:`toolkit.engine.parametrization.WIDTH_RULES`
            (base width ``base_width``, default the smallest width) or a
            :class:`Parametrization`.
        widths, depths: the shapes measured.
        projection: ``dense``, ``sparse`` or ``fastfood``.
        threshold: fraction of the baseline to reach, in ``(0, 1]`` (the sweep
            over ``d`` is refined near it).
        seeds: number of seeds, ``0 .. seeds-1``.
        steps, batch_size, optimizer: training budget shared by the baseline and
            the subspace runs.
        lrs: baseline LR grid (default :data:`DEFAULT_LRS`); ``subspace_lrs``:
            LR grid of ``theta_d`` (default :data:`DEFAULT_SUBSPACE_LRS`).
        grid: first ``d`` grid (default :func:`log_grid` up to ``min(D, 2**14)``).
        skip: shapes for which ``skip(settings)`` is true are not measured
            (resuming a study).

    See :func:`measure_intrinsic_dim` for the other arguments.
    """
    check_choice("projection", projection, PROJECTIONS)
    check_threshold(threshold)
    check_positive("seeds", seeds, integer=True)
    if len(widths) == 0 or len(depths) == 0:
        raise InputError("widths and depths need at least one value each")
    for width in widths:
        check_positive("width", width, integer=True)
    if isinstance(parametrization, str):
        base = min(widths) if base_width is None else base_width
        parametrization = Parametrization(parametrization, base_width=base)
    data = load_task(task)
    for width in widths:
        for depth in depths:
            settings = {
                "model": model,
                "task": task,
                "parametrization": parametrization.name,
                "base_width": parametrization.base_width,
                "optimizer": optimizer,
                "projection": projection,
                "width": int(width),
                "depth": int(depth),
                "steps": int(steps),
                "batch_size": int(batch_size),
                "seeds": int(seeds),
            }
            if skip is not None and skip(settings):
                continue
            config = TrainConfig(
                model=model,
                task=task,
                parametrization=parametrization,
                optimizer=optimizer,
                width=int(width),
                depth=int(depth),
                steps=steps,
                batch_size=batch_size,
                eval_every=steps,
                eval_examples=eval_examples,
            )
            yield (
                settings,
                measure_intrinsic_dim(
                    config,
                    projection=projection,
                    seeds=range(seeds),
                    lrs=DEFAULT_LRS if lrs is None else lrs,
                    subspace_lrs=DEFAULT_SUBSPACE_LRS if subspace_lrs is None else subspace_lrs,
                    grid=grid,
                    threshold=threshold,
                    rounds=rounds,
                    points=points,
                    confidence=confidence,
                    resamples=resamples,
                    task=data,
                    max_members=max_members,
                    device=device,
                ),
            )


RECORD_SETTINGS = ("width", "depth", "parametrization", "projection")
"""Settings that lead each record of :func:`intrinsic_dim_records`."""


def flat_record(settings: dict, result: IntrinsicDimension) -> dict:
    """One record of :func:`intrinsic_dim_records` from a measurement and its settings."""
    return {**{k: settings[k] for k in RECORD_SETTINGS}, **result.record()}


def intrinsic_dim_records(*args, **kwargs) -> list[dict]:
    """``d_int`` for every ``width x depth``: one flat record each (for the command line).

    Arguments as in :func:`intrinsic_dims`. Returns ``{"width", "depth",
    "parametrization", "projection", "D", "baseline", "d_int90", "d_int90_lo",
    "d_int90_hi"}`` per shape, the last three named after ``threshold``
    (:func:`threshold_key`); ``inf`` where no ``d`` of the sweep reaches the target.
    """
    return [flat_record(settings, result) for settings, result in intrinsic_dims(*args, **kwargs)]


# --------------------------------------------------------------------------- fine-tuning


def class_subtask(task: Task, classes: Sequence[int]) -> Task:
    """The examples of ``classes`` only, relabelled ``0 .. len(classes)-1`` in that order."""
    if task.kind != "classification":
        raise InputError(f"task {task.name!r} is {task.kind}: class subsets need classification")
    if len(classes) == 0 or len(set(classes)) != len(classes):
        raise InputError(f"classes={list(classes)!r} must be a non-empty list of distinct labels")
    for c in classes:
        if not isinstance(c, int) or not 0 <= c < task.d_out:
            raise InputError(f"class {c!r} is not a label of {task.name!r} (0..{task.d_out - 1})")
    relabel = torch.full((task.d_out,), -1, dtype=torch.long)
    relabel[torch.tensor(list(classes))] = torch.arange(len(classes))

    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = relabel.to(y.device)[y] >= 0
        return x[keep], relabel.to(y.device)[y[keep]]

    x_train, y_train = pick(task.x_train, task.y_train)
    x_val, y_val = pick(task.x_val, task.y_val)
    return replace(task, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)


def pretrain(
    config: TrainConfig,
    *,
    seeds: Sequence[int],
    lrs: Sequence[float] = DEFAULT_LRS,
    task: Task | None = None,
    device: str | torch.device = "cpu",
) -> dict[int, dict[str, torch.Tensor]]:
    """Full training of each seed at the best of ``lrs``; ``seed -> {name: final tensor}``.

    The trained tensors are read by a probe at the last step.
    """
    task = task or load_task(config.task)
    members = [Member(lr=float(lr), seed=int(s)) for s in seeds for lr in lrs]
    final: dict[str, torch.Tensor] = {}

    def keep(ctx: ProbeContext) -> list[dict]:
        final.update({s.name: p.detach().cpu().clone() for s, p in ctx.model.named_tensors()})
        return []

    runs = train(
        config, members, task=task, probes=[keep], probe_steps=[config.steps], device=device
    ).runs
    frame = _final_metrics(runs, task, config).with_columns(
        key=pl.lit(0), row=pl.int_range(pl.len())
    )
    return {
        int(seed): {name: value[row] for name, value in final.items()}
        for seed, row in _best_lr(frame, ["key"]).select("seed", "row").iter_rows()
    }


def fresh_readout(
    config: TrainConfig, task: Task, start: Mapping[int, Mapping[str, torch.Tensor]]
) -> dict[int, dict[str, torch.Tensor]]:
    """``start`` with the readout (output-role weight and its bias) re-initialised for ``task``.

    As when a pre-trained body gets a new classification head (Aghajanyan et
    al. 2020): the new readout comes from each seed's own initialisation, so it
    may have a different number of outputs.
    """
    seeds = list(start)
    model = build_model(config, task.d_in, task.d_out, seeds)
    readout = {s.name for s in model.specs if s.role in (Role.OUTPUT, Role.FIXED)}
    fresh = {s.name: p.detach() for s, p in model.named_tensors()}
    return {
        seed: {
            name: fresh[name][i] if name in readout else value
            for name, value in start[seed].items()
        }
        for i, seed in enumerate(seeds)
    }


def finetune_intrinsic_dim(
    config: TrainConfig,
    *,
    source_classes: Sequence[int],
    target_classes: Sequence[int],
    pretrain_steps: int,
    projection: str = "fastfood",
    seeds: Sequence[int] = (0, 1, 2),
    lrs: Sequence[float] = DEFAULT_LRS,
    subspace_lrs: Sequence[float] = DEFAULT_SUBSPACE_LRS,
    grid: Sequence[int] | None = None,
    threshold: float = 0.9,
    rounds: int = 3,
    points: int = 3,
    task: Task | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, IntrinsicDimension]:
    """``d_int`` of adapting a pre-trained model to a new task, and of learning it from scratch.

    A classification task is split into a *source* task (``source_classes``)
    and a *target* task (``target_classes``), each relabelled ``0..k-1``.
    Pre-training is ``pretrain_steps`` of full training on the source task at
    the best of ``lrs``; its readout is then replaced by a fresh one
    (:func:`fresh_readout`). ``d_int`` on the target task is measured twice with
    ``config``'s budget: from the pre-trained weights (baseline: full
    fine-tuning from them) and from the seeded initialisation (baseline: full
    training from scratch).

    Returns:
        ``{"pretrained": ..., "scratch": ...}``.
    """
    check_positive("pretrain_steps", pretrain_steps, integer=True)
    task = task or load_task(config.task)
    source = class_subtask(task, source_classes)
    target = class_subtask(task, target_classes)
    pre_config = replace(config, steps=pretrain_steps, eval_every=pretrain_steps)
    start = pretrain(pre_config, seeds=seeds, lrs=lrs, task=source, device=device)
    start = fresh_readout(config, target, start)
    results = {}
    for name, begin in (("pretrained", start), ("scratch", None)):
        results[name] = measure_intrinsic_dim(
            config,
            projection=projection,
            seeds=seeds,
            lrs=lrs,
            subspace_lrs=subspace_lrs,
            grid=grid,
            threshold=threshold,
            rounds=rounds,
            points=points,
            task=target,
            start=begin,
            device=device,
        )
    return results
