"""Batched optimizers: per-member LR and weight decay, per-tensor multipliers.

Each optimizer updates every member of an ensemble at once. The learning rate a
tensor sees is ``lr[member] * lr_mult[tensor] * schedule(step)``; weight decay
is ``weight_decay[member] * wd_mult[tensor]``; Adam's epsilon is
``eps * eps_mult[tensor]``. The multipliers come from
:func:`toolkit.parametrization.resolve`, so the optimizers themselves know
nothing about widths or parametrizations.

Weight-decay conventions follow PyTorch: SGD and Adam add ``wd * p`` to the
gradient (L2); AdamW and Adam-atan2 shrink the weight by ``1 - lr * wd`` before
the update (decoupled, Loshchilov & Hutter 2019).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from toolkit.parametrization import Resolved, check_choice


class EnsembleOptimizer:
    """Shared state handling: per-member LR/WD tensors shaped to broadcast.

    Args:
        params: the ensemble's parameters, each ``(members, ...)``.
        resolved: the matching per-tensor multipliers.
        lr, weight_decay: per-member base values, shape ``(members,)``.
        eps: Adam epsilon at base shape.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        resolved: Sequence[Resolved],
        lr: torch.Tensor,
        weight_decay: torch.Tensor,
        *,
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.resolved = list(resolved)
        members = self.params[0].shape[0]
        self.members = members
        self.step_count = 0
        self.lr = [
            self._per_member(lr * r.lr_mult, p)
            for r, p in zip(self.resolved, self.params, strict=True)
        ]
        self.wd = [
            self._per_member(weight_decay * r.wd_mult, p)
            for r, p in zip(self.resolved, self.params, strict=True)
        ]
        self.eps = [eps * r.eps_mult for r in self.resolved]
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in self.params]

    @staticmethod
    def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, lr_scale: float = 1.0) -> None:
        """One update of every tensor; ``lr_scale`` is the schedule's factor."""
        self.step_count += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(
                    p, p.grad, self.state[i], self.lr[i] * lr_scale, self.wd[i], self.eps[i]
                )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def freeze(self, member: int) -> None:
        """Stop training one member: LR to zero, its tensors and state cleared.

        Clearing keeps a diverged member's NaN/inf values out of every later
        computation; its siblings are untouched.
        """
        for i, p in enumerate(self.params):
            self.lr[i][member] = 0.0
            p[member] = 0.0
            for buf in self.state[i].values():
                buf[member] = 0.0

    def _update(self, p, g, state, lr, wd, eps) -> None:
        raise NotImplementedError


class SGD(EnsembleOptimizer):
    """SGD with heavy-ball momentum (PyTorch's form: ``buf = mu * buf + g``)."""

    def __init__(self, params, resolved, lr, weight_decay, *, momentum: float = 0.9, **kw) -> None:
        super().__init__(params, resolved, lr, weight_decay, **kw)
        self.momentum = momentum

    def _update(self, p, g, state, lr, wd, eps) -> None:
        g = g + wd * p
        if self.momentum:
            if "momentum" not in state:
                state["momentum"] = g.clone()
            else:
                state["momentum"].mul_(self.momentum).add_(g)
            g = state["momentum"]
        p.sub_(lr * g)


class Adam(EnsembleOptimizer):
    """Adam (Kingma & Ba 2015) with bias correction; L2 weight decay."""

    decoupled = False

    def __init__(self, params, resolved, lr, weight_decay, *, betas=(0.9, 0.999), **kw) -> None:
        super().__init__(params, resolved, lr, weight_decay, **kw)
        self.beta1, self.beta2 = betas

    def _moments(self, p, g, state):
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1.0 - self.beta1)
        v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        t = self.step_count
        return m, v, 1.0 - self.beta1**t, 1.0 - self.beta2**t

    def _update(self, p, g, state, lr, wd, eps) -> None:
        if self.decoupled:
            p.mul_(1.0 - lr * wd)
        else:
            g = g + wd * p
        m, v, bc1, bc2 = self._moments(p, g, state)
        denom = (v / bc2).sqrt_().add_(eps)
        p.sub_(torch.div(m, denom).mul_(lr / bc1))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""

    decoupled = True


class AdamAtan2(Adam):
    """Adam-atan2 (Everett et al. 2024): update ``a * atan2(m_hat, b * sqrt(v_hat))``.

    Scale-invariant like Adam but with no epsilon to tune or to scale with
    width; bounded by ``a * pi / 2`` per coordinate. Decoupled weight decay.
    """

    decoupled = True

    def __init__(self, params, resolved, lr, weight_decay, *, a: float = 1.0, b: float = 1.0, **kw):
        super().__init__(params, resolved, lr, weight_decay, **kw)
        self.a, self.b = a, b

    def _update(self, p, g, state, lr, wd, eps) -> None:
        p.mul_(1.0 - lr * wd)
        m, v, bc1, bc2 = self._moments(p, g, state)
        direction = torch.atan2(m / bc1, (v / bc2).sqrt_().mul_(self.b))
        p.sub_(direction.mul_(lr * self.a))


OPTIMIZERS: dict[str, type[EnsembleOptimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "adam-atan2": AdamAtan2,
}
"""Optimizer classes by the name used in configs and on the command line."""


def make_optimizer(
    name: str,
    params: Sequence[torch.Tensor],
    resolved: Sequence[Resolved],
    lr: torch.Tensor,
    weight_decay: torch.Tensor,
    **hyper: float,
) -> EnsembleOptimizer:
    """Build the optimizer called ``name`` (a key of :data:`OPTIMIZERS`)."""
    check_choice("optimizer", name, OPTIMIZERS)
    if not all(math.isfinite(float(x)) for x in lr.tolist() + weight_decay.tolist()):
        raise ValueError("lr and weight_decay must be finite")
    return OPTIMIZERS[name](params, resolved, lr, weight_decay, **hyper)
