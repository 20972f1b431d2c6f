"""Layer spectra: singular values, norms and the power-law exponent of weight matrices.

For a weight matrix ``W`` of shape ``(fan_in, fan_out)`` with singular values
``sigma_1 >= ... >= sigma_r`` (``r = min(fan_in, fan_out)``):

* spectral norm ``||W||_2 = sigma_1`` (``sigma_max``), Frobenius norm
  ``||W||_F = sqrt(sum_i sigma_i**2)``, and stable rank
  ``||W||_F**2 / ||W||_2**2`` (Rudelson & Vershynin 2007), between 1 (rank one)
  and ``r`` (all singular values equal);
* the spectral condition for feature learning (Yang, Simon & Bernstein 2023,
  "A spectral condition for feature learning", condition 1): a layer learns
  features at every width when ``||W||_2 = Theta(sqrt(fan_out / fan_in))`` and
  the same holds for its updates ``||dW||_2``. :func:`cond_ratio` is
  ``||W||_2 / sqrt(fan_out / fan_in)``: flat across widths when the condition
  holds;
* the empirical spectral density (ESD): the eigenvalues ``lambda_i = sigma_i**2``
  of ``W^T W`` (Martin & Mahoney 2021, "Implicit self-regularization in deep
  neural networks"; the WeightWatcher package). Trained layers grow a
  power-law tail ``p(lambda) ~ lambda**-alpha`` for ``lambda >= lambda_min``;
  :func:`fit_power_law` estimates ``alpha`` by maximum likelihood,
  ``alpha = 1 + k / sum_{i=1..k} ln(lambda_i / lambda_min)`` over the ``k``
  eigenvalues at or above ``lambda_min`` (Clauset, Shalizi & Newman 2009,
  "Power-law distributions in empirical data", eq. 3.1), with ``lambda_min``
  the eigenvalue that minimises the Kolmogorov-Smirnov distance between the
  tail and the fitted law (their section 3.3), as WeightWatcher does.

Singular values are exact (``torch.linalg.svdvals``) for matrices whose smaller
side is at most ``full_up_to``; for larger ones only the ``top_k`` largest are
computed, by randomised subspace iteration (Halko, Martinsson & Tropp 2011;
``torch.svd_lowrank``), and no power law is fitted to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from toolkit.errors import InputError, check_positive

FULL_UP_TO = 1024
"""Largest smaller side of a matrix whose full spectrum is computed exactly."""

TOP_K = 64
"""Singular values computed for matrices larger than :data:`FULL_UP_TO`."""

KRYLOV_BLOCK = 4
"""Columns added per step by :func:`spectral_norm`."""

MAX_KRYLOV_STEPS = 32
"""Default step limit of :func:`spectral_norm`."""

MIN_EIGENVALUES = 50
"""A power-law fit over fewer tail eigenvalues than this is unreliable."""

MAX_ALPHA = 8.0
"""A fitted exponent above this is unreliable: the ESD has no heavy tail to fit."""


def singular_values(
    matrices: torch.Tensor, *, full_up_to: int = FULL_UP_TO, top_k: int = TOP_K
) -> torch.Tensor:
    """Singular values of each matrix, largest first.

    Args:
        matrices: ``(..., fan_in, fan_out)``, any leading (e.g. member) axes.
        full_up_to: all ``min(fan_in, fan_out)`` values are computed exactly
            when that side is at most this; otherwise only the ``top_k`` largest.
        top_k: how many values to compute for a larger matrix, by randomised
            subspace iteration over ``2 * top_k`` directions with 8 power
            iterations (on Gaussian matrices, the hardest case, ``sigma_max``
            is within 1e-4 and the ``top_k``-th value within 1% of exact).

    Returns:
        ``(..., r)`` in the input's dtype and device, descending, with ``r =
        min(fan_in, fan_out)`` or ``top_k``.
    """
    check_positive("full_up_to", full_up_to, integer=True)
    check_positive("top_k", top_k, integer=True)
    if matrices.dim() < 2:
        raise InputError(f"matrices has shape {tuple(matrices.shape)}: need (..., rows, columns)")
    smaller = min(matrices.shape[-2:])
    with torch.no_grad():
        if smaller <= full_up_to or top_k >= smaller:
            with _one_thread(matrices.device):
                return torch.linalg.svdvals(matrices)
        device = matrices.device
        devices = [] if device.type == "cpu" else [device]
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            torch.manual_seed(0)  # the same sketch at every call: deterministic spectra
            _, values, _ = torch.svd_lowrank(matrices, q=min(2 * top_k, smaller), niter=8)
        return values[..., :top_k]


def spectral_norm(
    matrices: torch.Tensor,
    *,
    block: int = KRYLOV_BLOCK,
    tol: float = 1e-6,
    max_steps: int = MAX_KRYLOV_STEPS,
    exact_up_to: int = 96,
) -> torch.Tensor:
    """``||A||_2`` of each matrix by block Krylov iteration with Rayleigh-Ritz.

    An orthonormal basis ``Q`` of the block Krylov space ``span{V, (A^T A) V,
    (A^T A)**2 V, ...}`` grows by ``block`` columns a step, from ``V`` in ``A``'s
    row space (``A^T`` times a Gaussian block with a fixed seed); the estimate
    ``sigma_max(A Q)`` rises towards ``||A||_2`` (Golub & Van Loan, "Matrix
    Computations", 4th ed., section 10.3.6; Musco & Musco 2015, "Randomized
    block Krylov methods for stronger and faster approximate singular value
    decomposition"). It stops when the estimate of every matrix moved by at
    most ``tol`` (relative) in two consecutive steps, when ``Q`` spans the row
    space (then it is exact), or after ``max_steps``. A block rather than one
    start vector makes a start nearly orthogonal to the top singular vector,
    which stalls a single-vector Lanczos run on the second singular value,
    vanishingly unlikely. Each step costs two passes over ``A``: a few dozen
    replace a full SVD (trained layers' weight changes have a few dominant
    directions and converge in about 4 steps). Matrices whose smaller side is at
    most ``exact_up_to`` get an exact SVD instead, which is cheaper there.

    Args:
        matrices: ``(..., rows, columns)``.
        block: columns added per step.
        tol: relative change of the estimate at which to stop.
        max_steps: at most this many steps.
        exact_up_to: largest smaller side computed by an exact SVD.

    Returns:
        ``(...)`` spectral norms, 0 for an all-zero matrix.
    """
    check_positive("block", block, integer=True)
    check_positive("tol", tol)
    check_positive("max_steps", max_steps, integer=True)
    if matrices.dim() < 2:
        raise InputError(f"matrices has shape {tuple(matrices.shape)}: need (..., rows, columns)")
    batch, (rows, columns) = matrices.shape[:-2], matrices.shape[-2:]
    if min(rows, columns) <= exact_up_to:
        return singular_values(matrices)[..., 0]
    a = matrices.reshape(-1, rows, columns)
    generator = torch.Generator(device=a.device).manual_seed(0)
    start = torch.randn(a.shape[0], rows, block, generator=generator, device=a.device,
                        dtype=a.dtype)  # fmt: skip
    with torch.no_grad():
        basis = [_orthonormal(a.mT @ start, [])]
        images = [a @ basis[0]]
        estimate = _top_singular_value(images)
        settled = 0
        while settled < 2 and len(basis) < max_steps and block * len(basis) < min(rows, columns):
            basis.append(_orthonormal(a.mT @ images[-1], basis))
            images.append(a @ basis[-1])
            previous, estimate = estimate, _top_singular_value(images)
            settled = settled + 1 if ((estimate - previous).abs() <= tol * estimate).all() else 0
        return estimate.reshape(batch)


def _orthonormal(x: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    """The columns of ``x`` (``(batch, n, b)``) orthonormalised against the ``basis``
    blocks, then against each other (classical Gram-Schmidt applied twice, as stable
    as modified Gram-Schmidt). A column that (nearly) vanishes, because the Krylov
    space is exhausted, becomes zero: it then adds nothing to ``A Q``."""
    scale = x.norm(dim=1, keepdim=True)
    if basis:
        q = torch.cat(basis, dim=2)
        for _ in range(2):
            x = x - q @ (q.mT @ x)
    threshold = 1e3 * torch.finfo(x.dtype).eps
    columns: list[torch.Tensor] = []
    for j in range(x.shape[2]):
        column = x[..., j : j + 1]
        for _ in range(2):
            for earlier in columns:
                column = column - earlier @ (earlier.mT @ column)
        norm = column.norm(dim=1, keepdim=True)
        unit = column / norm.clamp_min(torch.finfo(x.dtype).tiny)
        columns.append(torch.where(norm > threshold * scale[..., j : j + 1], unit, 0.0))
    return torch.cat(columns, dim=2)


def _top_singular_value(images: list[torch.Tensor]) -> torch.Tensor:
    """``sigma_max(A Q)`` from the blocks of ``A Q``, via the small Gram matrix."""
    product = torch.cat(images, dim=2)
    return torch.linalg.eigvalsh(product.mT @ product)[..., -1].clamp_min(0).sqrt()


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run CPU work on one intra-op thread. A batch of small SVDs is one LAPACK call per
    matrix, which gains little from more threads and loses much when cores are shared
    (3.5x slower on 2 threads than on 1 for 16 matrices of 256 x 256 on a busy 2-core
    machine)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def spectral_condition_scale(fan_in: int, fan_out: int) -> float:
    """``sqrt(fan_out / fan_in)``: the spectral norm the spectral condition asks for."""
    check_positive("fan_in", fan_in, integer=True)
    check_positive("fan_out", fan_out, integer=True)
    return math.sqrt(fan_out / fan_in)


def cond_ratio(sigma_max: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    """``||W||_2 / sqrt(fan_out / fan_in)`` from spectral norms of any shape (dimensionless)."""
    return sigma_max / spectral_condition_scale(fan_in, fan_out)


def stable_rank(fro_norm: torch.Tensor, sigma_max: torch.Tensor) -> torch.Tensor:
    """``||W||_F**2 / ||W||_2**2`` from the two norms (any matching shapes); NaN for ``W = 0``."""
    return fro_norm.pow(2) / sigma_max.pow(2)


def alignment(update: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """How much of ``||dW||_2`` an update uses on its inputs: per member, the mean over the
    rows ``x_b`` of ``x`` of ``||x_b dW|| / (||dW||_2 ||x_b||)``, between 0 and 1.

    1 when every input lies along the top singular direction of ``dW`` on the input side,
    0 when every input is in ``dW``'s null space. This is the alignment Everett et al. 2024
    ("Scaling exponents across parameterizations and optimizers", section 3) write as
    ``||dW z|| = Theta(||dW||_2 ||z|| n**-a)``: an exponent ``a = 0`` (full alignment)
    is this ratio staying of order 1 as the width ``n`` grows.

    Args:
        update: ``dW``, ``(members, fan_in, fan_out)`` as the layers store weights (a layer
            computes ``h @ W``).
        x: the layer's inputs, ``(members, rows, fan_in)``.

    Returns:
        ``(members,)`` float64. All-zero rows of ``x`` are left out; NaN for ``dW = 0`` or
        no non-zero row. ``||dW||_2`` is :func:`spectral_norm`'s estimate, which is
        exact for small matrices and below the truth by at most its tolerance otherwise.
    """
    update, x = update.double(), x.double()
    norm = spectral_norm(update)
    image = torch.bmm(x, update).norm(dim=-1)
    length = x.norm(dim=-1)
    nonzero = length > 0
    ratio = torch.where(nonzero, image / (norm.unsqueeze(1) * length), 0.0)
    return ratio.sum(1) / nonzero.sum(1)


@dataclass(frozen=True)
class PowerLawFit:
    """A power law ``p(lambda) ~ lambda**-alpha`` fitted to the tail of an ESD.

    Attributes:
        alpha: the maximum-likelihood exponent (NaN if no fit was possible).
        lambda_min: where the tail starts (an eigenvalue, units of ``sigma**2``).
        tail: ``k``, eigenvalues at or above ``lambda_min`` used in the fit.
        ks: Kolmogorov-Smirnov distance of the tail from the fitted law.
        reliable: ``tail >= MIN_EIGENVALUES`` and ``alpha <= MAX_ALPHA``.
    """

    alpha: float
    lambda_min: float
    tail: int
    ks: float
    reliable: bool


def fit_power_law(
    eigenvalues: np.ndarray,
    *,
    threshold: float = 1e-5,
    min_eigenvalues: int = MIN_EIGENVALUES,
    max_alpha: float = MAX_ALPHA,
) -> PowerLawFit:
    """Fit ``p(lambda) ~ lambda**-alpha`` above the KS-optimal ``lambda_min``.

    Every eigenvalue but the largest is a candidate ``lambda_min``; for each,
    ``alpha = 1 + k / sum ln(lambda_i / lambda_min)`` over the ``k`` eigenvalues
    ``>= lambda_min`` and the distance ``max_j |F(lambda_j) - j / k|``
    (``j = 0..k-1`` over the sorted tail, the empirical CDF's left limits) to
    the fitted CDF ``F(lambda) = 1 - (lambda / lambda_min)**(1 - alpha)``. The
    candidate with the smallest distance wins (Clauset et al. 2009, section
    3.3; the same conventions as WeightWatcher 0.7 and the ``powerlaw`` package).

    Args:
        eigenvalues: the ESD, any order, ``(n,)``.
        threshold: eigenvalues at or below this are dropped first (numerical
            zeros; WeightWatcher's default).
        min_eigenvalues, max_alpha: the reliability limits.

    Returns:
        The fit; ``alpha`` is NaN when fewer than two eigenvalues remain.
    """
    values = np.sort(np.asarray(eigenvalues, dtype=np.float64).ravel())
    if not np.isfinite(values).all():
        raise InputError("eigenvalues must be finite: got NaN or inf")
    values = values[values > threshold]
    n = values.size
    if n < 2:
        return PowerLawFit(math.nan, math.nan, int(n), math.nan, False)
    logs = np.log(values)
    # Candidate i (lambda_min = values[i]) has tail values[i:], k = n - i.
    k = n - np.arange(n - 1)
    log_sums = np.cumsum(logs[::-1])[::-1][:-1] - k * logs[:-1]
    with np.errstate(divide="ignore"):
        alphas = 1.0 + k / log_sums
    # Distance of every candidate's fitted CDF from its tail's empirical CDF:
    # row i, column j looks at tail element values[i + j] (masked past the end).
    index = np.arange(n - 1)[:, None] + np.arange(n)[None, :]
    inside = index < n
    tail = values[np.minimum(index, n - 1)] / values[:-1, None]
    with np.errstate(over="ignore", invalid="ignore"):
        fitted = 1.0 - tail ** (1.0 - alphas[:, None])
    empirical = np.arange(n)[None, :] / k[:, None]
    distance = np.where(inside, np.abs(fitted - empirical), 0.0).max(axis=1)
    distance[~(alphas > 1.0) | ~np.isfinite(alphas)] = np.inf
    if not np.isfinite(distance).any():
        return PowerLawFit(math.nan, math.nan, int(n), math.nan, False)
    best = int(np.argmin(distance))
    alpha, tail_size = float(alphas[best]), int(k[best])
    reliable = tail_size >= min_eigenvalues and alpha <= max_alpha
    return PowerLawFit(alpha, float(values[best]), tail_size, float(distance[best]), reliable)


def log_spaced_ranks(n: int, points: int) -> list[int]:
    """Up to ``points`` ranks in ``1..n``, log-spaced, always with 1 and ``n``.

    Keeping the singular values at these ranks keeps the shape of a spectrum on
    log-log axes at a fraction of its size.
    """
    check_positive("n", n, integer=True)
    check_positive("points", points, integer=True)
    if points >= n:
        return list(range(1, n + 1))
    if points == 1:
        return [1]
    ranks = np.unique(np.round(np.geomspace(1, n, points)).astype(int))
    return [int(r) for r in ranks]
