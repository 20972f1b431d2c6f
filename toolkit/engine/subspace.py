"""Training in a random subspace of parameter space (Li, Farkhoor, Liu, Yosinski 2018).

The ``D`` parameters of a model, all tensors flattened and concatenated, are

    theta = theta0 + P theta_d,        theta_d in R^d,  theta_d(0) = 0,

with ``theta0`` the usual initialisation (frozen) and ``P`` a fixed random
``D x d`` projection with unit-norm columns (:mod:`toolkit.engine.projections`). Only
``theta_d`` is trained, by the chain rule ``dL/dtheta_d = P^T dL/dtheta``.

Members of an ensemble train together, each with its own ``theta0``,
projection and ``theta_d`` (shape ``(members, d)``, members of smaller ``d``
padded with coordinates that never move). Two kinds of model:

* toolkit ensemble models (:func:`train_subspace`): ``theta0`` is the model's
  initialisation and its forward multipliers stay in its forward pass, so the
  parametrization (SP, muP, ...) carries over; the model runs with
  ``theta0 + P theta_d`` as its tensors through ``torch.func.functional_call``
  (its parameters are stacked over members already); the baseline is full
  training with :func:`toolkit.engine.train.train`;
* any plain ``torch.nn.Module`` (:func:`train_module_subspace`): run with
  ``theta0 + P theta_d`` as its parameters through
  ``torch.func.functional_call``, vectorised over members with
  ``torch.func.vmap``.

Performance (larger is better) of toolkit models is measured on the
validation split (:func:`performance`): the accuracy for classification and
``R^2 = 1 - MSE / Var(y)`` for regression (0 for predicting the mean, 1 for a
perfect fit), so that "a fraction of the baseline" means the same for both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

import polars as pl
import torch
from torch import nn

from toolkit.engine.allocator import keep_freed_memory
from toolkit.engine.catalogue import PROJECTIONS, SCHEDULES
from toolkit.engine.data import Task, load_task
from toolkit.engine.divergence import DivergenceGuard
from toolkit.engine.optim import make_optimizer
from toolkit.engine.parametrization import Kind, Resolved, Role, TensorSpec
from toolkit.engine.projections import Projection, check_seed, make_projection
from toolkit.engine.train import (
    BatchSampler,
    TrainConfig,
    build_model,
    evaluate,
    gather,
    load_tensors,
    lr_factor,
    per_member_loss,
)
from toolkit.errors import InputError, check_choice, check_positive


@dataclass
class _Fit:
    theta: torch.Tensor  # (members, D), final parameters
    first_loss: torch.Tensor  # (members,), loss of the first batch
    diverged_at: list[int | None]


def _optimize(
    theta0: torch.Tensor,
    projection: Projection | None,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    lr: torch.Tensor,
    steps: int,
    optimizer: str,
    optimizer_kwargs: Mapping[str, object],
    schedule: Callable[[int], float],
    divergence_factor: float,
) -> _Fit:
    """Train ``theta_d`` for ``steps`` steps; ``projection=None`` trains all of ``theta``.

    ``loss_fn(theta)`` maps ``(members, D)`` to per-member losses ``(members,)``,
    differentiably. ``theta_d`` is one ``(members, d)`` tensor under a toolkit
    batched optimizer with per-member ``lr`` and no per-tensor multipliers (its
    size does not grow with width). Divergence as in :func:`toolkit.engine.train.train`
    (:class:`~toolkit.engine.divergence.DivergenceGuard`): a member whose loss is not
    finite or exceeds ``divergence_factor`` times its first loss is frozen at
    ``theta_d = 0``.
    """
    members, D = theta0.shape
    d = D if projection is None else projection.d
    theta_d = torch.zeros(members, d, device=theta0.device, requires_grad=True)
    spec = TensorSpec("theta_d", Role.FIXED, Kind.BIAS, (d,), d, d, d)
    unscaled = Resolved(spec, 0.0, forward_mult=1.0, lr_mult=1.0, wd_mult=1.0, eps_mult=1.0)
    opt = make_optimizer(
        optimizer,
        [theta_d],
        [unscaled],
        lr.double(),
        torch.zeros(members, dtype=torch.float64),
        **optimizer_kwargs,
    )

    def parameters() -> torch.Tensor:
        return theta0 + (theta_d if projection is None else projection.project(theta_d))

    guard = DivergenceGuard(members, divergence_factor)
    for step in range(steps):
        loss = loss_fn(parameters())
        _, diverged = guard.observe(step, loss)
        opt.zero_grad()
        guard.objective(loss).backward()
        opt.step(schedule(step))
        for member in diverged:
            opt.freeze(member)
    with torch.no_grad():
        return _Fit(theta=parameters(), first_loss=guard.first, diverged_at=guard.diverged_at)


# --------------------------------------------------------------------------- toolkit models


def split_parameters(
    theta: torch.Tensor, names: Sequence[str], shapes: Sequence[torch.Size]
) -> dict[str, torch.Tensor]:
    """The columns of ``theta`` ``(members, D)`` as tensors ``name -> (members, *shape)``
    (views, so gradients flow back to ``theta``)."""
    sizes = [math.prod(shape) for shape in shapes]
    members = theta.shape[0]
    return {
        name: chunk.view(members, *shape)
        for name, shape, chunk in zip(names, shapes, theta.split(sizes, 1), strict=True)
    }


@dataclass(frozen=True)
class SubspaceMember:
    """One subspace run: dimension ``d``, learning rate of ``theta_d``, seed.

    The seed fixes the model's initialisation ``theta0`` (unless a start is
    given), the projection and the order of the data.
    """

    d: int
    lr: float
    seed: int = 0


def eval_split(task: Task, examples: int) -> Task:
    """``task`` with its validation split cut to the first ``examples`` rows, as ``train`` uses."""
    return replace(task, x_val=task.x_val[:examples], y_val=task.y_val[:examples])


def performance(task: Task, loss: torch.Tensor, accuracy: torch.Tensor) -> torch.Tensor:
    """Validation performance from :func:`toolkit.engine.train.evaluate`'s ``(loss, accuracy)``.

    Classification: the accuracy. Regression: ``R^2 = 1 - MSE / Var(y)``, the
    variance taken per output dimension over ``task.y_val`` and averaged;
    ``task`` holds the validation examples ``evaluate`` saw (:func:`eval_split`).
    Shapes ``(members,)``.
    """
    if task.kind == "classification":
        return accuracy
    variance = task.y_val.var(0, unbiased=False).mean().to(loss.device)
    return 1.0 - loss / variance


def parameter_count(config: TrainConfig, task: Task) -> int:
    """``D``: parameters of one model of ``config`` on ``task``."""
    return build_model(config, task.d_in, task.d_out, [0], shape_only=True).parameter_count()


def stack_start(
    start: Mapping[int, Mapping[str, torch.Tensor]], seeds: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-seed tensors ``start[seed][name]`` stacked to ``name -> (members, ...)``."""
    missing = sorted(set(seeds) - set(start))
    if missing:
        raise InputError(f"start has no tensors for seeds {missing}")
    return {name: torch.stack([start[s][name] for s in seeds]) for name in start[seeds[0]]}


def train_subspace(
    config: TrainConfig,
    members: Sequence[SubspaceMember],
    *,
    projection: str = "fastfood",
    task: Task | None = None,
    start: Mapping[int, Mapping[str, torch.Tensor]] | None = None,
    device: str | torch.device = "cpu",
) -> pl.DataFrame:
    """Train toolkit models of ``config`` in random subspaces, all members at once.

    Training uses ``config``'s optimizer, steps, batch size and LR schedule on
    ``theta_d`` (no weight decay); minibatches as in :func:`toolkit.engine.train.train`.

    Args:
        config: the model, task and training settings.
        members: one :class:`SubspaceMember` per run; members of different
            ``d`` are padded to the largest (see
            :meth:`toolkit.engine.projections.Projection.cost`).
        projection: a key of :data:`toolkit.engine.catalogue.PROJECTIONS`.
        task: a loaded task (default: ``load_task(config.task)``).
        start: ``seed -> {tensor name: tensor without the member axis}``, e.g.
            pre-trained weights, replacing the seeded initialisation as ``theta0``.

    Returns:
        One row per member: ``d, seed, lr, D, projection, val_loss,
        val_accuracy`` (NaN for regression), ``metric`` (:func:`performance`)
        and ``status`` (``ok`` or ``diverged``).
    """
    check_choice("projection", projection, PROJECTIONS)
    if len(members) == 0:
        raise InputError("members=[] is empty: give at least one SubspaceMember(d, lr, seed)")
    for member in members:
        check_positive("d", member.d, integer=True)
        check_positive("lr", member.lr)
        check_seed(member.seed)
    keep_freed_memory()
    device = torch.device(device)
    task = (task or load_task(config.task)).to(device)
    seeds = [m.seed for m in members]
    model = build_model(config, task.d_in, task.d_out, seeds).to(device)
    if start is not None:
        load_tensors(model, stack_start(start, seeds))
    tensors = model.named_tensors()
    names, shapes = [s.name for s, _ in tensors], [p.shape[1:] for _, p in tensors]
    theta0 = torch.cat([p.detach().flatten(1) for _, p in tensors], 1)
    proj = make_projection(projection, theta0.shape[1], [m.d for m in members], seeds).to(device)
    sampler = BatchSampler(task.n_train, config.batch_size, seeds)

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        index = sampler.next().to(device)
        x, y = gather(task.x_train, index), gather(task.y_train, index)
        params = split_parameters(theta, names, shapes)
        return per_member_loss(task, torch.func.functional_call(model, params, (x,)), y)

    fit = _optimize(
        theta0,
        proj,
        loss_fn,
        lr=torch.tensor([m.lr for m in members]),
        steps=config.steps,
        optimizer=config.optimizer,
        optimizer_kwargs=config.optimizer_kwargs(),
        schedule=partial(
            lr_factor,
            steps=config.steps,
            schedule=config.schedule,
            warmup_steps=config.warmup_steps,
        ),  # fmt: skip
        divergence_factor=config.divergence_factor,
    )
    load_tensors(model, split_parameters(fit.theta, names, shapes))
    val = eval_split(task, config.eval_examples)
    loss, accuracy = evaluate(model, val, val.x_val, val.y_val)
    return pl.DataFrame(
        {
            "d": [m.d for m in members],
            "seed": seeds,
            "lr": [float(m.lr) for m in members],
            "D": theta0.shape[1],
            "projection": projection,
            "val_loss": loss.cpu().double().numpy(),
            "val_accuracy": accuracy.cpu().double().numpy(),
            "metric": performance(val, loss, accuracy).cpu().double().numpy(),
            "status": ["ok" if at is None else "diverged" for at in fit.diverged_at],
        }
    )


# --------------------------------------------------------------------------- plain modules


def _module_call(
    module: nn.Module, names: Sequence[str], shapes: Sequence[torch.Size], theta: torch.Tensor
) -> Callable[..., torch.Tensor]:
    """``call(*inputs)``: ``module`` run with each member's row of ``theta`` as its parameters.

    The inputs are shared by all members; the output gains a leading member axis.
    """
    tensors = split_parameters(theta, names, shapes)

    def call(*inputs: torch.Tensor) -> torch.Tensor:
        def one(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.func.functional_call(module, params, inputs)

        return torch.func.vmap(one)(tensors)

    return call


def train_module_subspace(
    module: nn.Module,
    objective: Callable[[Callable[..., torch.Tensor]], torch.Tensor],
    *,
    dims: Sequence[int] | None,
    seeds: Sequence[int] | None = None,
    projection: str = "fastfood",
    steps: int = 500,
    lr: float = 0.1,
    optimizer: str = "adam",
    schedule: str = "constant",
    score: Callable[[Callable[..., torch.Tensor]], torch.Tensor] | None = None,
    divergence_factor: float = 100.0,
) -> pl.DataFrame:
    """Subspace training of a plain ``torch.nn.Module``, one member per ``(dims[i], seeds[i])``.

    Every member starts from the module's current parameters ``theta0`` and has
    its own projection (seeded by its seed) and ``theta_d``. With ``dims=None``
    the members train all ``D`` parameters directly, ``theta = theta0 + delta``
    (which Adam and SGD treat exactly like ``theta``): the full-training baseline.

    Args:
        module: any module whose forward works under ``torch.func.vmap`` (no
            in-place buffer updates, e.g. no BatchNorm in training mode).
        objective: ``objective(call) -> (members,)`` losses of one step, where
            ``call(*inputs)`` runs the module with every member's parameters
            and returns its output with a leading member axis; draw the step's
            minibatch inside ``objective``.
        dims: each member's ``d``, or ``None`` for full training.
        seeds: each member's projection seed (default ``0, 1, ...``; one
            member for full training).
        projection: a key of :data:`toolkit.engine.catalogue.PROJECTIONS`.
        steps, lr, optimizer, schedule: training budget (``optimizer`` as in
            :data:`toolkit.engine.catalogue.OPTIMIZERS` with its default hyperparameters,
            ``schedule`` as in :class:`toolkit.engine.train.TrainConfig`, no warmup).
        score: ``score(call) -> (members,)``, performance after training
            (larger is better); default ``1 - loss / first loss``, the fraction
            of the initial loss removed (``loss`` from one more ``objective`` call).

    Returns:
        One row per member: ``d`` (``D`` for full training), ``seed``, ``lr``,
        ``D``, ``loss`` (``objective`` after training), ``metric``, ``status``.
    """
    if dims is not None:
        check_choice("projection", projection, PROJECTIONS)
    check_positive("lr", lr)
    check_positive("steps", steps, integer=True)
    check_choice("schedule", schedule, SCHEDULES)
    keep_freed_memory()
    named = list(module.named_parameters())
    names = [n for n, _ in named]
    shapes = [p.shape for _, p in named]
    flat = torch.cat([p.detach().flatten() for _, p in named])
    D = flat.numel()
    if seeds is None:
        seeds = list(range(1 if dims is None else len(dims)))
    for seed in seeds:
        check_seed(seed)
    members = len(seeds)
    proj = None
    if dims is not None:
        proj = make_projection(projection, D, dims, seeds).to(flat.device)

    def loss_fn(theta: torch.Tensor) -> torch.Tensor:
        value = objective(_module_call(module, names, shapes, theta))
        if value.shape != (members,):
            raise InputError(
                f"objective returned shape {tuple(value.shape)}; expected ({members},): "
                "one loss per member"
            )
        return value

    fit = _optimize(
        flat.expand(members, D),
        proj,
        loss_fn,
        lr=torch.full((members,), float(lr)),
        steps=steps,
        optimizer=optimizer,
        optimizer_kwargs={},
        schedule=partial(lr_factor, steps=steps, schedule=schedule),
        divergence_factor=divergence_factor,
    )
    with torch.no_grad():
        call = _module_call(module, names, shapes, fit.theta)
        final = loss_fn(fit.theta).cpu()
        metric = (1.0 - final / fit.first_loss) if score is None else score(call).cpu()
    return pl.DataFrame(
        {
            "d": [D] * members if dims is None else [int(d) for d in dims],
            "seed": [int(s) for s in seeds],
            "lr": float(lr),
            "D": D,
            "loss": final.double().numpy(),
            "metric": metric.double().numpy(),
            "status": ["ok" if at is None else "diverged" for at in fit.diverged_at],
        }
    )
