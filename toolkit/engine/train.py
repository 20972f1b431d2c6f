"""The ensemble training loop.

One call trains a *group*: models of one shape (model, task, width, depth,
parametrization, optimizer, steps, batch size, schedule) that differ only in
per-member learning rate, weight decay, seed and the multipliers ``init_sigma``,
``input_alpha`` and ``output_alpha``. Members train together as one
batched model. A member whose loss becomes NaN/inf, or exceeds
``divergence_factor`` times its first loss, is frozen and marked ``diverged``;
its siblings carry on unaffected.

Results come back as tidy polars frames, the store's tables (see the results
store contract in the design notes): ``runs`` (one row per member),
``curves`` (``run_id, step, split, metric, value``) and ``probes``
(``run_id, step, layer, role, stat, value``).

Probes are callables ``probe(ctx: ProbeContext) -> list[dict]`` run at chosen
steps *before* that step's update (step 0 is the initialisation, step
``steps`` is after the last update). Each returned dict has ``member``,
``layer``, ``role``, ``stat`` and ``value``; the loop only adds ``run_id`` and
``step``, it knows nothing of what is measured.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

import polars as pl
import torch
import torch.nn.functional as F

from toolkit import __version__
from toolkit.engine.data import LANGUAGE_TASKS, Task, load_task
from toolkit.engine.layers import EnsembleModel
from toolkit.engine.models import MODELS
from toolkit.engine.optim import OPTIMIZERS, make_optimizer
from toolkit.engine.parametrization import Parametrization, resolve
from toolkit.errors import InputError, check_choice, check_positive
from toolkit.store import Records

SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Everything shared by the members of one group.

    Args:
        model: ``mlp``, ``resmlp`` or ``transformer`` (:data:`toolkit.engine.models.MODELS`).
        task: a task name of :mod:`toolkit.engine.data`; default ``chars`` for a model that
            reads tokens (the transformer), else ``mnist1d``.
        parametrization: width/depth rules, base shape and multipliers.
        optimizer: ``sgd``, ``adam``, ``adamw``, ``adam-atan2`` or ``muon``.
        width: hidden width ``n`` (``d_model`` of the transformer).
        depth: hidden layers (``mlp``) or residual blocks (``resmlp``, ``transformer``).
        steps: optimizer steps.
        batch_size: examples per step per member.
        schedule: ``constant``, or ``cosine`` / ``linear`` decay to zero after
            ``warmup_steps`` of linear warmup.
        eval_every: evaluate train/val loss every this many steps (and at the end).
        eval_examples: examples of each split used for evaluation (a fixed subset); for
            a language task an example is one predicted token, rounded up to whole
            sequences.
        momentum, betas, eps: optimizer hyperparameters at base shape (``momentum`` is
            SGD's and Muon's, ``betas`` and ``eps`` Adam's and Muon's AdamW part's).
        head_dim, tie_embeddings: the transformer's head dimension and whether its readout
            is the token embedding (recorded for the transformer only).
        divergence_factor: a loss above this times the member's first loss is divergence.
        study: a label stored with every run.
    """

    model: str = "mlp"
    task: str | None = None
    parametrization: Parametrization = field(default_factory=Parametrization)
    optimizer: str = "adam"
    width: int = 128
    depth: int = 3
    steps: int = 500
    batch_size: int = 128
    schedule: str = "constant"
    warmup_steps: int = 0
    eval_every: int = 100
    eval_examples: int = 2048
    activation: str = "relu"
    bias: bool = True
    prenorm: bool = True
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    divergence_factor: float = 100.0
    study: str = ""
    head_dim: int = 16
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        tokens = MODELS[self.model].reads_tokens
        if self.task is None:
            object.__setattr__(self, "task", LANGUAGE_TASKS[0] if tokens else "mnist1d")
        if tokens != (self.task in LANGUAGE_TASKS):
            names = ", ".join(repr(name) for name in LANGUAGE_TASKS)
            allowed = names if tokens else f"any task but {names}"
            raise InputError(
                f"task={self.task!r} does not fit model={self.model!r}, which reads "
                f"{'token sequences' if tokens else 'feature vectors'}; allowed: {allowed}"
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        for argument in (
            "width", "depth", "steps", "batch_size", "eval_every", "eval_examples", "head_dim"
        ):  # fmt: skip
            check_positive(argument, getattr(self, argument), integer=True)
        if not (isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps <= self.steps):
            raise InputError(f"warmup_steps={self.warmup_steps!r} must be an integer in [0, steps]")
        check_positive("eps", self.eps)
        check_positive("divergence_factor", self.divergence_factor)
        if not 0.0 <= self.momentum < 1.0:
            raise InputError(f"momentum={self.momentum!r} must be in [0, 1)")

    def model_options(self) -> object:
        """The model's options (its class's ``options`` dataclass) from this config's fields."""
        options = MODELS[self.model].options
        return options(**{f.name: getattr(self, f.name) for f in fields(options)})

    def model_kwargs(self) -> dict:
        """Keyword arguments of the model's constructor beyond shapes and parametrization."""
        return asdict(self.model_options())

    def optimizer_kwargs(self) -> dict:
        if self.optimizer == "sgd":
            return {"momentum": self.momentum}
        if self.optimizer == "muon":
            return {"momentum": self.momentum, "betas": self.betas, "eps": self.eps}
        return {"betas": self.betas, "eps": self.eps}

    def record(self) -> dict:
        """Flat, JSON-friendly description (the parametrization's fields prefixed).

        Settings that only some models have (a model class's ``own_settings``: the
        transformer's head dimension, tied embeddings, attention multiplier and query
        initialisation) appear for those models only, so the run ids of other models do not
        depend on them.
        """
        out = {k: v for k, v in asdict(self).items() if k != "parametrization"}
        out["betas"] = list(self.betas)
        p = self.parametrization
        out.update(
            parametrization=p.name,
            base_width=p.base_width,
            base_depth=p.base_depth,
            depth_rule=p.depth_rule if p.depth_alpha is None else f"alpha={p.depth_alpha:g}",
            depth_alpha=p.alpha,
            init_sigma=p.init_sigma,
            input_alpha=p.input_alpha,
            output_alpha=p.output_alpha,
            readout_zero_init=p.readout_zero_init,
            weight_decay_scaling=p.weight_decay_scaling,
            attn_alpha=p.attn_alpha,
            query_zero_init=p.query_zero_init,
        )
        own = MODELS[self.model].own_settings
        others = {name for model in MODELS.values() for name in model.own_settings} - set(own)
        return {k: v for k, v in out.items() if k not in others}


MEMBER_MULTIPLIERS = ("init_sigma", "input_alpha", "output_alpha")
"""Parametrization fields a :class:`Member` may override."""


@dataclass(frozen=True)
class Member:
    """What distinguishes one member of a group.

    ``lr`` and ``weight_decay`` are base values (the parametrization scales them per
    tensor); ``seed`` fixes the initialisation and the order of the data. ``init_sigma``,
    ``input_alpha`` and ``output_alpha`` override the group's
    :class:`~toolkit.engine.parametrization.Parametrization` for this member (``None``: the
    group's value); they change neither tensor shapes nor optimizer multipliers, so members
    that differ in them still train as one ensemble.
    """

    lr: float
    weight_decay: float = 0.0
    seed: int = 0
    init_sigma: float | None = None
    input_alpha: float | None = None
    output_alpha: float | None = None

    def multipliers(self) -> dict[str, float]:
        """The parametrization fields this member overrides, by name."""
        return {
            name: value for name in MEMBER_MULTIPLIERS if (value := getattr(self, name)) is not None
        }


def member_config(config: TrainConfig, member: Member) -> TrainConfig:
    """``config`` with ``member``'s multipliers applied to its parametrization."""
    overrides = member.multipliers()
    if not overrides:
        return config
    return replace(config, parametrization=config.parametrization.with_(**overrides))


def run_id(config: TrainConfig, member: Member) -> str:
    """Stable id of one run: a hash of every setting that changes its numbers.

    A member's multipliers enter through :func:`member_config`, so a member with
    ``output_alpha=2`` has the id of a lone member of a group whose parametrization has
    ``output_alpha=2``.
    """
    settings = member_config(config, member).record()
    settings.pop("study")
    settings.pop("eval_every")
    settings.update(lr=member.lr, weight_decay=member.weight_decay, seed=member.seed)
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def lr_factor(step: int, config: TrainConfig) -> float:
    """Schedule factor at ``step`` (0-based update index): warmup, then decay to zero."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(config.steps - config.warmup_steps, 1)
    progress = (step - config.warmup_steps) / span
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


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


@dataclass
class ProbeContext:
    """What a probe may look at: the model, the step and a fixed probe batch."""

    model: EnsembleModel
    step: int
    x: torch.Tensor  # (members, batch, d_in), the same at every step
    initial: dict[str, torch.Tensor]  # tensor name -> value at init, (members, ...)
    previous: dict[str, torch.Tensor]  # tensor name -> value before the last update

    @torch.no_grad()
    def activations(self) -> dict[str, torch.Tensor]:
        """Every layer's output on the probe batch, ``(members, batch, features)``."""
        captured: dict[str, torch.Tensor] = {}
        self.model(self.x, capture=captured)
        return captured


Probe = Callable[[ProbeContext], list[dict]]


def gather(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows[index]`` for an ``(members, batch)`` index (``index_select`` is ~2x faster)."""
    return rows.index_select(0, index.flatten()).view(*index.shape, *rows.shape[1:])


def per_member_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean loss of each member, ``(members,)``: mean squared error (regression), or
    cross-entropy averaged over examples (classification: ``output`` ``(members, batch,
    classes)``) or over every predicted token (language: ``(members, batch, T, vocab)``)."""
    if task.kind == "regression":
        return (output - target).pow(2).flatten(1).mean(1)
    flat = F.cross_entropy(output.flatten(0, -2), target.flatten(), reduction="none")
    return flat.view(output.shape[0], -1).mean(1)


@torch.no_grad()
def evaluate(model: EnsembleModel, task: Task, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024):
    """Per-member loss and accuracy (NaN for regression) on ``(x, y)``, shared by all members.

    ``chunk`` bounds the predictions per forward pass (examples, or tokens of a language
    task); a language task's accuracy is the share of tokens predicted right.
    """
    members = model.members
    loss = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, device=x.device)
    if task.kind == "language":
        chunk = max(1, chunk // x.shape[1])
    for start in range(0, x.shape[0], chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        out = model(xb.unsqueeze(0).expand(members, *xb.shape))
        target = yb.unsqueeze(0).expand(members, *yb.shape)
        loss += per_member_loss(task, out, target) * xb.shape[0]
        if task.kind != "regression":
            hits = (out.argmax(-1) == target).float().view(members, xb.shape[0], -1)
            correct += hits.mean(2).sum(1)
    loss /= x.shape[0]
    accuracy = (
        correct / x.shape[0] if task.kind != "regression" else torch.full_like(loss, math.nan)
    )
    return loss, accuracy


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
    return MODELS[config.model](
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


def _check_members(members: Sequence[Member]) -> None:
    if len(members) == 0:
        raise InputError("members=[] is empty: give at least one Member(lr, weight_decay, seed)")
    for member in members:
        check_positive("lr", member.lr)
        if not (math.isfinite(member.weight_decay) and member.weight_decay >= 0):
            raise InputError(f"weight_decay={member.weight_decay!r} must be a finite number >= 0")
        if not isinstance(member.seed, int) or member.seed < 0:
            raise InputError(f"seed={member.seed!r} must be a non-negative integer")
        for name, value in member.multipliers().items():
            check_positive(name, value)


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
) -> Records:
    """Train all ``members`` of one group together and return tidy records.

    Args:
        config: the shared settings.
        members: per-member LR, weight decay, seed and multipliers.
        task: a loaded task (default: ``load_task(config.task)``).
        probes: called at ``probe_steps`` (see module docstring).
        device: ``"cpu"`` (default) or e.g. ``"cuda"``.
        on_step: called after every update with the number of steps done.
        init: starting values, tensor name -> ``(members, ...)``, replacing the
            seeded initialisation (e.g. pre-trained weights to fine-tune; the
            seed still orders the data). Run ids do not see them: keep such runs
            out of a store shared with runs from the seeded initialisation.
    """
    _check_members(members)
    started = time.perf_counter()
    device = torch.device(device)
    task = (task or load_task(config.task)).to(device)
    n_members = len(members)
    seeds = [m.seed for m in members]
    model = build_model(config, task.d_in, task.d_out, seeds, members=members).to(device)
    specs_params = model.named_tensors()
    if init is not None:
        load_tensors(model, init)
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
    probes = list(probes)
    probe_steps = {s for s in probe_steps if 0 <= s <= config.steps}
    probe_rows: list[dict] = []
    context = None
    if probes and probe_steps:
        probe_index = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(0))
        x_probe = task.x_train[probe_index[: config.batch_size].to(device)]
        initial = {s.name: p.detach().clone() for s, p in specs_params}
        context = ProbeContext(
            model, 0, x_probe.expand(n_members, *x_probe.shape), initial, initial
        )

    eval_rows = config.eval_examples
    if task.kind == "language":  # eval_examples counts predicted tokens
        eval_rows = -(-eval_rows // task.d_in)
    eval_index = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(1))
    eval_index = eval_index[:eval_rows].to(device)
    x_eval_train, y_eval_train = task.x_train[eval_index], task.y_train[eval_index]
    x_eval_val, y_eval_val = task.x_val[:eval_rows], task.y_val[:eval_rows]

    batch_losses = torch.full((config.steps, n_members), math.nan)
    curve_rows: list[tuple[int, str, str, torch.Tensor]] = []
    active = torch.ones(n_members, dtype=torch.bool)
    diverged_at = [None] * n_members
    first_loss: torch.Tensor | None = None

    def run_probes(step: int) -> None:
        context.step = step
        for probe in probes:
            for row in probe(context):
                probe_rows.append({"run_id": ids[row.pop("member")], "step": step, **row})

    # At step 0 members of the same seed and multipliers share their function (unless
    # ``init`` set their weights): the initial evaluation runs on one member of each.
    starts = [replace(m, lr=1.0, weight_decay=0.0) for m in members]
    distinct = list(dict.fromkeys(starts))
    initial = None  # (one member per distinct start, each member's row in it)
    if init is None and len(distinct) < n_members:
        initial = (
            build_model(
                config, task.d_in, task.d_out, [m.seed for m in distinct], members=distinct
            ).to(device),
            torch.tensor([distinct.index(start) for start in starts], device=device),
        )

    def run_eval(step: int) -> None:
        for split, x, y in (("train", x_eval_train, y_eval_train), ("val", x_eval_val, y_eval_val)):
            if step == 0 and initial is not None:
                loss, accuracy = (v[initial[1]] for v in evaluate(initial[0], task, x, y))
            else:
                loss, accuracy = evaluate(model, task, x, y)
            # Frozen members were cleared: their numbers mean nothing, record NaN.
            curve_rows.append((step, split, "loss", torch.where(active, loss.cpu(), math.nan)))
            if task.kind != "regression":
                curve_rows.append(
                    (step, split, "accuracy", torch.where(active, accuracy.cpu(), math.nan))
                )

    run_eval(0)
    for step in range(config.steps + 1):
        if context is not None and step in probe_steps:
            run_probes(step)
        if step == config.steps:
            break
        index = sampler.next().to(device)
        x, y = gather(task.x_train, index), gather(task.y_train, index)
        output = model(x)
        loss = per_member_loss(task, output, y)
        loss_cpu = loss.detach().cpu()
        if first_loss is None:
            first_loss = loss_cpu.clone()
        exploded = loss_cpu > config.divergence_factor * first_loss
        bad = active & (~torch.isfinite(loss_cpu) | exploded)
        batch_losses[step] = torch.where(active, loss_cpu, math.nan)
        active &= ~bad
        # A frozen member's loss is masked out of the objective; its NaN-tainted
        # gradients only reach its own slice and are cleared by freeze() below.
        objective = torch.where(active.to(device), loss, torch.zeros_like(loss)).sum()
        optimizer.zero_grad()
        objective.backward()
        if context is not None and step + 1 in probe_steps:
            context.previous = {s.name: p.detach().clone() for s, p in specs_params}
        optimizer.step(lr_factor(step, config))
        for member in torch.nonzero(bad).flatten().tolist():
            optimizer.freeze(member)
            diverged_at[member] = step
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            run_eval(step + 1)
        if on_step is not None:
            on_step(step + 1)

    wall = time.perf_counter() - started
    curves = _curve_frame(ids, batch_losses, curve_rows, active)
    runs = _run_frame(config, members, ids, curves, diverged_at, wall, model.parameter_count())
    probes_frame = pl.DataFrame(
        probe_rows,
        schema={
            "run_id": pl.String,
            "step": pl.Int64,
            "layer": pl.String,
            "role": pl.String,
            "stat": pl.String,
            "value": pl.Float64,
        },
    )
    return Records(runs=runs, curves=curves, probes=probes_frame)


def _curve_frame(ids, batch_losses, curve_rows, active) -> pl.DataFrame:
    steps, n_members = batch_losses.shape
    frames = [
        pl.DataFrame(
            {
                "run_id": ids * steps,
                "step": [s for s in range(steps) for _ in range(n_members)],
                "split": "batch",
                "metric": "loss",
                "value": batch_losses.flatten().double().numpy(),
            }
        )
    ]
    for step, split, metric, values in curve_rows:
        frames.append(
            pl.DataFrame(
                {
                    "run_id": ids,
                    "step": step,
                    "split": split,
                    "metric": metric,
                    "value": values.double().numpy(),
                }
            )
        )
    curves = pl.concat([f.with_columns(pl.col("step").cast(pl.Int64)) for f in frames])
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
