"""Measured time estimates: each group of a plan trained for a few steps on this machine.

The planner's estimate (:func:`toolkit.studies.costs.group_seconds`) comes from the
shapes alone: a fixed cost per step plus FLOPs at an assumed throughput. Small groups
are bound by per-operation overhead that grows with the number of tensors and layers,
not FLOPs, so on 2 cores that estimate is off several-fold in both directions (a deep
residual MLP of width 64 takes far longer than its FLOPs say, a wide MLP less).
:func:`time_group` measures instead: it trains the group itself (its members, shapes and
probes) for :data:`WARMUP_STEPS` + :data:`TIMED_STEPS` + 2 steps, times every step, and
splits the wall time into

* ``start_s``: building the model and the task, and the evaluation at step 0;
* ``step_s``: one training step, the mean of the timed steps (a mean, not a median, so
  that an occasional slow step, e.g. a page-faulting allocation, counts as it will);
* ``probe_s``: one probe point (all the group's probes at one step), the second-to-last
  step's excess over ``step_s``;
* ``eval_s``: one evaluation, the last step's excess over ``step_s``;

and :meth:`GroupTiming.seconds` extrapolates to the group's own steps, evaluations and
probe points. Nothing is written: the runs are thrown away. The figure is this machine's
at this moment: a second process training on the same cores slows both several-fold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolkit.studies.sweep import Group

WARMUP_STEPS = 3
"""Steps trained before timing starts (first-call allocations, lazy initialisation)."""
TIMED_STEPS = 12
"""Steps whose mean is the step time."""


@dataclass(frozen=True)
class GroupTiming:
    """One group's measured costs, in seconds (see the module docstring)."""

    start_s: float
    step_s: float
    eval_s: float
    probe_s: float

    def seconds(self, group: Group) -> float:
        """Estimated wall time of ``group`` trained in full."""
        config = group.config
        evals = -(-config.steps // config.eval_every)  # every eval_every steps and the last
        return (self.start_s + config.steps * self.step_s + evals * self.eval_s
                + len(group.probe_steps) * self.probe_s)  # fmt: skip


def _shape(group: Group) -> tuple:
    """What a group's cost depends on: everything but its members' values and its
    length in steps (the members' count stays)."""
    return (replace(group.config, steps=1, eval_every=1, warmup_steps=0),
            len(group.members), group.probes)  # fmt: skip


def time_group(group: Group, *, device: str = "cpu") -> GroupTiming:
    """Train ``group`` for a few steps (:data:`WARMUP_STEPS`, :data:`TIMED_STEPS`, a probe
    step if it has probes, an evaluation step) and measure its costs; nothing is kept."""
    from toolkit.engine.probes import PROBE_FUNCTIONS
    from toolkit.engine.train import train

    steps = WARMUP_STEPS + TIMED_STEPS + 2
    config = replace(group.config, steps=steps, eval_every=steps,
                     warmup_steps=min(group.config.warmup_steps, steps))  # fmt: skip
    probes = [PROBE_FUNCTIONS[name] for name in group.probes]
    stamps: list[float] = []
    started = time.perf_counter()
    # a probe point at step steps - 2 lands in the second-to-last step; the last step
    # ends with the run's final evaluation
    train(config, group.members, probes=probes, probe_steps=(steps - 2,) if probes else (),
          device=device, on_step=lambda _: stamps.append(time.perf_counter()))  # fmt: skip
    intervals = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    step_s = statistics.fmean(intervals[WARMUP_STEPS - 1 : WARMUP_STEPS - 1 + TIMED_STEPS])
    start_s = max(stamps[WARMUP_STEPS - 1] - started - WARMUP_STEPS * step_s, 0.0)
    probe_s = max(intervals[-2] - step_s, 0.0) if probes else 0.0
    return GroupTiming(start_s=start_s, step_s=step_s, eval_s=max(intervals[-1] - step_s, 0.0),
                       probe_s=probe_s)  # fmt: skip


def measured_seconds(
    groups: Sequence[Group],
    *,
    device: str = "cpu",
    on_group: Callable[[int, int], None] | None = None,
) -> list[float]:
    """Each group's estimated wall time from :func:`time_group`, timing each distinct
    shape once; ``on_group(done, total)`` after each group."""
    timings: dict[tuple, GroupTiming] = {}
    seconds = []
    for number, group in enumerate(groups, 1):
        shape = _shape(group)
        if shape not in timings:
            timings[shape] = time_group(group, device=device)
        seconds.append(timings[shape].seconds(group))
        if on_group is not None:
            on_group(number, len(groups))
    return seconds
