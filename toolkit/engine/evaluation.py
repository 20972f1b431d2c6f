"""Per-member losses and the evaluator that records train / validation curves.

Losses are means per member, ``(members,)``: mean squared error for regression,
cross-entropy over examples for classification and over every predicted token for
language tasks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from toolkit.engine.data import Task
from toolkit.engine.layers import FEW_OUTPUTS, EnsembleModel


def per_member_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean loss of each member, ``(members,)``: mean squared error (regression), or
    cross-entropy averaged over examples (classification: ``output`` ``(members, batch,
    classes)``) or over every predicted token (language: ``(members, batch, T, vocab)``)."""
    if task.kind == "regression":
        return (output - target).pow(2).flatten(1).mean(1)
    if output.shape[-1] <= FEW_OUTPUTS:
        # classes on axis 1, every other axis a position (:data:`FEW_OUTPUTS`): the same
        # numbers to the bit on 2.13's CPU kernels, and for a readout's output a free view
        per_position = F.cross_entropy(output.movedim(-1, 1), target, reduction="none")
    else:
        per_position = F.cross_entropy(output.flatten(0, -2), target.flatten(), reduction="none")
    return per_position.view(output.shape[0], -1).mean(1)


@torch.no_grad()
def evaluate(
    model: EnsembleModel, task: Task, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member loss and accuracy (NaN for regression) on ``(x, y)``, shared by all members.

    ``chunk`` bounds the predictions per forward pass (examples, or tokens of a language
    task); a language task's accuracy is the share of tokens predicted right.
    """
    members = model.members
    loss = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, device=x.device)
    if task.kind == "language":
        chunk = max(1, chunk // x.shape[1])
    for start in range(0, x.shape[0], chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        out = model(xb.unsqueeze(0).expand(members, *xb.shape))
        target = yb.unsqueeze(0).expand(members, *yb.shape)
        loss += per_member_loss(task, out, target) * xb.shape[0]
        if task.kind != "regression":
            # few classes come as a transposed view (FEW_OUTPUTS), along which argmax is slow
            # (18 members x 1024 examples: 1.7 ms against 0.25 ms after a copy)
            hits = (out.contiguous().argmax(-1) == target).float().view(members, xb.shape[0], -1)
            correct += hits.mean(2).sum(1)
    loss /= x.shape[0]
    accuracy = (
        correct / x.shape[0] if task.kind != "regression" else torch.full_like(loss, math.nan)
    )
    return loss, accuracy


class Evaluator:
    """Evaluates an ensemble on fixed subsets of both splits and keeps the curve rows.

    The train subset is ``examples`` rows drawn once (seed 1) from the training split, the
    validation subset the first ``examples`` rows; for a language task ``examples`` counts
    predicted tokens, rounded up to whole sequences.

    Attributes:
        rows: ``(step, split, metric, values)`` with ``values`` ``(members,)`` on the CPU.
    """

    def __init__(self, task: Task, examples: int) -> None:
        self.task = task
        if task.kind == "language":
            examples = -(-examples // task.d_in)
        index = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(1))
        index = index[:examples].to(task.x_train.device)
        self.splits = {
            "train": (task.x_train[index], task.y_train[index]),
            "val": (task.x_val[:examples], task.y_val[:examples]),
        }
        self.rows: list[tuple[int, str, str, torch.Tensor]] = []

    def record(
        self,
        step: int,
        model: EnsembleModel,
        active: torch.Tensor,
        member_rows: torch.Tensor | None = None,
    ) -> None:
        """Evaluate ``model`` at ``step``; frozen members (``~active``) get NaN.

        ``member_rows`` maps each member to its row of ``model`` when the model holds one
        row per distinct member (e.g. one per seed at initialisation).
        """
        for split, (x, y) in self.splits.items():
            values = evaluate(model, self.task, x, y)
            if member_rows is not None:
                values = tuple(v[member_rows] for v in values)
            loss, accuracy = (torch.where(active, v.cpu(), math.nan) for v in values)
            self.rows.append((step, split, "loss", loss))
            if self.task.kind != "regression":
                self.rows.append((step, split, "accuracy", accuracy))
