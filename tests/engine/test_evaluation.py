"""Per-member losses: each member's own mean loss, whatever layout computes it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toolkit.engine.data import load_task
from toolkit.engine.evaluation import per_member_loss
from toolkit.engine.layers import FEW_OUTPUTS


@pytest.mark.parametrize("classes", [2, 10, FEW_OUTPUTS, FEW_OUTPUTS + 1, 94])
@pytest.mark.parametrize("kind", ["classification", "language"])
def test_each_members_loss_is_its_own_mean_cross_entropy(kind, classes):
    task = load_task("chars" if kind == "language" else "digits")
    generator = torch.Generator().manual_seed(classes)
    shape = (3, 5, 7) if kind == "language" else (3, 5)
    logits = torch.randn(*shape, classes, generator=generator, requires_grad=True)
    target = torch.randint(0, classes, shape, generator=generator)
    loss = per_member_loss(task, logits, target)
    assert loss.shape == (3,)
    for member in range(3):
        alone = F.cross_entropy(logits[member].reshape(-1, classes), target[member].flatten())
        torch.testing.assert_close(loss[member], alone, rtol=1e-6, atol=1e-7)
    # and the gradient is each member's own: member 1's loss reaches only member 1's logits
    (grad,) = torch.autograd.grad(loss[1], logits)
    assert grad[0].abs().max() == 0 and grad[2].abs().max() == 0 and grad[1].abs().max() > 0
