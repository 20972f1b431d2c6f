"""Running probes during training: the context they read and the steps they run at.

Probes are callables ``probe(ctx: ProbeContext) -> list[dict]`` run at chosen steps
*before* that step's update (step 0 is the initialisation, step ``steps`` is after the last
update). Each returned dict has ``member``, ``layer``, ``role``, ``stat`` and ``value``; the
runner only adds ``run_id`` and ``step``, it knows nothing of what is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import polars as pl
import torch

from toolkit.engine.data import Task
from toolkit.engine.layers import EnsembleModel

PROBE_SCHEMA = {
    "run_id": pl.String,
    "step": pl.Int64,
    "layer": pl.String,
    "role": pl.String,
    "stat": pl.String,
    "value": pl.Float64,
}


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


def _snapshot(model: EnsembleModel) -> dict[str, torch.Tensor]:
    return {s.name: p.detach().clone() for s, p in model.named_tensors()}


class ProbeRunner:
    """Runs ``probes`` at ``steps`` (those in ``0..last_step``) and collects their rows.

    The probe batch is ``batch_size`` training examples drawn once (seed 0), the same for
    every member and step. ``run_ids`` name the members in the rows.
    """

    def __init__(
        self,
        probes: Iterable[Probe],
        steps: Iterable[int],
        *,
        model: EnsembleModel,
        task: Task,
        batch_size: int,
        last_step: int,
        run_ids: Sequence[str],
    ) -> None:
        self.probes = list(probes)
        self.steps = {s for s in steps if 0 <= s <= last_step}
        self.run_ids = list(run_ids)
        self.rows: list[dict] = []
        self.context: ProbeContext | None = None
        if self.probes and self.steps:
            index = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(0))
            x = task.x_train[index[:batch_size].to(task.x_train.device)]
            initial = _snapshot(model)
            x = x.expand(model.members, *x.shape)
            self.context = ProbeContext(model, 0, x, initial, initial)

    def before_update(self, step: int) -> None:
        """Keep the tensors before update ``step`` when a probe runs right after it."""
        if self.context is not None and step + 1 in self.steps:
            self.context.previous = _snapshot(self.context.model)

    def run(self, step: int) -> None:
        """Run every probe if ``step`` is a probe step."""
        if self.context is None or step not in self.steps:
            return
        self.context.step = step
        for probe in self.probes:
            for row in probe(self.context):
                member = row.pop("member")
                self.rows.append({"run_id": self.run_ids[member], "step": step, **row})

    def frame(self) -> pl.DataFrame:
        """The rows as the store's probes table."""
        return pl.DataFrame(self.rows, schema=PROBE_SCHEMA)
