"""Random projections ``P: R^d -> R^D`` for training in a random subspace.

Subspace training (Li, Farkhoor, Liu, Yosinski 2018, "Measuring the intrinsic
dimension of objective landscapes") writes a model's ``D`` parameters as
``theta = theta0 + P theta_d`` and trains only ``theta_d in R^d``. ``P`` is
fixed and random; each of its ``d`` columns has unit length, so that a step of
``theta_d`` moves ``theta`` by as much as it moves ``theta_d``, and the columns
are nearly orthogonal (``|cos| ~ 1/sqrt(D)``), so that the subspace really has
``d`` dimensions.

Every class here holds a *batch* of projections, one per member of an
ensemble: ``project`` maps ``theta_d`` of shape ``(members, d)`` to
``(members, D)``. Member ``i`` uses ``dims[i] <= d`` columns (the rest of its
row of ``theta_d`` is ignored) drawn from a generator seeded by ``seeds[i]``;
members with the same seed share one stored projection. Columns are drawn in
order, so a member's first ``d'`` columns are the same whatever its ``d``: the
subspaces of one seed are nested as ``d`` grows.

=========== ======================================= ==================================
projection  memory (numbers held per seed)           time of one ``project`` per member
=========== ======================================= ==================================
dense       ``D d``                                 ``O(D d)``
sparse      ``2 nnz`` values + indices,             ``O(nnz)``
            ``nnz ~ d sqrt(D)``
fastfood    ``2L + s`` per block, ``ceil(d/L)``      ``O(L log L)`` per block
            blocks, ``L = 2**ceil(log2 D)``
=========== ======================================= ==================================
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from toolkit.engine.catalogue import PROJECTIONS, check_registry
from toolkit.errors import InputError, check_choice, check_positive


def check_seed(seed: object) -> None:
    """Raise ``ValueError`` unless ``seed`` is a non-negative integer."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed={seed!r} must be a non-negative integer")


def _generator(seed: int) -> torch.Generator:
    """A generator for ``seed``'s projection, independent of the model-init stream ``seed``."""
    digest = hashlib.sha256(f"projection:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


_COLUMN_BLOCK = 64


def _column_draws(
    draw: Callable[[int, torch.Generator], torch.Tensor], d: int, generator: torch.Generator
) -> torch.Tensor:
    """``d`` rows of ``draw(rows, generator)``, made in fixed blocks of 64 and cut to ``d``.

    PyTorch's vectorised samplers treat the tail of a tensor differently from
    its body, so one ``(d, n)`` draw is not the start of a ``(d', n)`` draw;
    fixed-size blocks make a seed's first ``d`` columns the same for every ``d``.
    """
    blocks = math.ceil(d / _COLUMN_BLOCK)
    return torch.cat([draw(_COLUMN_BLOCK, generator) for _ in range(blocks)])[:d]


@functools.cache
def _hadamard(bits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``2**bits x 2**bits`` Sylvester-Hadamard matrix, entries ``(-1)**popcount(i & j)``."""
    index = torch.arange(2**bits, device=device)
    both = index[:, None] & index[None, :]
    parity = torch.zeros_like(both)
    for bit in range(bits):
        parity ^= (both >> bit) & 1
    return (1 - 2 * parity).to(dtype)


_RADIX_BITS = 5  # butterflies of at most 32 x 32: on CPU, 16 to 64 are fastest at L = 2**20
# and 32 to 128 at L = 2**10 (many small rows); 8 and 128 are 1.5-3x slower.


def walsh_hadamard(x: torch.Tensor) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform ``H x`` over the last axis (length ``L = 2**p``).

    ``H_L = H_k (x) H_k (x) ... (x) H_k`` (Kronecker products of small Hadamard
    matrices, ``H_{2n} = [[H_n, H_n], [H_n, -H_n]]``), so viewing ``x`` as a tensor
    with one axis of length ``k`` per factor, ``H_L x`` applies ``H_k`` along each
    axis in turn: a radix-``k`` butterfly, each stage one (batched) matrix
    multiply. With ``k <= 32`` that costs ``2k L log_k L = O(L log L)``
    operations and ``O(L)`` memory (no ``L x L`` matrix); autograd
    differentiates it (``H`` is symmetric, so the backward pass is the same
    transform). ``H H = L I``: ``H / sqrt(L)`` is orthogonal.

    Args:
        x: ``(..., L)`` with ``L`` a power of two.

    Returns:
        ``(..., L)``, the same dtype and device.
    """
    length = x.shape[-1]
    bits = length.bit_length() - 1
    if length != 2**bits:
        raise InputError(f"x.shape[-1]={length} must be a power of two")
    leading = x.shape[:-1]
    stages = max(1, math.ceil(bits / _RADIX_BITS))
    chunks = [bits // stages + (1 if i < bits % stages else 0) for i in range(stages)]
    rows = math.prod(leading)
    outer = 1
    for chunk in chunks:
        k = 2**chunk
        inner = length // (outer * k)
        h = _hadamard(chunk, x.dtype, x.device)
        if inner == 1:  # the last axis: one plain matrix multiply
            x = x.reshape(-1, k) @ h
        else:
            x = torch.matmul(h, x.reshape(rows * outer, k, inner))
        outer *= k
    return x.reshape(*leading, length)


class Projection(nn.Module):
    """A batch of random ``D x d`` projections with unit-norm columns, one per member.

    Members are laid out in *slots* ``(sources, per_source)``: row ``s`` holds
    the members of the ``s``-th distinct seed (padded with zero rows to the
    largest count), so each subclass projects all members with one batched
    operation, :meth:`_project_slots`.

    Args:
        D: number of parameters of one model (rows of ``P``).
        dims: subspace dimension of each member (it uses the first ``dims[i]``
            columns); ``d = max(dims)``.
        seeds: each member's seed; members with equal seeds share a projection.
    """

    def __init__(self, D: int, dims: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__()
        check_positive("D", D, integer=True)
        if len(dims) == 0:
            raise InputError("dims=[] is empty: give each member's subspace dimension")
        for d in dims:
            check_positive("d", d, integer=True)
        if len(seeds) != len(dims):
            raise InputError(f"seeds has {len(seeds)} entries but dims has {len(dims)}")
        for seed in seeds:
            check_seed(seed)
        self.D = int(D)
        self.dims = [int(d) for d in dims]
        self.d = max(self.dims)
        self.seeds = sorted(set(seeds))
        members = len(self.dims)
        rows: list[list[int]] = [[] for _ in self.seeds]
        for member, seed in enumerate(seeds):
            rows[self.seeds.index(seed)].append(member)
        self.per_source = max(len(r) for r in rows)
        # slot -> member (``members`` marks a padding slot, fed a zero row) and back.
        slots = [r + [members] * (self.per_source - len(r)) for r in rows]
        slot_of = torch.tensor(slots).flatten()
        self.trivial_slots = slot_of.tolist() == list(range(members))
        self.register_buffer("slot_of", slot_of, persistent=False)
        self.register_buffer("member_slot", torch.argsort(slot_of)[:members], persistent=False)
        mask = None
        if min(self.dims) < self.d:
            mask = (torch.arange(self.d)[None, :] < torch.tensor(self.dims)[:, None]).float()
        self.register_buffer("mask", mask, persistent=False)

    @property
    def members(self) -> int:
        return len(self.dims)

    @classmethod
    def cost(cls, D: int, d: int) -> float:
        """Multiply-adds of one ``project`` per member, ``D d`` for a dense matrix.

        Members padded to a larger ``d`` pay for it: batch members of very
        different ``d`` only while the padded cost stays small.
        """
        return float(D) * d

    def project(self, theta_d: torch.Tensor) -> torch.Tensor:
        """``P theta_d``: ``(members, d) -> (members, D)``; also ``(d,) -> (D,)`` for one member."""
        single = theta_d.dim() == 1 and self.members == 1
        x = theta_d.unsqueeze(0) if single else theta_d
        if x.shape != (self.members, self.d):
            raise InputError(
                f"theta_d has shape {tuple(theta_d.shape)}; expected {(self.members, self.d)}"
            )
        if self.mask is not None:
            x = x * self.mask
        sources = len(self.seeds)
        if self.trivial_slots:
            out = self._project_slots(x.view(sources, self.per_source, self.d))
            out = out.reshape(self.members, self.D)
        else:
            padded = torch.cat([x, x.new_zeros(1, self.d)])
            slots = padded.index_select(0, self.slot_of).view(sources, self.per_source, self.d)
            out = self._project_slots(slots).reshape(-1, self.D).index_select(0, self.member_slot)
        return out.squeeze(0) if single else out

    def _project_slots(self, x: torch.Tensor) -> torch.Tensor:
        """``(sources, per_source, d) -> (sources, per_source, D)``, source ``s`` by its ``P``."""
        raise NotImplementedError


class DenseProjection(Projection):
    """Gaussian ``P`` with each column scaled to unit length (Li et al. 2018, section 2).

    Entries ``N(0, 1)``, then each column divided by its norm: the columns are
    uniform on the unit sphere, ``|cos|`` between two of them about
    ``N(0, 1/D)``. Holds ``D d`` numbers per seed as ``(seeds, d, D)``; one
    projection costs ``2 D d`` operations.
    """

    def __init__(self, D: int, dims: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__(D, dims, seeds)
        columns = []
        for seed in self.seeds:
            c = _column_draws(
                lambda n, g: torch.randn((n, self.D), generator=g), self.d, _generator(seed)
            )
            columns.append(c / c.norm(dim=1, keepdim=True))
        self.register_buffer("columns", torch.stack(columns), persistent=False)

    def _project_slots(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(x, self.columns)


class _SparseMatmul(torch.autograd.Function):
    """``matrix @ x`` for a CSR ``matrix``, with the backward pass through a stored CSR transpose.

    PyTorch's own CSR backward is orders of magnitude slower than a second
    sparse product.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor):
        ctx.transposed = transposed
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.transposed @ grad, None, None


class SparseProjection(Projection):
    """Very sparse random ``P`` with unit-norm columns (Li, Hastie, Church 2006).

    Each column gets ``k = round(sqrt(D))`` entries ``+-1`` (density ``1/sqrt(D)``,
    as in Li et al. 2018) at rows drawn uniformly (with replacement; a repeated
    row sums its signs), then is divided by its norm: ``nnz ~ d sqrt(D)``. Two
    columns share about ``k**2 / D = 1`` row, so ``|cos|`` is about
    ``1/sqrt(D)``. All seeds' matrices form one block-diagonal CSR matrix
    ``(seeds D, seeds d)``, held with its transpose: ``2 nnz`` values with
    their indices per seed; one projection costs ``O(nnz)``.
    """

    def __init__(self, D: int, dims: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__(D, dims, seeds)
        self.per_column = max(1, round(math.sqrt(self.D)))
        blocks = [self._draw(_generator(seed)) for seed in self.seeds]
        rows = torch.cat([b.indices()[0] + i * self.D for i, b in enumerate(blocks)])
        cols = torch.cat([b.indices()[1] + i * self.d for i, b in enumerate(blocks)])
        values = torch.cat([b.values() for b in blocks])
        shape = (len(blocks) * self.D, len(blocks) * self.d)
        matrix = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), values, shape, check_invariants=True
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
            self.register_buffer("matrix", matrix.to_sparse_csr(), persistent=False)
            self.register_buffer("transposed", matrix.t().to_sparse_csr(), persistent=False)

    @classmethod
    def cost(cls, D: int, d: int) -> float:
        """``nnz``, about ``d sqrt(D)``."""
        return d * max(1.0, round(math.sqrt(D)))

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        """One ``(D, d)`` COO matrix; row and sign of a column's entries drawn together."""
        draws = _column_draws(
            lambda n, g: torch.randint(0, 2 * self.D, (n, self.per_column), generator=g),
            self.d,
            generator,
        )
        rows = (draws % self.D).flatten()
        signs = (1 - 2 * (draws // self.D)).flatten().float()
        cols = torch.arange(self.d).repeat_interleave(self.per_column)
        matrix = torch.sparse_coo_tensor(
            torch.stack([rows, cols]), signs, (self.D, self.d), check_invariants=True
        ).coalesce()
        cols, values = matrix.indices()[1], matrix.values()
        norms = torch.zeros(self.d).index_add_(0, cols, values**2).sqrt()
        return torch.sparse_coo_tensor(
            matrix.indices(), values / norms[cols], (self.D, self.d), check_invariants=True
        ).coalesce()

    def _project_slots(self, x: torch.Tensor) -> torch.Tensor:
        sources, per_source, d = x.shape
        stacked = x.transpose(1, 2).reshape(sources * d, per_source)
        out = _SparseMatmul.apply(stacked, self.matrix, self.transposed)
        return out.view(sources, self.D, per_source).transpose(1, 2)


class FastfoodProjection(Projection):
    """Fastfood ``V = H G Pi H B`` (Le, Sarlos, Smola 2013), used as ``P`` by Li et al. 2018.

    ``L = 2**ceil(log2 D)``; ``B`` random signs, ``Pi`` a random permutation,
    ``G`` a Gaussian diagonal, ``H`` the Walsh-Hadamard transform
    (:func:`walsh_hadamard`). Column ``k`` of ``V`` is ``H G s_k`` with ``s_k``
    a permuted, signed row of ``H`` (entries ``+-1``), so its norm is exactly
    ``sqrt(L) ||G||``. ``P`` is the first ``D`` rows of ``V / (sqrt(D) ||G||)``:
    before truncation each column would have length ``sqrt(L/D)``; the
    ``D`` kept rows hold ``D/L`` of the squared length in expectation, which
    gives unit length up to fluctuations of relative size ``O(sqrt(1/D))``
    (``H G s_k / (sqrt(L) ||G||)`` is uniform on the unit sphere of ``R^L``).
    For ``d > L``, ``ceil(d/L)`` independent blocks ``[V_1 V_2 ...]`` are used;
    their outputs are summed before the last ``H`` (``H`` is linear).

    The columns share ``G`` and the Hadamard structure, so they are less
    independent than a dense projection's, and a subspace can be worse
    conditioned for a given objective. On the toy problem of Li et al. (10
    group-sum constraints, ``d = 10``, 200 seeds) the smallest singular value
    of the ``10 x 10`` constraint matrix has a median 0.6x the dense one's when
    the groups are contiguous runs of parameters; with randomly scattered
    groups the medians agree but the low tail is heavier (1% quantile 0.0002
    against 0.002). That slows optimisation without changing the dimension.

    Cheap first transform: ``theta_d`` is zero beyond its first ``d``
    coordinates, and the first ``s = 2**ceil(log2 d)`` columns of ``H_L`` are
    ``H_s`` tiled ``L/s`` times, so ``Pi H_L B x`` is ``H_s`` applied to the
    ``s`` leading coordinates followed by one gather (``Pi`` composed with the
    tiling, index ``perm mod s``). One projection costs one size-``s`` and one
    size-``L`` transform per member, ``O(L log L)``, and per block holds ``s``
    signs, ``L`` gather indices and ``L`` Gaussians (``<= 3L`` numbers per seed);
    no ``D x d`` matrix is ever formed.
    """

    def __init__(self, D: int, dims: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__(D, dims, seeds)
        self.L = 2 ** math.ceil(math.log2(self.D))
        self.blocks = math.ceil(self.d / self.L)
        self.s = self.L if self.blocks > 1 else 2 ** math.ceil(math.log2(self.d))
        signs, index, gauss = [], [], []
        for seed in self.seeds:
            generator = _generator(seed)
            for _ in range(self.blocks):
                b = 2 * torch.randint(0, 2, (self.L,), generator=generator) - 1
                perm = torch.randperm(self.L, generator=generator)
                g = torch.randn(self.L, generator=generator)
                signs.append(b[: self.s].float())
                index.append(perm % self.s)
                gauss.append(g / (math.sqrt(self.D) * g.norm()))
        shape = (len(self.seeds), 1, self.blocks)  # broadcast over the members of a seed
        self.register_buffer("signs", torch.stack(signs).view(*shape, self.s), persistent=False)
        self.register_buffer("index", torch.stack(index).view(*shape, self.L), persistent=False)
        self.register_buffer("gauss", torch.stack(gauss).view(*shape, self.L), persistent=False)

    @classmethod
    def cost(cls, D: int, d: int) -> float:
        """``blocks L log2 L``: the same for every ``d <= L``."""
        bits = math.ceil(math.log2(D))
        return math.ceil(d / 2**bits) * 2**bits * max(bits, 1)

    def _project_slots(self, x: torch.Tensor) -> torch.Tensor:
        sources, per_source, _ = x.shape
        padded = self.blocks * self.s
        if padded > self.d:
            x = torch.nn.functional.pad(x, (0, padded - self.d))
        x = x.view(sources, per_source, self.blocks, self.s)
        u = walsh_hadamard(x * self.signs)  # H_s B x
        index = self.index.expand(sources, per_source, self.blocks, self.L)
        v = torch.gather(u, 3, index) * self.gauss  # G Pi H B x, (sources, per_source, blocks, L)
        return walsh_hadamard(v.sum(2))[..., : self.D]


PROJECTION_CLASSES: dict[str, type[Projection]] = {
    "dense": DenseProjection,
    "sparse": SparseProjection,
    "fastfood": FastfoodProjection,
}
"""Projection classes by their name in :data:`toolkit.engine.catalogue.PROJECTIONS`."""
check_registry("projections", PROJECTION_CLASSES, PROJECTIONS)


def make_projection(name: str, D: int, dims: Sequence[int], seeds: Sequence[int]) -> Projection:
    """The projection called ``name`` (one of :data:`~toolkit.engine.catalogue.PROJECTIONS`)."""
    check_choice("projection", name, PROJECTIONS)
    return PROJECTION_CLASSES[name](D, dims, seeds)
