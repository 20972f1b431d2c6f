"""What a run costs before anything is allocated: memory and time from its shapes.

The planner (:func:`toolkit.studies.sweep.plan`) sizes every group with
:func:`run_cost`, which builds the model on the ``meta`` device
(``build_model(..., shape_only=True)``: shapes, no storage), once per training
config, never per group. :func:`check_fits` refuses a run that cannot fit in the
memory this machine has available, naming the setting that dominates, before a
single tensor exists. Before that model is built, a run is checked against
:func:`cost_floor`, a lower bound from the settings alone that needs neither torch
nor the task, so an impossible request is refused in the time it takes to read it.

The estimates are upper-bound-minded approximations for float32 training:

* memory per member: parameters, their gradients and two optimizer buffers
  (4 floats per parameter); the activations the backward pass keeps for one batch
  (two tensors per layer, per token for a model that reads token sequences); one
  evaluation batch of ``eval_examples`` (forward only; tokens for a model that
  reads token sequences, so ``eval_examples / tokens`` sequences); and the per-step loss
  curve, kept as a tensor and then as table rows (:data:`CURVE_ROW_BYTES` a step);
* time of a group: :data:`STEP_OVERHEAD_S` per step (tiny models are bound by
  per-step overhead, not arithmetic) plus 6 FLOPs per matrix weight per example
  (forward 2, backward 4) at :data:`FLOPS_PER_SECOND`.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.engine.catalogue import MODELS, TASK_SHAPES
from toolkit.engine.config import TrainConfig
from toolkit.engine.parametrization import Kind
from toolkit.errors import InputError

BYTES_PER_FLOAT = 4
CURVE_ROW_BYTES = 160
"""Memory of one step of one member's training-loss curve (tensor entry and table row)."""
FLOPS_PER_SECOND = 2e10
"""Arithmetic throughput assumed for the time estimate (a few CPU cores)."""
STEP_OVERHEAD_S = 2e-3
"""Seconds of fixed cost per training step of a group (kernel launches, Python)."""
OVERHEAD_BOUND_STEP_FLOPS = 5e8
"""Training FLOPs of one group step below which the step is bound by per-operation
overhead rather than arithmetic: on 2 idle cores an 18-member MLP group of width 32
(4e7 FLOPs a step) runs at about 10% of the matmul peak and one of width 128 (3e8) at about
30%, where width 512 (4e9) reaches 60%; two threads shorten them only 1.3x and 1.6x.
Such groups may train side by side in single-threaded worker processes
(:mod:`toolkit.studies.workers`)."""
DEFAULT_MEMORY_BYTES = 4 * 2**30
"""Memory assumed available where the machine does not say (no ``/proc/meminfo``)."""
GIB = 2**30


@dataclass(frozen=True)
class RunCost:
    """Estimated cost of one member of a group (one run)."""

    flops: float  # training FLOPs
    state_bytes: int  # parameters, gradients, optimizer buffers
    activation_bytes: int  # activations kept for the backward pass of one batch
    eval_bytes: int  # one evaluation batch, forward only
    curve_bytes: int  # the per-step loss curve

    @property
    def bytes(self) -> int:
        """Peak memory of the run."""
        return self.state_bytes + self.activation_bytes + self.eval_bytes + self.curve_bytes

    def dominant_settings(self) -> str:
        """The settings that drive the largest memory term, e.g. ``width/depth``."""
        terms = {
            "width/depth": self.state_bytes,
            "batch_size/width": self.activation_bytes,
            "eval_examples/width": self.eval_bytes,
            "steps": self.curve_bytes,
        }
        return max(terms, key=terms.get)


def _run_cost(config: TrainConfig, *, parameters: int, weights: int, tensors: int) -> RunCost:
    d_in, d_out = TASK_SHAPES[config.task]
    tokens = d_in if MODELS[config.model].reads_tokens else 1
    inputs = 1 if tokens > 1 else d_in
    per_example = 2 * config.width * tokens * (tensors + 2) + inputs + d_out
    return RunCost(
        flops=6.0 * weights * tokens * config.batch_size * config.steps,
        state_bytes=4 * BYTES_PER_FLOAT * parameters,
        activation_bytes=BYTES_PER_FLOAT * config.batch_size * per_example,
        eval_bytes=BYTES_PER_FLOAT * -(-config.eval_examples // tokens) * per_example // 2,
        curve_bytes=CURVE_ROW_BYTES * config.steps,
    )


def cost_floor(config: TrainConfig) -> RunCost:
    """A lower bound on :func:`run_cost` from the settings alone (no torch, no task).

    Every model has an input map of ``d_in x width`` (or a token and position
    embedding of at least that size), a readout of ``width x d_out`` (or one tied to
    an embedding of that size), at least ``depth - 1`` hidden ``width x width``
    matrices and at least ``depth + 1`` tensors; ``tests/studies`` checks the bound
    against the built models.
    """
    d_in, d_out = TASK_SHAPES[config.task]
    weights = config.width * (d_in + d_out) + config.width**2 * (config.depth - 1)
    return _run_cost(config, parameters=weights, weights=weights, tensors=config.depth + 1)


def run_cost(config: TrainConfig, *, memory: int | None = None) -> RunCost:
    """The cost of one run of ``config``; with ``memory`` (bytes), refuse early.

    With ``memory`` the run is first checked against :func:`cost_floor`, so a run too
    large for ``memory`` is refused (:func:`check_fits`) before torch is imported or a
    model is built; then against its cost from the model's shapes.
    """
    if memory is not None:
        check_fits(config, cost_floor(config), memory)
    from toolkit.engine.train import build_model  # torch: only for a run that may fit

    model = build_model(config, *TASK_SHAPES[config.task], [0], shape_only=True)
    weights, tensors = model.parameter_count(Kind.WEIGHT), len(model.specs)
    cost = _run_cost(config, parameters=model.parameter_count(), weights=weights, tensors=tensors)
    if memory is not None:
        check_fits(config, cost, memory)
    return cost


def check_fits(config: TrainConfig, cost: RunCost, memory: int) -> None:
    """Raise :class:`InputError` if one run of ``config`` needs more than ``memory`` bytes."""
    if cost.bytes <= memory:
        return
    shown = ", ".join(
        f"{name}={getattr(config, name)}" for name in ("width", "depth", "batch_size", "steps")
    )
    raise InputError(
        f"{shown}: one run needs ~{cost.bytes / GIB:,.1f} GiB (mostly from "
        f"{cost.dominant_settings()}), more than the {memory / GIB:,.1f} GiB of memory "
        "available; allowed: settings whose run fits in memory"
    )


def available_memory(device: str = "cpu") -> int:
    """Bytes of memory this process may use on ``device``: free GPU memory for a CUDA
    device, else ``MemAvailable`` of ``/proc/meminfo``, else :data:`DEFAULT_MEMORY_BYTES`."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return DEFAULT_MEMORY_BYTES


def overhead_bound(step_flops: float) -> bool:
    """Whether a group whose step costs ``step_flops`` training FLOPs (all members) is
    bound by per-step overhead (:data:`OVERHEAD_BOUND_STEP_FLOPS`)."""
    return step_flops < OVERHEAD_BOUND_STEP_FLOPS


def group_seconds(config: TrainConfig, cost: RunCost, members: int) -> float:
    """Estimated wall time of a group of ``members`` runs of ``config``."""
    return config.steps * STEP_OVERHEAD_S + members * cost.flops / FLOPS_PER_SECOND
