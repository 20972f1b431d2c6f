"""The ensemble training loop.

One call trains a *group*: models of one shape (:class:`TrainConfig`) whose members
(:class:`Member`) differ only in learning rate, weight decay, seed and the multipliers
``init_sigma``, ``input_alpha`` and ``output_alpha``. Members train together as one
batched model. A member whose loss becomes NaN/inf, or exceeds ``divergence_factor``
times its first loss, is frozen and marked ``diverged``
(:class:`~toolkit.engine.divergence.DivergenceGuard`); its siblings carry on unaffected.

Results come back as tidy polars frames, the store's tables (see the results store
contract in the design notes): ``runs`` (one row per member), ``curves`` (``run_id, step,
split, metric, value``, from the :class:`~toolkit.engine.evaluation.Evaluator` and every
step's batch loss) and ``probes`` (``run_id, step, layer, role, stat, value``, from the
:class:`~toolkit.engine.probe_runner.ProbeRunner`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

import polars as pl
import torch

from toolkit import __version__, interrupts
from toolkit.engine.allocator import keep_freed_memory
from toolkit.engine.config import (
    RECORDED_WHEN_SET,
    Member,
    TrainConfig,
    check_members,
    lr_factor,
    member_config,
    run_id,
)
from toolkit.engine.data import Task, load_task
from toolkit.engine.divergence import DivergenceGuard
from toolkit.engine.evaluation import Evaluator, evaluate, per_member_loss
from toolkit.engine.layers import EnsembleModel
from toolkit.engine.models import MODEL_CLASSES
from toolkit.engine.optim import make_optimizer
from toolkit.engine.parametrization import resolve
from toolkit.engine.probe_runner import Probe, ProbeContext, ProbeRunner
from toolkit.errors import InputError
from toolkit.store import RUN_SETTINGS, Records

__all__ = [
    "BatchSampler",
    "Member",
    "Probe",
    "ProbeContext",
    "Records",
    "TrainConfig",
    "build_model",
    "evaluate",
    "gather",
    "load_tensors",
    "lr_factor",
    "member_config",
    "per_member_loss",
    "run_id",
    "train",
]


class BatchSampler:
    """Per-member minibatch indices: each seed shuffles the data its own way.

    Members with the same seed see the same batches (so an LR sweep compares
    like with like); each epoch is a fresh permutation. Indices are made in
    chunks of ``chunk`` steps to bound memory.
    """

    def __init__(self, n: int, batch_size: int, seeds: Sequence[int], *, chunk: int = 256):
        self.n, self.batch_size, self.chunk = n, batch_size, chunk
        self.unique = sorted(set(seeds))
        self.member_row = torch.tensor([self.unique.index(s) for s in seeds])
        self.generators = [torch.Generator().manual_seed(10_007 * s + 1) for s in self.unique]
        self.pools = [torch.empty(0, dtype=torch.long) for _ in self.unique]
        self.buffer: torch.Tensor | None = None
        self.position = 0

    def _refill(self) -> None:
        need = self.chunk * self.batch_size
        rows = []
        for i, g in enumerate(self.generators):
            while self.pools[i].numel() < need:
                self.pools[i] = torch.cat([self.pools[i], torch.randperm(self.n, generator=g)])
            rows.append(self.pools[i][:need])
            self.pools[i] = self.pools[i][need:]
        per_seed = torch.stack(rows).view(len(self.unique), self.chunk, self.batch_size)
        self.buffer = per_seed[self.member_row]
        self.position = 0

    def next(self) -> torch.Tensor:
        """Indices of the next step's batch, shape ``(members, batch_size)``."""
        if self.buffer is None or self.position == self.chunk:
            self._refill()
        out = self.buffer[:, self.position]
        self.position += 1
        return out


def gather(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` for an ``(members, batch)`` index (``index_select`` is ~2x faster)."""
    return rows.index_select(0, index.flatten()).view(*index.shape, *rows.shape[1:])


def build_model(
    config: TrainConfig,
    d_in: int,
    d_out: int,
    seeds: Sequence[int],
    *,
    shape_only: bool = False,
    members: Sequence[Member] | None = None,
) -> EnsembleModel:
    """The ensemble model of ``config`` for ``d_in`` inputs and ``d_out`` outputs, one member
    per seed (on the ``meta`` device if ``shape_only``); ``members``, one per seed, give each
    member's multipliers (:func:`member_config`)."""
    parametrizations = None
    if members is not None:
        parametrizations = [member_config(config, m).parametrization for m in members]
    return MODEL_CLASSES[config.model](
        d_in=d_in,
        d_out=d_out,
        width=config.width,
        depth=config.depth,
        parametrization=config.parametrization,
        seeds=seeds,
        member_parametrizations=parametrizations,
        shape_only=shape_only,
        **config.model_kwargs(),
    )


def load_tensors(model: EnsembleModel, values: Mapping[str, torch.Tensor]) -> None:
    """Overwrite every tensor of ``model`` with ``values[name]``, shaped ``(members, ...)``."""
    specs_params = model.named_tensors()
    names = {s.name for s, _ in specs_params}
    if set(values) != names:
        raise InputError(f"init has tensors {sorted(values)}; the model has {sorted(names)}")
    with torch.no_grad():
        for spec, param in specs_params:
            value = values[spec.name]
            if value.shape != param.shape:
                raise InputError(
                    f"init[{spec.name!r}] has shape {tuple(value.shape)}; "
                    f"the model's is {tuple(param.shape)}"
                )
            param.copy_(value)


def _start_model(
    config: TrainConfig, task: Task, members: Sequence[Member], device: torch.device
) -> tuple[EnsembleModel, torch.Tensor] | None:
    """At step 0 members of the same seed and multipliers compute the same function: a model
    of one member per distinct start and each member's row in it, or ``None`` if all differ."""
    starts = [replace(m, lr=1.0, weight_decay=0.0) for m in members]
    distinct = list(dict.fromkeys(starts))
    if len(distinct) == len(members):
        return None
    seeds = [m.seed for m in distinct]
    model = build_model(config, task.d_in, task.d_out, seeds, members=distinct).to(device)
    return model, torch.tensor([distinct.index(start) for start in starts], device=device)


def train(
    config: TrainConfig,
    members: Sequence[Member],
    *,
    task: Task | None = None,
    probes: Iterable[Probe] = (),
    probe_steps: Iterable[int] = (),
    device: str | torch.device = "cpu",
    on_step: Callable[[int], None] | None = None,
    init: Mapping[str, torch.Tensor] | None = None,
    freeze_diverged: bool = True,
) -> Records:
    """Train all ``members`` of one group together and return tidy records.

    Args:
        config: the shared settings.
        members: per-member LR, weight decay, seed and multipliers.
        task: a loaded task (default: ``load_task(config.task)``).
        probes: called at ``probe_steps`` (see :mod:`toolkit.engine.probe_runner`).
        device: ``"cpu"`` (default) or e.g. ``"cuda"``.
        on_step: called after every update with the number of steps done.
        init: starting values, tensor name -> ``(members, ...)``, replacing the
            seeded initialisation (e.g. pre-trained weights to fine-tune; the
            seed still orders the data). Run ids do not see them: keep such runs
            out of a store shared with runs from the seeded initialisation.
        freeze_diverged: freeze a diverged member (the default); if false it is only
            marked ``diverged`` and trains on, its probes and losses showing its real
            (possibly inf/NaN) values.
    """
    check_members(members)
    keep_freed_memory()  # no page faults on the step's temporaries (numbers unchanged)
    started = time.perf_counter()
    device = torch.device(device)
    task = (task or load_task(config.task)).to(device)
    seeds = [m.seed for m in members]
    model = build_model(config, task.d_in, task.d_out, seeds, members=members).to(device)
    if init is not None:
        load_tensors(model, init)
    specs_params = model.named_tensors()
    resolved = resolve(
        [s for s, _ in specs_params],
        config.parametrization,
        width=config.width,
        depth=config.depth,
        optimizer=config.optimizer,
    )
    optimizer = make_optimizer(
        config.optimizer,
        [p for _, p in specs_params],
        resolved,
        torch.tensor([m.lr for m in members], dtype=torch.float64),
        torch.tensor([m.weight_decay for m in members], dtype=torch.float64),
        **config.optimizer_kwargs(),
    )
    ids = [run_id(config, m) for m in members]
    sampler = BatchSampler(task.n_train, config.batch_size, seeds)
    guard = DivergenceGuard(len(members), config.divergence_factor, freeze=freeze_diverged)
    runner = ProbeRunner(probes, probe_steps, model=model, task=task, run_ids=ids,
                         batch_size=config.batch_size, last_step=config.steps,
                         active=guard.active,
                         step_sizes=optimizer.step_sizes)  # fmt: skip
    evaluator = Evaluator(task, config.eval_examples)
    start = None if init is not None else _start_model(config, task, members, device)
    if start is None:
        evaluator.record(0, model, guard.active)
    else:
        evaluator.record(0, start[0], guard.active, member_rows=start[1])

    batch_losses = torch.full((config.steps, len(members)), math.nan)
    for step in range(config.steps):
        interrupts.check()
        runner.run(step)
        index = sampler.next().to(device)
        loss = per_member_loss(task, model(gather(task.x_train, index)),
                               gather(task.y_train, index))  # fmt: skip
        batch_losses[step], diverged = guard.observe(step, loss)
        optimizer.zero_grad()
        guard.objective(loss).backward()
        runner.before_update(step)
        optimizer.step(lr_factor(step, steps=config.steps, schedule=config.schedule,
                                 warmup_steps=config.warmup_steps))  # fmt: skip
        if guard.freeze:
            for member in diverged:
                optimizer.freeze(member)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            evaluator.record(step + 1, model, guard.active)
        if on_step is not None:
            on_step(step + 1)
    runner.run(config.steps)

    wall = time.perf_counter() - started
    curves = _curve_frame(ids, batch_losses, evaluator.rows)
    runs = _run_frame(config, members, ids, curves, guard.diverged_at, wall,
                      model.parameter_count())  # fmt: skip
    return Records(runs=runs, curves=curves, probes=runner.frame())


def _curve_frame(ids, batch_losses, curve_rows) -> pl.DataFrame:
    """The ``curves`` rows: every step's batch loss, then each evaluation's values, as one
    frame of columns built whole (a frame per evaluation cost a group several ms)."""
    steps, n_members = batch_losses.shape
    columns: dict[str, list] = {
        "run_id": ids * steps,
        "step": [s for s in range(steps) for _ in range(n_members)],
        "split": ["batch"] * (steps * n_members),
        "metric": ["loss"] * (steps * n_members),
    }
    values = [batch_losses.flatten().double()]
    for step, split, metric, row in curve_rows:
        columns["run_id"] += ids
        columns["step"] += [step] * n_members
        columns["split"] += [split] * n_members
        columns["metric"] += [metric] * n_members
        values.append(row.double())
    curves = pl.DataFrame(
        {**columns, "value": torch.cat(values).numpy()},
        schema={"run_id": pl.String, "step": pl.Int64, "split": pl.String,
                "metric": pl.String, "value": pl.Float64},
    )  # fmt: skip
    return curves.filter(pl.col("value").is_not_nan())


def _run_frame(config, members, ids, curves, diverged_at, wall, n_params) -> pl.DataFrame:
    last_step = config.steps
    final = (
        curves.filter(pl.col("step") == last_step, pl.col("split") != "batch")
        .with_columns(name=pl.format("final_{}_{}", "split", "metric"))
        .pivot(on="name", index="run_id", values="value")
    )
    rows = []
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for rid, member, div in zip(ids, members, diverged_at, strict=True):
        record = member_config(config, member).record()
        rows.append(
            {
                "run_id": rid,
                "study": config.study,
                "model": config.model,
                "task": config.task,
                "parametrization": record["parametrization"],
                "optimizer": config.optimizer,
                "width": config.width,
                "depth": config.depth,
                "lr": member.lr,
                "weight_decay": member.weight_decay,
                "batch_size": config.batch_size,
                "steps": config.steps,
                "seed": member.seed,
                "status": "ok" if div is None else "diverged",
                "diverged_at_step": div,
                "wall_s": wall,
                "group_size": len(members),
                "toolkit_version": __version__,
                "created_at": created,
                "schedule": config.schedule,
                "base_width": record["base_width"],
                "base_depth": record["base_depth"],
                "depth_rule": record["depth_rule"],
                "depth_alpha": record["depth_alpha"],
                "n_params": n_params,
                "weight_decay_scaling": record["weight_decay_scaling"],
                "init_sigma": record["init_sigma"],
                "input_alpha": record["input_alpha"],
                "output_alpha": record["output_alpha"],
                "config_json": json.dumps(record, sort_keys=True, default=str),
                # settings recorded only when set have a column only then (null elsewhere)
                **{k: record[k] for k in RUN_SETTINGS if k in RECORDED_WHEN_SET and k in record},
            }
        )
    runs = pl.DataFrame(
        rows, schema_overrides={"diverged_at_step": pl.Int64, "depth_alpha": pl.Float64}
    )
    runs = runs.join(final, on="run_id", how="left")
    for column in (
        "final_train_loss",
        "final_val_loss",
        "final_train_accuracy",
        "final_val_accuracy",
    ):
        if column not in runs.columns:
            runs = runs.with_columns(pl.lit(None, dtype=pl.Float64).alias(column))
    return runs
