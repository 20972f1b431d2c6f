"""Sweeps: a spec's grid of runs, planned into batched groups, run into a store.

:func:`plan` turns :class:`~toolkit.studies.spec.SweepSpec` s into :class:`Group` s:
runs that share a shape train together as one ensemble (members = the member grids x
seeds), chunked so that a group's memory stays under a budget. Runs already in the
store are left out, which is how a re-run resumes.

Executors (:func:`run_local`, and :func:`toolkit.studies.ray.run_ray`) train the
groups, with the spec's probes at its probe steps, and write one store file set per
finished group.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Kind
from toolkit.engine.train import Member, TrainConfig, build_model, run_id, train
from toolkit.store import RUN_SETTINGS, Store
from toolkit.studies.schema import PROBES
from toolkit.studies.spec import SweepSpec

__all__ = [
    "Group",
    "Plan",
    "SweepSpec",
    "plan",
    "probe_records",
    "run_local",
    "run_spec",
    "train_group",
]


@dataclass(frozen=True)
class Group:
    """Runs trained together as one ensemble: a shared config and its members."""

    config: TrainConfig
    members: tuple[Member, ...]
    flops: float  # estimated training FLOPs of the whole group
    bytes: int  # estimated peak memory of the whole group
    probes: tuple[str, ...] = ()  # names in toolkit.studies.spec.PROBES
    probe_steps: tuple[int, ...] = ()

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
        """One row per group, for tables and JSON: its shape, every other setting that
        differs between groups, and its members (with the values that vary among them)."""
        configs = [g.config.record() for g in self.groups]
        shown = ("parametrization", "optimizer", "width", "depth", "steps", "batch_size")
        varying = [
            key
            for key in (configs[0] if configs else {})
            if key not in (*shown, "study", "eval_every", "betas")
            and len({str(c.get(key)) for c in configs}) > 1
        ]
        return [
            {
                "group": g.id,
                **{key: config[key] for key in (*shown, *varying)},
                "members": len(g.members),
                "member_values": _member_values(g.members),
                "gflop": g.flops / 1e9,
            }
            for g, config in zip(self.groups, configs, strict=True)
        ]


def _member_values(members: Sequence[Member]) -> str:
    """How the members differ, e.g. ``lr x4, seed x2`` (a setting shared by all is left out)."""
    counts = {
        name: len({getattr(m, name) for m in members}) for name in Member.__dataclass_fields__
    }
    return ", ".join(f"{name} x{n}" for name, n in counts.items() if n > 1)


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
            probing = (s.probes, s.probe_steps_for(config.steps))
            for start in range(0, len(todo), per_group):
                chunk = tuple(todo[start : start + per_group])
                groups.append(
                    Group(config, chunk, flops * len(chunk), nbytes * len(chunk), *probing)
                )
    return Plan(groups=groups, finished=skipped)


def train_group(group: Group, store: Store, *, device: str = "cpu", on_step=None) -> str:
    """Train one group (with its probes) and write it to ``store``; returns the group id."""
    records = train(
        group.config,
        group.members,
        probes=[PROBES[name] for name in group.probes],
        probe_steps=group.probe_steps,
        device=device,
        on_step=on_step,
    )
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


def probe_records(spec: SweepSpec | Sequence[SweepSpec], *, device: str = "cpu") -> pl.DataFrame:
    """Train ``spec`` (into a temporary store, kept nowhere) and return its probe rows,
    each with its run's :data:`~toolkit.store.RUN_SETTINGS`."""
    with tempfile.TemporaryDirectory() as out:
        run_local(spec, out, device=device, quiet=True)
        store = Store(out)
        runs = store.runs().select("run_id", *RUN_SETTINGS)
        return store.probes().join(runs, on="run_id").drop("run_id").collect()


def run_spec(path: Path, out: Path, *, quiet: bool = False) -> None:
    """Run the sweep spec file at ``path`` into the store at ``out`` (resumes)."""
    run_local(SweepSpec.from_toml(path), out, quiet=quiet)
