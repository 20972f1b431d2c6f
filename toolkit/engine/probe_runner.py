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
from toolkit.engine.layers import EnsembleLinear, EnsembleModel

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
    """What a probe may look at: the model, the step and a fixed probe batch.

    ``y`` and ``task`` (the probe batch's targets and the task whose loss they give) are
    there for probes of the loss (:func:`toolkit.engine.probes.sharpness_stats`); ``active``
    is the members still training, a ``(members,)`` bool tensor the training loop updates
    in place (``None``: every member); ``step_sizes`` the optimizer's
    :meth:`~toolkit.engine.optim.EnsembleOptimizer.step_sizes`, its diagonal preconditioner
    now, one tensor per model tensor in
    :meth:`~toolkit.engine.layers.EnsembleModel.named_tensors` order (``None``: unknown).
    """

    model: EnsembleModel
    step: int
    x: torch.Tensor  # (members, batch, d_in), the same at every step
    initial: dict[str, torch.Tensor]  # tensor name -> value at init, (members, ...)
    previous: dict[str, torch.Tensor]  # tensor name -> value before the last update
    y: torch.Tensor | None = None  # (members, batch, ...) targets of x
    task: Task | None = None
    active: torch.Tensor | None = None  # (members,) bool, on the CPU
    step_sizes: Callable[[], list[torch.Tensor] | None] | None = None

    @torch.no_grad()
    def activations(self) -> dict[str, torch.Tensor]:
        """Every layer's output on the probe batch, ``(members, batch, features)``."""
        captured: dict[str, torch.Tensor] = {}
        self.model(self.x, capture=captured)
        return captured

    @torch.no_grad()
    def inputs(self) -> dict[str, torch.Tensor]:
        """Every weight matrix's input on the probe batch, by layer (the tensor name less
        ``.weight``), ``(members, rows, fan_in)``: what ``h @ W`` multiplies."""
        captured: dict[str, torch.Tensor] = {}
        hooks = []
        for module in self.model.modules():
            if isinstance(module, EnsembleLinear) and module.weight is not None:
                layer = module.specs["weight"].name.removesuffix(".weight")

                def keep(_module, args, layer=layer):
                    captured[layer] = args[0]

                hooks.append(module.register_forward_pre_hook(keep))
        try:
            self.model(self.x)
        finally:
            for hook in hooks:
                hook.remove()
        return captured


Probe = Callable[[ProbeContext], list[dict]]


def _snapshot(model: EnsembleModel) -> dict[str, torch.Tensor]:
    return {s.name: p.detach().clone() for s, p in model.named_tensors()}


class ProbeRunner:
    """Runs ``probes`` at ``steps`` (those in ``0..last_step``) and collects their rows.

    The probe batch is ``batch_size`` training examples drawn once (seed 0), the same for
    every member and step. ``run_ids`` name the members in the rows; ``active`` (``(members,)``
    bool, updated in place by the caller) says which members still train; ``step_sizes``
    reads the optimizer's preconditioner (:class:`ProbeContext`).
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
        active: torch.Tensor | None = None,
        step_sizes: Callable[[], list[torch.Tensor] | None] | None = None,
    ) -> None:
        self.probes = list(probes)
        self.steps = {s for s in steps if 0 <= s <= last_step}
        self.run_ids = list(run_ids)
        self.rows: list[dict] = []
        self.context: ProbeContext | None = None
        if self.probes and self.steps:
            index = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(0))
            picked = index[:batch_size].to(task.x_train.device)
            x, y = task.x_train[picked], task.y_train[picked]
            initial = _snapshot(model)
            x, y = x.expand(model.members, *x.shape), y.expand(model.members, *y.shape)
            self.context = ProbeContext(model, 0, x, initial, initial, y, task, active,
                                        step_sizes)

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
