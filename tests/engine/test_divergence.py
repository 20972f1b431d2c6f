"""Claims about the divergence guard shared by full and subspace training."""

from __future__ import annotations

import math

import torch

from toolkit.engine.divergence import DivergenceGuard


def test_a_member_that_explodes_or_goes_nan_leaves_the_objective_and_stays_out():
    guard = DivergenceGuard(3, factor=10.0)
    recorded, diverged = guard.observe(0, torch.tensor([1.0, 2.0, 3.0]))
    assert diverged == [] and recorded.tolist() == [1.0, 2.0, 3.0]
    recorded, diverged = guard.observe(1, torch.tensor([5.0, 25.0, math.nan]))
    assert diverged == [1, 2] and guard.diverged_at == [None, 1, 1]
    assert recorded[:2].tolist() == [5.0, 25.0]  # the step it diverged at is still recorded
    loss = torch.tensor([0.5, math.inf, math.nan], requires_grad=True)
    objective = guard.objective(loss)
    objective.backward()
    assert objective.item() == 0.5 and loss.grad.tolist() == [1.0, 0.0, 0.0]
    recorded, diverged = guard.observe(2, torch.tensor([0.4, 1.0, 1.0]))
    assert diverged == [] and math.isnan(recorded[1]) and guard.active.tolist() == [1, 0, 0]
