"""Sweeps: a spec's grid of runs, planned into batched groups, run into a store.

:func:`plan` turns :class:`~toolkit.studies.spec.SweepSpec` s into :class:`Group` s:
runs that share a shape train together as one ensemble (members = the member grids x
seeds), chunked so that a group's memory stays under a budget. Runs already in the
store are left out, which is how a re-run resumes.

Before planning, :func:`outlook` sizes the sweep from its shapes alone
(:mod:`toolkit.studies.costs`): a run that cannot fit in the machine's available
memory is refused, and a sweep of more than ``max_runs`` runs or ``max_hours``
estimated hours is refused by the executors (a dry run only warns).

Executors (:func:`run_local`, and :func:`toolkit.studies.ray.run_ray`) train the
groups, with the spec's probes at its probe steps, and write one store file set per
finished group. Every writer holds the store (:meth:`~toolkit.store.Store.writing`)
and claims a group's runs before training them; it trains only the claimed runs
that are still unfinished, and waits for runs another live writer holds, so two
sweeps on one store, however they group their runs, store each run once.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from toolkit.engine.config import Member, TrainConfig, run_id
from toolkit.errors import InputError
from toolkit.locks import Claims
from toolkit.store import RUN_SETTINGS, Store
from toolkit.studies.costs import (
    GIB,
    RunCost,
    available_memory,
    group_seconds,
    overhead_bound,
    run_cost,
)
from toolkit.studies.schema import SCHEMA, Axis
from toolkit.studies.spec import SweepSpec
from toolkit.studies.workers import split_for, train_in_workers

__all__ = [
    "Group",
    "Outlook",
    "Plan",
    "SweepSpec",
    "outlook",
    "plan",
    "probe_records",
    "run_local",
    "run_spec",
    "train_claimed",
    "train_group",
]

WAIT_S = 0.2
"""Pause between looks at runs that another writer holds."""


@dataclass(frozen=True)
class Group:
    """Runs trained together as one ensemble: a shared config and its members."""

    config: TrainConfig
    members: tuple[Member, ...]
    flops: float  # estimated training FLOPs of the whole group
    bytes: int  # estimated peak memory of the whole group
    probes: tuple[str, ...] = ()  # names in toolkit.engine.catalogue.PROBES
    probe_steps: tuple[int, ...] = ()
    seconds: float = 0.0  # estimated wall time of the whole group

    @property
    def run_ids(self) -> list[str]:
        return [run_id(self.config, m) for m in self.members]

    @property
    def step_flops(self) -> float:
        """Estimated training FLOPs of one step of the whole group."""
        return self.flops / self.config.steps

    @property
    def id(self) -> str:
        """Stable name of this group's store files: a hash of its run ids."""
        return hashlib.sha1(",".join(sorted(self.run_ids)).encode()).hexdigest()[:16]

    def subset(self, run_ids: set[str]) -> Group:
        """The group of only the members whose run id is in ``run_ids`` (costs scaled)."""
        members = tuple(m for m, rid in zip(self.members, self.run_ids, strict=True)
                        if rid in run_ids)  # fmt: skip
        share = len(members) / len(self.members)
        return replace(self, members=members, flops=self.flops * share,
                       bytes=int(self.bytes * share), seconds=self.seconds * share)  # fmt: skip


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

    @property
    def hours(self) -> float:
        """Estimated wall time (see :mod:`toolkit.studies.costs`)."""
        return sum(g.seconds for g in self.groups) / 3600

    def summary(self) -> str:
        widest = max((len(g.members) for g in self.groups), default=0)
        peak = max((g.bytes for g in self.groups), default=0) / GIB
        return (
            f"{len(self.groups)} groups, {self.runs} runs to train ({self.finished} already "
            f"finished), up to {widest} members per group, ~{self.flops / 1e12:.2f} TFLOP, "
            f"~{self.hours:.2f} h, peak group memory ~{peak:.2f} GiB"
        )

    def records(self, limit: int | None = None) -> list[dict]:
        """One row per group (the first ``limit``), for tables and JSON: its shape, every
        other setting that differs between groups, and its members (with the values that
        vary among them)."""
        groups = self.groups[:limit]
        configs = [g.config.record() for g in groups]
        shown = ("parametrization", "optimizer", "width", "depth", "steps", "batch_size")
        keys = dict.fromkeys(key for config in configs for key in config)  # some only when set
        varying = [
            key
            for key in keys
            if key not in (*shown, "study", "eval_every", "betas")
            and len({str(c.get(key)) for c in configs}) > 1
        ]
        return [
            {
                "group": g.id,
                **{key: config.get(key) for key in (*shown, *varying)},
                "members": len(g.members),
                "member_values": _member_values(g.members),
                "gflop": g.flops / 1e9,
                "seconds": round(g.seconds, 3),
            }
            for g, config in zip(groups, configs, strict=True)
        ]


def _member_values(members: Sequence[Member]) -> str:
    """How the members differ, e.g. ``lr x4, seed x2`` (a setting shared by all is left out)."""
    counts = {
        name: len({getattr(m, name) for m in members}) for name in Member.__dataclass_fields__
    }
    return ", ".join(f"{name} x{n}" for name, n in counts.items() if n > 1)


def _as_specs(spec: SweepSpec | Sequence[SweepSpec]) -> list[SweepSpec]:
    return [spec] if isinstance(spec, SweepSpec) else list(spec)


def _per_group(spec: SweepSpec, cost: RunCost, memory: int) -> int:
    """Members per group: at most ``max_members``, within the memory budget and ``memory``."""
    budget = min(spec.memory_budget_gb * GIB, memory)
    return max(1, min(spec.max_members, int(budget // max(cost.bytes, 1))))


def _member_count(spec: SweepSpec) -> int:
    """Members per config, counted without listing them."""
    grids = math.prod(len(spec.settings()[s.key]) for s in SCHEMA if s.axis is Axis.MEMBER)
    return grids * spec.seeds


@dataclass(frozen=True)
class Outlook:
    """A sweep's size from its shapes, before planning: runs and estimated hours
    (resumed runs included), and the limits of its specs."""

    runs: int
    hours: float
    max_runs: int
    max_hours: float

    def over(self) -> str | None:
        """What exceeds a limit, in one line, or ``None``."""
        if self.runs > self.max_runs:
            return f"{self.runs:,} runs is more than max_runs={self.max_runs:,}"
        if self.hours > self.max_hours:
            return f"~{self.hours:,.1f} estimated hours is more than max_hours={self.max_hours:g}"
        return None


def outlook(spec: SweepSpec | Sequence[SweepSpec], *, memory: int) -> Outlook:
    """Size ``spec`` from shapes (one meta-device model per config, no member listed);
    :class:`InputError` if one of its runs needs more than ``memory`` bytes."""
    specs = _as_specs(spec)
    runs, seconds = 0, 0.0
    for s in specs:
        n = _member_count(s)
        for config in s.configs():
            cost = run_cost(config, memory=memory)
            per_group = _per_group(s, cost, memory)
            groups, last = divmod(n, per_group)
            seconds += groups * group_seconds(config, cost, per_group)
            seconds += group_seconds(config, cost, last) if last else 0.0
            runs += n
    return Outlook(runs, seconds / 3600, min(s.max_runs for s in specs),
                   min(s.max_hours for s in specs))  # fmt: skip


def plan(
    spec: SweepSpec | Sequence[SweepSpec],
    *,
    finished: Iterable[str] = (),
    memory: int | None = None,
) -> Plan:
    """Group the runs of ``spec`` that are not in ``finished`` (run ids).

    ``memory``: bytes a group may use at most (default: what this machine has
    available); a run that needs more is refused with an :class:`InputError`.
    Run ids are computed only where needed (to skip finished runs, or runs two specs
    share), so planning a large grid costs little more than listing its members.
    """
    specs = _as_specs(spec)
    memory = available_memory() if memory is None else memory
    done = set(finished)
    by_id = bool(done) or len(specs) > 1
    groups: list[Group] = []
    seen: set[str] = set()
    skipped = 0
    for s in specs:
        members = s.members()
        for config in s.configs():
            todo = members
            if by_id:
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
            cost = run_cost(config, memory=memory)
            per_group = _per_group(s, cost, memory)
            probing = (s.probes, s.probe_steps_for(config.steps))
            for start in range(0, len(todo), per_group):
                chunk = tuple(todo[start : start + per_group])
                seconds = group_seconds(config, cost, len(chunk))
                groups.append(Group(config, chunk, cost.flops * len(chunk),
                                    cost.bytes * len(chunk), *probing, seconds))  # fmt: skip
    return Plan(groups=groups, finished=skipped)


def train_group(group: Group, store: Store, *, device: str = "cpu", on_step=None) -> str:
    """Train one group (with its probes) and write it to ``store``; returns the group id.

    Claims nothing: see :func:`train_claimed` for a store other writers may share.
    """
    # torch is imported by the first group that trains, not by planning
    from toolkit.engine.probes import PROBE_FUNCTIONS
    from toolkit.engine.train import train

    records = train(
        group.config,
        group.members,
        probes=[PROBE_FUNCTIONS[name] for name in group.probes],
        probe_steps=group.probe_steps,
        device=device,
        on_step=on_step,
    )
    store.write_group(group.id, records)
    return group.id


class _FinishedRuns:
    """The finished runs of a store, re-read as its runs files appear (a runs file is
    only ever replaced by one of the same runs while writers hold the store)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ids: set[str] = set()
        self._read: set[str] = set()

    def refresh(self) -> set[str]:
        for path in self.store.files("runs"):
            if path.name not in self._read:
                self.ids.update(self.store.read_file(path)["run_id"].to_list())
                self._read.add(path.name)
        return self.ids


def train_claimed(
    groups: Iterable[Group],
    store: Store,
    claims: Claims,
    *,
    device: str = "cpu",
    on_group: Callable[[Group, int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> int:
    """Train ``groups`` into ``store`` under ``claims`` (from :meth:`Store.writing`);
    returns the number of runs this process trained.

    For each group: claim its runs, train those still unfinished, write them, release
    them. Runs another live writer holds are tried again after the other groups,
    pausing :data:`WAIT_S` between rounds that make no progress, until they are
    finished (by their holder) or claimed (their holder died). ``on_group(group,
    skipped_steps)`` is called before each group is trained, and with a group's steps
    when it has nothing left to train here.
    """
    finished = _FinishedRuns(store)
    queue = deque(groups)
    trained, idle = 0, 0
    while queue:
        group = queue.popleft()
        ids = set(group.run_ids)
        taken = claims.take(ids)
        todo = taken - finished.refresh()
        claims.release(taken - todo)
        if todo:
            part = group.subset(todo)
            if on_group is not None:
                on_group(part, 0)
            train_group(part, store, device=device, on_step=on_step)
            claims.release(todo)
            trained += len(todo)
        held = ids - taken - finished.ids
        if held:
            queue.append(group.subset(held))
        elif not todo and on_group is not None:
            on_group(group, group.config.steps)
        idle = 0 if todo else idle + 1
        if queue and idle >= len(queue):
            time.sleep(WAIT_S)
            idle = 0
    return trained


def check_outlook(spec: SweepSpec | Sequence[SweepSpec], *, memory: int) -> None:
    """Refuse (:class:`InputError`) a sweep above its ``max_runs`` / ``max_hours`` or with a
    run that cannot fit in ``memory`` bytes."""
    over = outlook(spec, memory=memory).over()
    if over is not None:
        raise InputError(f"{over}; allowed: raise max_runs / max_hours (--max-runs, "
                         "--max-hours) or shrink the grid")  # fmt: skip


def _side_by_side(groups: list[Group], workers: int, memory: int) -> tuple[list[Group], int]:
    """The overhead-bound groups, cut for ``workers`` single-threaded processes
    (:mod:`toolkit.studies.workers`), and how many processes to use (fewer where memory
    is short); none if fewer than two parts would run at once."""
    small = [g for g in groups if overhead_bound(g.step_flops)]
    widest = max((g.bytes for g in small), default=1)
    workers = min(workers, max(1, memory // max(widest, 1)))
    parts = split_for(small, workers) if workers > 1 else []
    if len(parts) < 2:
        return [], 1
    return parts, min(workers, len(parts))


def run_local(
    spec: SweepSpec | Sequence[SweepSpec],
    out: str | Path,
    *,
    device: str = "cpu",
    quiet: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    workers: int = 1,
) -> Plan:
    """Run a sweep on this machine into the store at ``out``, skipping finished runs.

    Refuses a sweep :func:`check_outlook` refuses before anything is allocated. With
    ``workers`` above 1 (on a CPU), the groups bound by per-step overhead
    (:func:`~toolkit.studies.costs.overhead_bound`) train first, side by side in that many
    single-threaded processes (:mod:`toolkit.studies.workers`), cut into shares of their
    members when there are fewer groups than workers; then the other groups train here
    with every thread. The default, 1, trains every group here: on 2 cores, side by side
    was measured at 0.8-1.16x the speed of one process, since a worker's start (about 2 s)
    eats what the second core gains; it pays on machines with more cores than one small
    group can use. A script that passes ``workers`` must guard its entry point with
    ``if __name__ == "__main__":`` (workers are spawned and import it). Shows a tqdm
    progress bar over all training steps (terminal or notebook) unless ``quiet`` or there
    is nothing to train. Returns the plan that was executed (with the groups as they were
    cut).
    """
    from tqdm.auto import tqdm

    memory = available_memory(device)
    check_outlook(spec, memory=memory)
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers={workers!r}: allowed is a whole number of at least 1")
    store = Store(out)
    with store.writing() as claims:
        work = plan(spec, finished=store.finished_run_ids(), memory=memory)
        parts, workers = _side_by_side(work.groups, workers if str(device) == "cpu" else 1,
                                       memory)
        if parts:
            work.groups = parts + [g for g in work.groups if not overhead_bound(g.step_flops)]
        if on_plan is not None:
            on_plan(work)
        if not work.groups:
            return work
        with tqdm(total=work.steps, unit="step", disable=quiet, dynamic_ncols=True) as bar:
            if parts:
                bar.set_description(f"{len(parts)} small groups in {workers} processes")
                train_in_workers(parts, out, workers=workers, device=device,
                                 on_progress=lambda steps: bar.update(steps - bar.n))  # fmt: skip
            count = 0
            done = 0

            def start(group: Group, skipped: int) -> None:
                nonlocal count, done
                if skipped:
                    bar.update(skipped)
                    return
                count += 1
                done = 0
                c = group.config
                bar.set_description(f"group {count} {c.parametrization.name} {c.optimizer} "
                                    f"w{c.width} d{c.depth}")  # fmt: skip

            def advance(step: int) -> None:
                nonlocal done
                bar.update(step - done)
                done = step

            large = work.groups[len(parts) :]
            train_claimed(large, store, claims, device=device, on_group=start,
                          on_step=advance)  # fmt: skip
    return work


def probe_records(spec: SweepSpec | Sequence[SweepSpec], *, device: str = "cpu") -> pl.DataFrame:
    """Train ``spec`` (into a temporary store, kept nowhere) and return its probe rows,
    each with its run's :data:`~toolkit.store.RUN_SETTINGS` (those the store has)."""
    with tempfile.TemporaryDirectory() as out:
        run_local(spec, out, device=device, quiet=True)
        store = Store(out)
        runs = store.runs()
        columns = runs.collect_schema().names()
        runs = runs.select("run_id", *(c for c in RUN_SETTINGS if c in columns))
        return store.probes().join(runs, on="run_id").drop("run_id").collect()


def run_spec(path: Path, out: Path, *, quiet: bool = False) -> None:
    """Run the sweep spec file at ``path`` into the store at ``out`` (resumes)."""
    run_local(SweepSpec.from_toml(path), out, quiet=quiet)
