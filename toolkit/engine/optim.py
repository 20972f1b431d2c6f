"""Batched optimizers: per-member LR and weight decay, per-tensor multipliers.

Each optimizer updates every member of an ensemble at once. The learning rate a
tensor sees is ``lr[member] * lr_mult[tensor] * schedule(step)``; weight decay
is ``weight_decay[member] * wd_mult[tensor]``; Adam's epsilon is
``eps * eps_mult[tensor]``. The multipliers come from
:func:`toolkit.engine.parametrization.resolve`, so the optimizers themselves know
nothing about widths or parametrizations.

Weight-decay conventions follow PyTorch: SGD and Adam add ``wd * p`` to the
gradient (L2); AdamW, Adam-atan2 and Muon shrink the weight by ``1 - lr * wd``
before the update (decoupled, Loshchilov & Hutter 2019), or by ``1 - wd`` (times
the schedule) for a tensor whose decay is independent of the LR
(``Resolved.decay_with_lr`` false; Wortsman et al. 2024).

Updates use PyTorch's multi-tensor (``torch._foreach_*``) kernels: a tiny
model's step is dominated by per-operation overhead, and one kernel launch per
operation for all tensors instead of one per tensor is what makes an ensemble
step cheap. Adam and AdamW on large members switch to PyTorch's fused Adam kernel,
one call per distinct learning rate, weight decay and epsilon (they are scalars
there): a large model's update is memory-bound, and the fused kernel reads and
writes each tensor once instead of once per elementwise operation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from toolkit.engine.catalogue import OPTIMIZERS, check_registry
from toolkit.engine.parametrization import MUON_SCALINGS, Resolved, orthogonalised
from toolkit.engine.rules import MUON_NORMALISED
from toolkit.errors import InputError, check_choice, check_positive


class EnsembleOptimizer:
    """Shared state handling: per-member LR/WD tensors shaped to broadcast.

    Args:
        params: the ensemble's parameters, each ``(members, ...)``.
        resolved: the matching per-tensor multipliers.
        lr, weight_decay: per-member base values, shape ``(members,)``.
        eps: Adam epsilon at base shape.
    """

    state_names: tuple[str, ...] = ()

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
        pairs = list(zip(resolved, self.params, strict=True))
        self.members = self.params[0].shape[0]
        self.step_count = 0
        self.lr = [self._per_member(lr * r.lr_mult, p) for r, p in pairs]
        self.wd = [self._per_member(weight_decay * r.wd_mult, p) for r, p in pairs]
        self.eps = [eps * r.eps_mult for r, _ in pairs]
        self.uses_weight_decay = bool((weight_decay != 0).any())
        self.lr_coupled_decay = all(r.decay_with_lr for r in resolved)
        ones = torch.ones_like(lr)
        # The LR the decoupled decay is multiplied by: the tensor's own, or 1 (independent).
        self.decay_lr = [
            rate if r.decay_with_lr else self._per_member(ones, p)
            for r, p, rate in zip(resolved, self.params, self.lr, strict=True)
        ]
        self.state = {name: [torch.zeros_like(p) for p in self.params] for name in self.state_names}

    @staticmethod
    def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        shape = (-1, *([1] * (like.dim() - 1)))
        return values.to(device=like.device, dtype=like.dtype).view(shape)

    @torch.no_grad()
    def step(self, lr_scale: float = 1.0) -> None:
        """One update of every tensor; ``lr_scale`` is the schedule's factor."""
        self.step_count += 1
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self._update(grads, lr_scale)

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
            for buffers in self.state.values():
                buffers[i][member] = 0.0

    def _l2(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """``g + wd * p`` (PyTorch's coupled weight decay)."""
        if not self.uses_weight_decay:
            return grads
        decay = torch._foreach_mul(self.params, self.wd)
        return torch._foreach_add(grads, decay)

    def _decay(self, lr_scale: float, indices: Sequence[int] | None = None) -> None:
        """``p <- p * (1 - lr * wd)``, or ``p * (1 - wd)`` when independent of the LR
        (decoupled weight decay), for the tensors at ``indices`` (default: all)."""
        if not self.uses_weight_decay:
            return
        picked = range(len(self.params)) if indices is None else indices
        factors = torch._foreach_mul([self.decay_lr[i] for i in picked],
                                     [self.wd[i] for i in picked])  # fmt: skip
        torch._foreach_mul_(factors, -lr_scale)
        torch._foreach_add_(factors, 1.0)
        torch._foreach_mul_([self.params[i] for i in picked], factors)

    def _apply(self, updates: list[torch.Tensor], scale: float) -> None:
        """``p <- p - scale * lr * update`` (``updates`` are consumed)."""
        torch._foreach_mul_(updates, self.lr)
        torch._foreach_mul_(updates, scale)
        torch._foreach_sub_(self.params, updates)

    def _update(self, grads: list[torch.Tensor], lr_scale: float) -> None:
        raise NotImplementedError

    def step_sizes(self) -> list[torch.Tensor] | None:
        """The diagonal preconditioner ``D`` of the next update, one tensor per parameter
        broadcasting over it (``(members, 1, ...)`` or the parameter's shape): the update
        is ``-D * g`` to first order in the gradient ``g`` (momentum aside, the schedule's
        factor left out), or ``None`` when it is not a diagonal scaling of the gradient.
        The base class says ``None``."""
        return None


class SGD(EnsembleOptimizer):
    """SGD with heavy-ball momentum (PyTorch's form: ``buf = mu * buf + g``)."""

    state_names = ("momentum",)

    def __init__(self, params, resolved, lr, weight_decay, *, momentum: float = 0.9, **kw) -> None:
        super().__init__(params, resolved, lr, weight_decay, **kw)
        self.momentum = momentum

    def _update(self, grads, lr_scale) -> None:
        grads = self._l2(grads)
        if self.momentum:
            buffers = self.state["momentum"]
            if self.step_count == 1:
                torch._foreach_copy_(buffers, grads)
            else:
                torch._foreach_mul_(buffers, self.momentum)
                torch._foreach_add_(buffers, grads)
            grads = buffers
        self._apply([g.clone() for g in grads] if self.momentum else list(grads), lr_scale)

    def step_sizes(self) -> list[torch.Tensor]:
        """Each tensor's LR, ``(members, 1, ...)``: SGD's update is ``-lr * g``."""
        return list(self.lr)


FUSED_ADAM_MIN_PARAMETERS = 2**16
"""Parameters per member from which Adam and AdamW take the fused kernel.

The fused kernel pays a fixed cost for every tensor it is given, one per member and
parameter tensor (about 4 us on 2 CPU cores), however they are grouped into calls; the
multi-tensor update pays per element, several passes over every tensor. Measured for an
18-member MLP of depth 3 on 2 cores (the update alone): 40k parameters per member (width
128) 0.75-0.90 ms fused against 0.45 multi-tensor, 84k (width 192) 0.97-1.19 ms against
1.27-1.32, 145k (width 256) 1.3-1.6 ms against 3.3; with one, 9 or 18 distinct learning
rates alike. On another machine: 1.8x slower fused at 22k, 1.5x faster at 76k."""

FUSED_ADAM_DEVICES = ("cpu", "cuda")
"""Devices with a fused Adam kernel in PyTorch."""


class Adam(EnsembleOptimizer):
    """Adam (Kingma & Ba 2015) with bias correction; L2 weight decay."""

    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, resolved, lr, weight_decay, *, betas=(0.9, 0.999), **kw) -> None:
        super().__init__(params, resolved, lr, weight_decay, **kw)
        self.beta1, self.beta2 = betas
        per_member = sum(p[0].numel() for p in self.params)
        device = self.params[0].device
        self.fused = (
            type(self)._update is Adam._update
            and device.type in FUSED_ADAM_DEVICES
            and per_member >= FUSED_ADAM_MIN_PARAMETERS
            and self.lr_coupled_decay
        )
        self._step_tensor = torch.zeros((), device=device)

    def _moments(self, grads):
        """Update the moment estimates; returns them with the bias corrections."""
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        torch._foreach_lerp_(m, grads, 1.0 - self.beta1)
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - self.beta2)
        t = self.step_count
        return m, v, 1.0 - self.beta1**t, 1.0 - self.beta2**t

    def _update(self, grads, lr_scale) -> None:
        if self.fused:
            self._fused_update(grads, lr_scale)
            return
        if self.decoupled:
            self._decay(lr_scale)
        else:
            grads = self._l2(grads)
        m, v, bc1, bc2 = self._moments(grads)
        # p -= lr * (m / bc1) / (sqrt(v / bc2) + eps), rearranged as
        # p -= (lr_scale sqrt(bc2) / bc1) * (lr m) / (sqrt(v) + eps sqrt(bc2)):
        # four passes over the tensors instead of seven (the update is memory-bound).
        root_bc2 = math.sqrt(bc2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, [eps * root_bc2 for eps in self.eps])
        scaled = torch._foreach_mul(m, self.lr)
        torch._foreach_addcdiv_(self.params, scaled, denom, value=-lr_scale * root_bc2 / bc1)

    def step_sizes(self) -> list[torch.Tensor] | None:
        """``lr / (bc1 (sqrt(v / bc2) + eps))`` per coordinate after ``t`` updates, with
        ``bc2 = 1 - beta2**t`` and the next update's ``bc1 = 1 - beta1**(t + 1)``: the LR
        over Adam's preconditioner ``P_t = (1 - beta1**(t+1)) (sqrt(v_hat_t) + eps)`` of
        Cohen et al. 2022 ("Adaptive gradient methods at the edge of stability", section
        2), from the current second moments. The update's ``1 - beta1`` share of the new
        gradient is left out, as there. ``None`` before the first update (no moments yet)
        and for Adam-atan2 (no diagonal preconditioner)."""
        t = self.step_count
        if t == 0 or type(self)._update is not Adam._update:
            return None
        bc1, root_bc2 = 1.0 - self.beta1 ** (t + 1), math.sqrt(1.0 - self.beta2**t)
        v = self.state["exp_avg_sq"]
        return [lr / (bc1 * (second.sqrt() / root_bc2 + eps))
                for lr, second, eps in zip(self.lr, v, self.eps, strict=True)]  # fmt: skip

    def _fused_update(self, grads, lr_scale) -> None:
        """The same update by PyTorch's fused kernel: its LR, weight decay and epsilon are
        scalars, so one call per distinct ``(lr, wd, eps)`` over every member slice that has
        them (each slice is updated on its own, as by a call of its own; a call per slice
        took 15% longer for an 18-member MLP of width 256 on 2 cores, the same at 512, where
        the update is bound by memory)."""
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        self._step_tensor.fill_(self.step_count)
        slices: dict[tuple[float, float, float], list[tuple[int, int]]] = {}
        for t in range(len(self.params)):
            lrs = (self.lr[t].flatten() * lr_scale).tolist()
            wds = self.wd[t].flatten().tolist()
            for i in range(self.members):
                slices.setdefault((lrs[i], wds[i], self.eps[t]), []).append((t, i))
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        for (lr, wd, eps), where in slices.items():
            kernel([self.params[t][i] for t, i in where], [grads[t][i] for t, i in where],
                   [m[t][i] for t, i in where], [v[t][i] for t, i in where], [],
                   [self._step_tensor] * len(where), lr=lr, beta1=self.beta1,
                   beta2=self.beta2, weight_decay=wd, eps=eps, amsgrad=False,
                   maximize=False)  # fmt: skip


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

    def _update(self, grads, lr_scale) -> None:
        self._decay(lr_scale)
        m, v, bc1, bc2 = self._moments(grads)
        root = torch._foreach_sqrt(v)
        torch._foreach_mul_(root, self.b / math.sqrt(bc2))
        directions = [torch.atan2(mi / bc1, ri) for mi, ri in zip(m, root, strict=True)]
        self._apply(directions, lr_scale * self.a)


NEWTON_SCHULZ = {"quintic": (3.4445, -4.7750, 2.0315), "cubic": (1.5, -0.5, 0.0)}
"""Coefficients ``(a, b, c)`` of the odd polynomial ``a x + b x**3 + c x**5`` that
:func:`orthogonalise` applies to the singular values. ``quintic`` (Jordan et al. 2024)
pushes small singular values up fast and leaves all of them in roughly ``[0.7, 1.2]``
after 5 steps; ``cubic`` (the classic Newton–Schulz iteration, Higham 2008, section 8.3)
converges to exactly 1 but slowly for small singular values."""


def orthogonalise(
    g: torch.Tensor, *, steps: int = 5, iteration: str = "quintic", eps: float = 1e-7
) -> torch.Tensor:
    """Approximate ``U V^T`` of each member's ``g = U S V^T`` by Newton–Schulz iterations.

    ``g`` is ``(members, fan_in, fan_out)``. Each member is scaled to unit Frobenius
    norm (so every singular value is at most 1), then ``steps`` times
    ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` (batched ``torch.bmm``, the
    Gram matrix on the smaller side). Singular vectors are kept; each singular value
    goes through the polynomial of :data:`NEWTON_SCHULZ` ``[iteration]``.
    """
    a, b, c = NEWTON_SCHULZ[iteration]
    wide = g.shape[1] <= g.shape[2]
    x = g if wide else g.transpose(1, 2)
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + eps)
    for _ in range(steps):
        gram = torch.bmm(x, x.transpose(1, 2))
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c) if c else gram * b
        x = torch.baddbmm(x, poly, x, beta=a)
    return x if wide else x.transpose(1, 2)


class Muon(EnsembleOptimizer):
    """Muon (Jordan et al. 2024) for hidden matrices, AdamW for every other tensor.

    For each hidden matrix (:func:`toolkit.engine.parametrization.orthogonalised`), with
    momentum ``mu`` and, with ``nesterov``, the look-ahead ``U = G + mu B``::

        B <- mu B + G,   W <- W (1 - lr wd) - lr s O(U)

    where ``O`` is :func:`orthogonalise` and ``s`` the update scale
    :data:`~toolkit.engine.rules.MUON_SCALINGS` ``[scaling]`` (by default
    ``sqrt(fan_out / fan_in)``: the update's spectral norm is ``lr sqrt(fan_out / fan_in)``
    up to the iteration's spread, the spectral condition for feature learning of Yang,
    Simon & Bernstein 2023, met at every width without an LR exponent). Momentum 0.95 with
    Nesterov is Jordan et al.'s default.

    Embeddings, the readout, biases and gains get AdamW with its own learning rate, as
    Jordan et al. run it: ``adam_lr`` (one value for every member) if given, else
    ``adam_lr_ratio`` times each member's Muon LR; ``weight_decay``, ``betas`` and ``eps``
    are shared. ``betas`` default to Adam's ``(0.9, 0.999)``, the toolkit's Adam everywhere
    (the shipped Muon runs use them); the example in Jordan et al.'s repository gives its
    auxiliary AdamW ``(0.9, 0.95)``: set ``TrainConfig.betas`` to match it.
    """

    def __init__(self, params, resolved, lr, weight_decay, *, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5, iteration: str = "quintic",
                 scaling: str = "fan_ratio", adam_lr: float | None = None,
                 adam_lr_ratio: float = 1.0, betas=(0.9, 0.999),
                 eps: float = 1e-8) -> None:  # fmt: skip
        check_choice("iteration", iteration, NEWTON_SCHULZ)
        check_choice("scaling", scaling, MUON_SCALINGS)
        check_positive("ns_steps", ns_steps, integer=True)
        check_positive("adam_lr_ratio", adam_lr_ratio)
        if adam_lr is not None:
            check_positive("adam_lr", adam_lr)
        super().__init__(params, resolved, lr, weight_decay, eps=eps)
        self.momentum, self.nesterov = momentum, nesterov
        self.ns_steps, self.iteration = ns_steps, iteration
        self.normalised = scaling in MUON_NORMALISED
        self.matrices = [i for i, r in enumerate(resolved) if orthogonalised(r.spec)]
        self.scales = [MUON_SCALINGS[scaling](r.spec.fan_in, r.spec.fan_out) for r in resolved]
        self.buffers = [torch.zeros_like(self.params[i]) for i in self.matrices]
        others = [i for i in range(len(self.params)) if i not in self.matrices]
        self.adamw = None
        if others:
            adam_rates = lr * adam_lr_ratio if adam_lr is None else torch.full_like(lr, adam_lr)
            pick = [self.params[i] for i in others], [resolved[i] for i in others]
            self.adamw = AdamW(*pick, adam_rates, weight_decay, betas=betas, eps=eps)

    def _update(self, grads, lr_scale) -> None:
        if self.adamw is not None:
            self.adamw.step(lr_scale)
        if not self.matrices:
            return
        self._decay(lr_scale, self.matrices)
        g = [grads[i] for i in self.matrices]
        torch._foreach_mul_(self.buffers, self.momentum)
        torch._foreach_add_(self.buffers, g)
        looks = self.buffers
        if self.nesterov:
            looks = torch._foreach_add(g, self.buffers, alpha=self.momentum)
        for i, u in zip(self.matrices, looks, strict=True):
            step = orthogonalise(u, steps=self.ns_steps, iteration=self.iteration)
            if self.normalised:
                step = step / torch.linalg.matrix_norm(step, ord=2, keepdim=True).clamp_min(1e-12)
            self.params[i].sub_(step * (self.lr[i] * (lr_scale * self.scales[i])))

    @torch.no_grad()
    def freeze(self, member: int) -> None:
        super().freeze(member)
        for buffer in self.buffers:
            buffer[member] = 0.0
        if self.adamw is not None:
            self.adamw.freeze(member)


OPTIMIZER_CLASSES: dict[str, type[EnsembleOptimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "adam-atan2": AdamAtan2,
    "muon": Muon,
}
"""Optimizer classes by their name in :data:`toolkit.engine.catalogue.OPTIMIZERS`."""
check_registry("optimizers", OPTIMIZER_CLASSES, OPTIMIZERS)


def make_optimizer(
    name: str,
    params: Sequence[torch.Tensor],
    resolved: Sequence[Resolved],
    lr: torch.Tensor,
    weight_decay: torch.Tensor,
    **hyper: float,
) -> EnsembleOptimizer:
    """Build the optimizer called ``name`` (one of :data:`~toolkit.engine.catalogue.OPTIMIZERS`)."""
    check_choice("optimizer", name, OPTIMIZERS)
    if not all(math.isfinite(float(x)) for x in lr.tolist() + weight_decay.tolist()):
        raise InputError("lr and weight_decay must be finite")
    return OPTIMIZER_CLASSES[name](params, resolved, lr, weight_decay, **hyper)
