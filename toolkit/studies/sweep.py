"""Sweeps: a grid of runs, planned into batched groups, run into a store.

A :class:`SweepSpec` is a grid over model settings (parametrization,
optimizer, width, depth, steps, batch size, schedule, depth rule) and member
settings (learning rate, weight decay, seed). :func:`plan` turns it into
:class:`Group` s: runs that share a shape train together as one ensemble
(members = LR x WD x seed), chunked so that a group's memory stays under a
budget. Runs already in the store are left out, which is how a re-run resumes.

Executors (:func:`run_local`, and :func:`toolkit.studies.ray.run_ray`) train
the groups and write one store file set per finished group.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

from toolkit.engine.data import TASKS, load_task
from toolkit.engine.models import MODELS
from toolkit.engine.optim import OPTIMIZERS
from toolkit.engine.parametrization import (
    DEPTH_RULES,
    WEIGHT_DECAY_SCALINGS,
    WIDTH_RULES,
    Kind,
    Parametrization,
)
from toolkit.engine.train import SCHEDULES, Member, TrainConfig, build_model, run_id, train
from toolkit.errors import InputError, check_choice, check_positive
from toolkit.paths import smoke_mode
from toolkit.store import Store

_LOG2_RANGE = re.compile(r"^\s*2\^(-?\d+(?:\.\d+)?)\s*:\s*2\^(-?\d+(?:\.\d+)?)\s*:\s*(\d+)\s*$")


def parse_lrs(text: str) -> tuple[float, ...]:
    """Learning rates from ``"1e-3,3e-3"`` or a log2 range ``"2^-14:2^-2:13"``.

    The range form gives ``n`` values evenly spaced in log2 from ``2^a`` to
    ``2^b`` inclusive (``2^-14:2^-2:13`` is every power of two in between).
    """
    match = _LOG2_RANGE.match(text)
    if match:
        lo, hi, n = float(match[1]), float(match[2]), int(match[3])
        if n < 1 or (n == 1 and lo != hi) or hi < lo:
            raise InputError(f"lrs={text!r}: need 2^a:2^b:n with a <= b and n >= 2 (or a == b)")
        if n == 1:
            return (2.0**lo,)
        return tuple(2.0 ** (lo + (hi - lo) * i / (n - 1)) for i in range(n))
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"lrs={text!r} is neither a comma list of numbers nor a range like 2^-14:2^-2:13"
        ) from None
    if not values:
        raise InputError(f"lrs={text!r} is empty")
    return values


def _as_tuple(value) -> tuple:
    if isinstance(value, str | int | float):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class SweepSpec:
    """A grid of runs. List fields are crossed; scalar fields are shared.

    ``seeds`` is a count (seeds ``0..seeds-1``); ``base_depth`` defaults to the
    smallest depth. ``max_members`` and ``memory_budget_gb`` bound a group.
    """

    study: str = ""
    model: str = "mlp"
    task: str = "mnist1d"
    parametrizations: tuple[str, ...] = ("mup",)
    optimizers: tuple[str, ...] = ("adam",)
    widths: tuple[int, ...] = (64,)
    depths: tuple[int, ...] = (3,)
    lrs: tuple[float, ...] = tuple(2.0**k for k in range(-12, -3))
    weight_decays: tuple[float, ...] = (0.0,)
    seeds: int = 1
    steps: tuple[int, ...] = (500,)
    batch_sizes: tuple[int, ...] = (128,)
    schedules: tuple[str, ...] = ("constant",)
    depth_rules: tuple[str, ...] = ("none",)
    warmup_steps: int = 0
    base_width: int = 64
    base_depth: int | None = None
    init_sigma: float = 1.0
    input_alpha: float = 1.0
    output_alpha: float = 1.0
    readout_zero_init: bool = False
    weight_decay_scaling: str = "coupled"
    eval_every: int = 100
    max_members: int = 64
    memory_budget_gb: float = 2.0
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type.startswith("tuple"):
                object.__setattr__(self, f.name, _as_tuple(getattr(self, f.name)))
        check_choice("model", self.model, MODELS)
        check_choice("task", self.task, TASKS)
        for name in ("parametrizations", "optimizers", "widths", "depths", "lrs", "steps"):
            if not getattr(self, name):
                raise InputError(f"{name}=() is empty: give at least one value")
        for value in self.parametrizations:
            check_choice("parametrization", value, WIDTH_RULES)
        for value in self.optimizers:
            check_choice("optimizer", value, OPTIMIZERS)
        for value in self.schedules:
            check_choice("schedule", value, SCHEDULES)
        for value in self.depth_rules:
            check_choice("depth_rule", value, DEPTH_RULES)
        check_choice("weight_decay_scaling", self.weight_decay_scaling, WEIGHT_DECAY_SCALINGS)
        for name in ("widths", "depths", "steps", "batch_sizes"):
            for value in getattr(self, name):
                check_positive(name, value, integer=True)
        for value in self.lrs:
            check_positive("lrs", value)
        for value in self.weight_decays:
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InputError(f"weight_decays={value!r} must be a finite number >= 0")
        for name in ("seeds", "base_width", "eval_every", "max_members"):
            check_positive(name, getattr(self, name), integer=True)
        if self.base_depth is not None:
            check_positive("base_depth", self.base_depth, integer=True)
        check_positive("memory_budget_gb", self.memory_budget_gb)
        for depth_rule in self.depth_rules:  # the shared multipliers, checked once
            self.parametrization(self.parametrizations[0], depth_rule)

    def parametrization(self, name: str, depth_rule: str) -> Parametrization:
        return Parametrization(
            name=name,
            base_width=self.base_width,
            depth_rule=depth_rule,
            base_depth=self.base_depth or min(self.depths),
            init_sigma=self.init_sigma,
            input_alpha=self.input_alpha,
            output_alpha=self.output_alpha,
            readout_zero_init=self.readout_zero_init,
            weight_decay_scaling=self.weight_decay_scaling,
        )

    def configs(self) -> list[TrainConfig]:
        """One training config per point of the model-settings grid."""
        grid = itertools.product(
            self.parametrizations,
            self.depth_rules,
            self.optimizers,
            self.widths,
            self.depths,
            self.steps,
            self.batch_sizes,
            self.schedules,
        )
        return [
            TrainConfig(
                model=self.model,
                task=self.task,
                parametrization=self.parametrization(name, depth_rule),
                optimizer=optimizer,
                width=width,
                depth=depth,
                steps=steps,
                batch_size=batch_size,
                schedule=schedule,
                warmup_steps=min(self.warmup_steps, steps),
                eval_every=min(self.eval_every, steps),
                study=self.study,
            )
            for name, depth_rule, optimizer, width, depth, steps, batch_size, schedule in grid
        ]

    def members(self) -> list[Member]:
        """Every (LR, weight decay, seed) combination."""
        return [
            Member(lr=float(lr), weight_decay=float(wd), seed=seed)
            for lr, wd, seed in itertools.product(self.lrs, self.weight_decays, range(self.seeds))
        ]

    @property
    def size(self) -> int:
        return len(self.configs()) * len(self.members())

    @classmethod
    def from_toml(cls, path: str | Path, *, extra: Sequence[str] = ()) -> list[SweepSpec]:
        """Specs from a TOML file: top-level keys are one grid; ``[[grid]]`` tables add more,
        each inheriting the top-level keys. ``lrs`` may be a list or a string such as
        ``"2^-14:2^-2:13"``. A ``[smoke]`` table overrides every grid in smoke mode
        (:func:`smoke_mode`). Keys named in ``extra`` are settings of a study built on
        sweeps (e.g. the intrinsic-dimension study's ``projections``): they go to the
        spec's ``extra`` dict instead of being rejected."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"spec={str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise InputError(f"spec={str(path)!r} is not valid TOML: {error}") from None
        grids = data.pop("grid", [{}])
        smoke = data.pop("smoke", {})
        if not smoke_mode():
            smoke = {}
        specs = []
        for grid in grids:
            merged = {**data, **grid, **smoke}
            extras = {key: merged.pop(key) for key in extra if key in merged}
            specs.append(cls.from_dict(merged).with_(extra=extras))
        return specs

    @classmethod
    def from_dict(cls, data: dict) -> SweepSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown sweep setting {unknown[0]!r}; allowed: {', '.join(sorted(known))}"
            )
        data = dict(data)
        if isinstance(data.get("lrs"), str):
            data["lrs"] = parse_lrs(data["lrs"])
        return cls(**data)

    def with_(self, **changes) -> SweepSpec:
        return replace(self, **changes)


@dataclass(frozen=True)
class Group:
    """Runs trained together as one ensemble: a shared config and its members."""

    config: TrainConfig
    members: tuple[Member, ...]
    flops: float  # estimated training FLOPs of the whole group
    bytes: int  # estimated peak memory of the whole group

    @property
    def run_ids(self) -> list[str]:
        return [run_id(self.config, m) for m in self.members]

    @property
    def id(self) -> str:
        """Stable name of this group's store files: a hash of its run ids."""
        return hashlib.sha1(",".join(sorted(self.run_ids)).encode()).hexdigest()[:16]


@dataclass
class Plan:
    """The groups to train, and how many runs were already finished."""

    groups: list[Group]
    finished: int = 0

    @property
    def runs(self) -> int:
        return sum(len(g.members) for g in self.groups)

    @property
    def steps(self) -> int:
        return sum(g.config.steps for g in self.groups)

    @property
    def flops(self) -> float:
        return sum(g.flops for g in self.groups)

    def summary(self) -> str:
        widest = max((len(g.members) for g in self.groups), default=0)
        peak = max((g.bytes for g in self.groups), default=0) / 2**30
        return (
            f"{len(self.groups)} groups, {self.runs} runs to train ({self.finished} already "
            f"finished), up to {widest} members per group, ~{self.flops / 1e12:.2f} TFLOP, "
            f"peak group memory ~{peak:.2f} GiB"
        )

    def records(self) -> list[dict]:
        """One row per group, for tables and JSON."""
        return [
            {
                "group": g.id,
                "parametrization": g.config.parametrization.name,
                "optimizer": g.config.optimizer,
                "width": g.config.width,
                "depth": g.config.depth,
                "steps": g.config.steps,
                "batch_size": g.config.batch_size,
                "members": len(g.members),
                "gflop": g.flops / 1e9,
            }
            for g in self.groups
        ]


@lru_cache(maxsize=8)
def _task_shape(name: str) -> tuple[int, int]:
    task = load_task(name)
    return task.d_in, task.d_out


def _costs(config: TrainConfig) -> tuple[float, int]:
    """Per-member training FLOPs and bytes: 6 FLOPs per matrix weight per example
    (forward 2, backward 4); memory of parameters, gradients, two optimizer
    buffers and the activations kept for the backward pass (float32)."""
    d_in, d_out = _task_shape(config.task)
    model = build_model(config, d_in, d_out, [0], shape_only=True)
    weights = model.parameter_count(Kind.WEIGHT)
    flops = 6.0 * weights * config.batch_size * config.steps
    activations = 4 * config.batch_size * config.width * (len(model.specs) + 2)
    return flops, 4 * 4 * model.parameter_count() + 4 * activations


def plan(spec: SweepSpec | Sequence[SweepSpec], *, finished: Iterable[str] = ()) -> Plan:
    """Group the runs of ``spec`` that are not in ``finished`` (run ids)."""
    specs = [spec] if isinstance(spec, SweepSpec) else list(spec)
    done = set(finished)
    groups: list[Group] = []
    seen: set[str] = set()
    skipped = 0
    for s in specs:
        members = s.members()
        for config in s.configs():
            todo = []
            for member in members:
                rid = run_id(config, member)
                if rid in done:
                    skipped += 1
                elif rid not in seen:
                    seen.add(rid)
                    todo.append(member)
            if not todo:
                continue
            flops, nbytes = _costs(config)
            per_group = max(1, min(s.max_members, int(s.memory_budget_gb * 2**30 // nbytes)))
            for start in range(0, len(todo), per_group):
                chunk = tuple(todo[start : start + per_group])
                groups.append(Group(config, chunk, flops * len(chunk), nbytes * len(chunk)))
    return Plan(groups=groups, finished=skipped)


def train_group(group: Group, store: Store, *, device: str = "cpu", on_step=None) -> str:
    """Train one group and write it to ``store``; returns the group id."""
    records = train(group.config, group.members, device=device, on_step=on_step)
    store.write_group(group.id, records)
    return group.id


def run_local(
    spec: SweepSpec | Sequence[SweepSpec],
    out: str | Path,
    *,
    device: str = "cpu",
    quiet: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
) -> Plan:
    """Run a sweep in this process into the store at ``out``, skipping finished runs.

    Shows a tqdm progress bar over all training steps (terminal or notebook)
    unless ``quiet``. Returns the plan that was executed.
    """
    from tqdm.auto import tqdm

    store = Store(out)
    work = plan(spec, finished=store.finished_run_ids())
    if on_plan is not None:
        on_plan(work)
    with tqdm(total=work.steps, unit="step", disable=quiet, dynamic_ncols=True) as bar:
        for i, group in enumerate(work.groups, start=1):
            c = group.config
            bar.set_description(
                f"group {i}/{len(work.groups)} {c.parametrization.name} {c.optimizer} "
                f"w{c.width} d{c.depth}"
            )
            done = 0

            def advance(step: int) -> None:
                nonlocal done
                bar.update(step - done)
                done = step

            train_group(group, store, device=device, on_step=advance)
    return work
