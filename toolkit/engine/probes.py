"""Probes: small functions that read an ensemble's state and return tidy rows.

A probe is called by the training loop with a
:class:`toolkit.engine.probe_runner.ProbeContext` and returns a list of dicts with keys
``member``, ``layer``, ``role``, ``stat`` and ``value``. :data:`PROBE_FUNCTIONS` names
them (``activations``, ``spectra``, ``sharpness``, ``alignment``); :func:`log_spaced_steps` is
the default schedule to record them at.

Roles are those of the model's tensors (``input``, ``hidden``, ``vector``, ``output``,
``fixed``) for rows about one layer, and :data:`MODEL_ROLE` for rows about a whole
member (its loss Hessian), whose layer is :data:`MODEL_LAYER`.
"""

from __future__ import annotations

import numpy as np
import torch

from toolkit.engine.catalogue import PROBES, check_registry
from toolkit.engine.evaluation import per_member_loss
from toolkit.engine.hessian import (
    MAX_ITERATIONS,
    TOLERANCE,
    flushed_denormals,
    top_eigenvalue,
    twice_differentiable,
)
from toolkit.engine.parametrization import Kind
from toolkit.engine.probe_runner import Probe, ProbeContext
from toolkit.engine.spectra import (
    FULL_UP_TO,
    MIN_EIGENVALUES,
    alignment,
    cond_ratio,
    fit_power_law,
    log_spaced_ranks,
    singular_values,
    spectral_norm,
    stable_rank,
)
from toolkit.errors import InputError, check_positive

#: The layers an MLP or residual MLP captures, by role. A residual stream
#: (``block{l}``) is a sum of width-sized vectors and counts as ``hidden``.
_OUTPUT_LAYERS = {"readout"}
_INPUT_LAYERS = {"input", "embed"}

MODEL_LAYER = "model"
"""The layer of a row about a whole member rather than one of its layers."""

MODEL_ROLE = "model"
"""The role of a row about a whole member (all its tensors together)."""


def layer_role(layer: str) -> str:
    """Role of a captured layer's output: ``input``, ``hidden`` or ``output``."""
    if layer in _OUTPUT_LAYERS:
        return "output"
    if layer in _INPUT_LAYERS:
        return "input"
    return "hidden"


def activation_stats(ctx: ProbeContext) -> list[dict]:
    """Per member and layer: ``l1`` (mean |activation|) and ``rms`` on the probe batch.

    These are the coordinate sizes of the coordinate check (Yang et al. 2021,
    "Tensor Programs V", section 7.1; ``mup.coord_check``).
    """
    rows = []
    for layer, h in ctx.activations().items():
        flat = h.flatten(1)
        l1 = flat.abs().mean(1).tolist()
        rms = flat.pow(2).mean(1).sqrt().tolist()
        role = layer_role(layer)
        for member, (a, r) in enumerate(zip(l1, rms, strict=True)):
            rows.append({"member": member, "layer": layer, "role": role, "stat": "l1", "value": a})
            rows.append({"member": member, "layer": layer, "role": role, "stat": "rms", "value": r})
    return rows


def log_spaced_steps(steps: int, n: int = 8) -> list[int]:
    """Step 0 and up to ``n - 1`` log-spaced steps in ``1..steps``, always with ``steps``.

    E.g. ``log_spaced_steps(500)`` is ``[0, 1, 3, 8, 22, 63, 177, 500]``: dense
    early, where spectra and activations change fastest, sparse later.
    """
    check_positive("steps", steps, integer=True)
    check_positive("n", n, integer=True)
    if n == 1:
        return [int(steps)]
    later = np.unique(np.round(np.geomspace(1, steps, n - 1)).astype(int))
    return [0, *(int(s) for s in later)]


def sv_stat(rank: int) -> str:
    """Stat name of the ``rank``-th largest singular value (1-based): ``sv_1``, ``sv_2``..."""
    return f"sv_{rank}"


def spectral_stats(
    ctx: ProbeContext, *, sv_points: int = 32, full_up_to: int = FULL_UP_TO
) -> list[dict]:
    """Spectral statistics of every weight matrix, per member.

    Spectra are of the *effective* weight ``W = forward_mult * stored`` (what
    the layer multiplies its input by, the matrix the spectral condition of
    Yang, Simon & Bernstein 2023 is about); a residual block's branch
    multiplier is not folded in. With ``W_0`` the initial and ``W_prev`` the
    previous step's effective weight, and ``sqrt(fan_out / fan_in)`` the
    condition's scale (:mod:`toolkit.engine.spectra`), the stats are:

    ===================== ==================================================
    ``sigma_max``         ``||W||_2``
    ``fro_norm``          ``||W||_F``
    ``stable_rank``       ``||W||_F**2 / ||W||_2**2``
    ``cond_ratio``        ``||W||_2 / sqrt(fan_out / fan_in)``
    ``delta_cond_ratio``  ``||W - W_0||_2 / sqrt(fan_out / fan_in)`` (0 at step 0)
    ``update_cond_ratio`` ``||W - W_prev||_2 / sqrt(fan_out / fan_in)`` (from step 1)
    ``update_ratio``      ``||W - W_prev||_F / ||W_prev||_F`` (from step 1)
    ``act_rms``           RMS of the layer's output on the probe batch
    ``alpha``             power-law exponent of the ESD, only where the fit is
                          reliable (:func:`toolkit.engine.spectra.fit_power_law`)
    ``sv_<rank>``         singular values at up to ``sv_points`` log-spaced
                          ranks, always with the first and the last
                          (:func:`toolkit.engine.spectra.log_spaced_ranks`)
    ===================== ==================================================

    ``update_*`` need the previous step's weights, which the training loop keeps
    only for the steps just before a probe step, so they are recorded from step
    1 on. The full spectrum is an SVD of ``W``; the norms of ``W - W_0`` and
    ``W - W_prev`` come from Lanczos iterations
    (:func:`toolkit.engine.spectra.spectral_norm`), a fraction of an SVD's cost. For a
    matrix whose smaller side exceeds ``full_up_to`` only the top
    :data:`~toolkit.engine.spectra.TOP_K` singular values are computed (the ``sv_*``
    ranks are among those; ``stable_rank`` still uses the exact Frobenius norm)
    and no ``alpha`` is fitted.
    """
    if not (isinstance(sv_points, int) and sv_points >= 0):
        raise InputError(f"sv_points={sv_points!r} must be an integer >= 0")
    activations = ctx.activations()
    rows: list[dict] = []
    for spec, param in ctx.model.named_tensors():
        if spec.kind is not Kind.WEIGHT:
            continue
        layer, role = spec.name.removesuffix(".weight"), spec.role.value
        mult = ctx.model.forward_mults[spec.name]
        weight = param.detach() * mult
        values = singular_values(weight, full_up_to=full_up_to)
        full = values.shape[-1] == min(spec.fan_in, spec.fan_out)
        fit_alpha = full and values.shape[-1] >= MIN_EIGENVALUES  # else never reliable
        fro = weight.flatten(1).norm(dim=1)
        stats = {
            "sigma_max": values[:, 0],
            "fro_norm": fro,
            "stable_rank": stable_rank(fro, values[:, 0]),
            "cond_ratio": cond_ratio(values[:, 0], spec.fan_in, spec.fan_out),
            "delta_cond_ratio": torch.zeros_like(fro),
        }
        if ctx.step > 0:
            delta_norm = spectral_norm(weight - ctx.initial[spec.name] * mult)
            stats["delta_cond_ratio"] = cond_ratio(delta_norm, spec.fan_in, spec.fan_out)
            previous = ctx.previous[spec.name] * mult
            update = weight - previous
            # After one step the update is the whole change since initialisation.
            update_norm = delta_norm if ctx.step == 1 else spectral_norm(update)
            stats["update_cond_ratio"] = cond_ratio(update_norm, spec.fan_in, spec.fan_out)
            stats["update_ratio"] = update.flatten(1).norm(dim=1) / previous.flatten(1).norm(dim=1)
        if layer in activations:
            stats["act_rms"] = activations[layer].flatten(1).pow(2).mean(1).sqrt()
        columns = {stat: value.double().cpu().tolist() for stat, value in stats.items()}
        spectra = values.double().cpu().numpy()
        ranks = log_spaced_ranks(spectra.shape[-1], sv_points) if sv_points else []
        for member in range(ctx.model.members):
            row = {"member": member, "layer": layer, "role": role}
            for stat, value in columns.items():
                rows.append({**row, "stat": stat, "value": value[member]})
            if fit_alpha and np.isfinite(spectra[member]).all():
                fit = fit_power_law(spectra[member] ** 2)
                if fit.reliable:
                    rows.append({**row, "stat": "alpha", "value": fit.alpha})
            for rank in ranks:
                value = float(spectra[member, rank - 1])
                rows.append({**row, "stat": sv_stat(rank), "value": value})
    return rows


def sharpness_stats(
    ctx: ProbeContext, *, tol: float = TOLERANCE, max_iterations: int = MAX_ITERATIONS
) -> list[dict]:
    """The sharpness of each member: ``lambda_max``, the largest (algebraic) eigenvalue of
    the Hessian ``H`` of its training loss on the *probe batch* (the fixed ``batch_size``
    training examples of :class:`~toolkit.engine.probe_runner.ProbeRunner`, the same at
    every step) with respect to all its tensors as stored.

    ``H`` itself depends on how a parametrization splits a weight into a stored tensor and
    a multiplier, which leaves training unchanged (the abc-symmetry of Yang & Hu 2021 and
    Everett et al. 2024), so its eigenvalues can differ between two parametrizations that
    train identically. The *preconditioned* sharpness, the top eigenvalue of
    ``D**0.5 H D**0.5`` with ``D`` the optimizer's per-coordinate step size
    (:meth:`~toolkit.engine.optim.EnsembleOptimizer.step_sizes`: the LR of each tensor
    under SGD, the LR over Adam's preconditioner under Adam), is invariant under that
    symmetry and is what decides stability: for a quadratic, heavy-ball SGD with momentum
    ``beta`` is stable while it is below ``2 (1 + beta)`` (2 without momentum; Cohen et al.
    2021) and Adam near ``(2 + 2 beta1) / (1 - beta1)``, 38 for ``beta1 = 0.9`` (Cohen et
    al. 2022, "Adaptive gradient methods at the edge of stability"). It is the sharpness
    whose width-independence under muP super consistency is about (Noci et al. 2024).

    Both by Lanczos on Hessian-vector products of the members' summed loss, whose Hessian is
    block-diagonal by member (:mod:`toolkit.engine.hessian`). Rows, with layer
    :data:`MODEL_LAYER` and role :data:`MODEL_ROLE`:

    ============================ =====================================================
    ``sharpness``                ``lambda_max(H)``
    ``preconditioned_sharpness`` ``lambda_max(D**0.5 H D**0.5)`` (dimensionless), where
                                 the optimizer has a diagonal preconditioner now
                                 (``ProbeContext.step_sizes``; not Adam's at step 0, before
                                 it has moments, nor Adam-atan2's or Muon's)
    ``<stat>_iters``             Hessian-vector products it took
    ``<stat>_converged``         1 if the relative residual reached ``tol`` within
                                 ``max_iterations``, else 0: the value is then not trusted
    ============================ =====================================================

    A frozen member or one whose loss is not finite reads NaN (and not converged). The model
    is left as it was: products come from ``torch.autograd.grad`` (double backward), which
    writes no ``.grad``, the start vector has its own generator and the denormal setting is
    restored (:func:`toolkit.engine.hessian.flushed_denormals`), so training after the probe
    is bit-identical to training without it. A Transformer's attention takes PyTorch's math
    backend here (:func:`toolkit.engine.hessian.twice_differentiable`): its fused kernel
    has no second derivative.
    """
    if ctx.y is None or ctx.task is None:
        raise InputError("the sharpness probe needs the probe batch's targets: ProbeContext.y "
                         "and ProbeContext.task are None")  # fmt: skip
    params = [p for _, p in ctx.model.named_tensors()]
    with torch.enable_grad(), flushed_denormals(), twice_differentiable():
        loss = per_member_loss(ctx.task, ctx.model(ctx.x), ctx.y)
        live = torch.isfinite(loss.detach()).cpu()
        if ctx.active is not None:
            live &= ctx.active.cpu()
        total = torch.where(live.to(loss.device), loss, torch.zeros_like(loss)).sum()
        grads = torch.autograd.grad(total, params, create_graph=True)

        def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
            return list(torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True))

        results = {"sharpness": top_eigenvalue(hvp, params, tol=tol,
                                               max_iterations=max_iterations)}  # fmt: skip
        sizes = None if ctx.step_sizes is None else ctx.step_sizes()
        if sizes is not None:
            roots = [size.sqrt() for size in sizes]

            def scaled_hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
                products = hvp([a * r for a, r in zip(v, roots, strict=True)])
                return [a * r for a, r in zip(products, roots, strict=True)]

            results["preconditioned_sharpness"] = top_eigenvalue(
                scaled_hvp, params, tol=tol, max_iterations=max_iterations
            )
    rows = []
    for stat, top in results.items():
        value = torch.where(live, top.eigenvalue, torch.nan).tolist()
        iterations, converged = top.iterations.tolist(), (top.converged & live).tolist()
        for member in range(ctx.model.members):
            row = {"member": member, "layer": MODEL_LAYER, "role": MODEL_ROLE}
            rows.append({**row, "stat": stat, "value": value[member]})
            rows.append({**row, "stat": f"{stat}_iters", "value": float(iterations[member])})
            rows.append({**row, "stat": f"{stat}_converged",
                         "value": float(converged[member])})  # fmt: skip
    return rows


def alignment_stats(ctx: ProbeContext) -> list[dict]:
    """Per member and weight matrix, how well its update aligns with its input.

    With ``x`` the layer's input on the probe batch (:meth:`ProbeContext.inputs`) and
    :func:`toolkit.engine.spectra.alignment` the mean over the batch of
    ``||x dW|| / (||dW||_2 ||x||)`` (in [0, 1]; Everett et al. 2024's alignment):

    ===================== ==================================================
    ``update_alignment``  ``dW = W - W_prev``, the last step's update
    ``delta_alignment``   ``dW = W - W_0``, the change since initialisation
    ===================== ==================================================

    Both from step 1 (at step 1 they coincide); NaN where ``dW = 0`` (a frozen member).
    Forward multipliers scale ``dW`` per member and cancel in the ratio. ``x`` is the
    current input, from the probe batch, not the batch the update was computed on.
    Embedding lookups (their input is token ids) have no rows.
    """
    if ctx.step == 0:
        return []
    inputs = ctx.inputs()
    rows: list[dict] = []
    for spec, param in ctx.model.named_tensors():
        layer = spec.name.removesuffix(".weight")
        if spec.kind is not Kind.WEIGHT or layer not in inputs:
            continue
        weight, x = param.detach(), inputs[layer]
        stats = {
            "update_alignment": alignment(weight - ctx.previous[spec.name], x).tolist(),
            "delta_alignment": alignment(weight - ctx.initial[spec.name], x).tolist(),
        }
        for member in range(ctx.model.members):
            row = {"member": member, "layer": layer, "role": spec.role.value}
            for stat, values in stats.items():
                rows.append({**row, "stat": stat, "value": values[member]})
    return rows


PROBE_FUNCTIONS: dict[str, Probe] = {
    "activations": activation_stats,
    "spectra": spectral_stats,
    "sharpness": sharpness_stats,
    "alignment": alignment_stats,
}
"""Probes by their name in :data:`toolkit.engine.catalogue.PROBES`."""
check_registry("probes", PROBE_FUNCTIONS, PROBES)
