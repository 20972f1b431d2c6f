"""The divergence guard: a diverged member must not poison its group.

A member whose loss is not finite, or exceeds ``factor`` times its first loss, is
*diverged*: from that step on its loss is masked out of the objective and the caller
freezes it in the optimizer (LR zero, tensors and state cleared), so its NaN/inf values
reach nothing its siblings compute. A guard made with ``freeze=False`` only marks
divergence and lets the member train on (the coordinate check records what a blow-up
really does); members share no tensors, so its values still reach only its own slice.
"""

from __future__ import annotations

import math

import torch


class DivergenceGuard:
    """Tracks which members of an ensemble still train.

    Args:
        members: ensemble size.
        factor: a loss above ``factor`` times the member's first loss is divergence.
        freeze: stop a diverged member (the default); if false, only mark it.

    Attributes:
        active: ``(members,)`` bool, on the CPU: members still training.
        diverged_at: each member's first step of divergence, ``None`` until then.
    """

    def __init__(self, members: int, factor: float, *, freeze: bool = True) -> None:
        self.factor = factor
        self.freeze = freeze
        self.active = torch.ones(members, dtype=torch.bool)
        self.diverged_at: list[int | None] = [None] * members
        self.first: torch.Tensor | None = None
        # Kept between steps, so that a step where nothing happens costs a handful of
        # tensor operations (the guard runs on every step of the smallest models too).
        self._limit: torch.Tensor | None = None
        self._fresh = torch.ones(members, dtype=torch.bool)  # not diverged yet
        self._all_active = True

    def observe(self, step: int, loss: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Check this step's per-member ``loss`` ``(members,)``.

        Returns the loss of each member that was active before this step (NaN for the
        others), on the CPU, and the members that diverged at this step.
        """
        loss_cpu = loss.detach().cpu()
        if self.first is None:
            self.first = loss_cpu.clone()
            self._limit = self.factor * self.first
        bad = ~torch.isfinite(loss_cpu)
        bad |= loss_cpu > self._limit
        bad &= self._fresh
        if self._all_active:
            recorded = loss_cpu.clone()
        else:
            recorded = torch.where(self.active, loss_cpu, math.nan)
        if not bad.any():
            return recorded, []
        self._fresh &= ~bad
        if self.freeze:
            self.active &= ~bad
            self._all_active = bool(self.active.all())
        newly = torch.nonzero(bad).flatten().tolist()
        for member in newly:
            self.diverged_at[member] = step
        return recorded, newly

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The sum of the active members' losses: a frozen member's NaN-tainted gradients
        reach only its own slice, which the optimizer clears."""
        if self._all_active:
            return loss.sum()
        active = self.active.to(loss.device)
        return torch.where(active, loss, torch.zeros_like(loss)).sum()
