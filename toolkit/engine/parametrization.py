"""Parametrizations as data: per-role scaling rules for width and depth.

Every weight tensor of a toolkit model has a *role*, decided by which of its
dimensions grow with width (Yang & Hu 2021, "Tensor Programs IV"; the ``mup``
package's ``infshape``):

======== ======================================= ===========================
role     shape                                    examples
======== ======================================= ===========================
input    fan_in fixed, fan_out grows              first layer, embeddings
hidden   both grow                                hidden / block matrices
output   fan_in grows, fan_out fixed              readout
vector   one dimension, grows                     hidden biases, norm gains
fixed    nothing grows                            readout bias
======== ======================================= ===========================

A parametrization is a table mapping each role to exponents of the width
multiplier ``m = n / n0`` (abc-parametrization, Tensor Programs IV, written
relative to standard parametrization at the base width so that every
parametrization equals SP at ``m = 1``; Everett et al. 2024, "Scaling exponents
across parameterizations and optimizers", Table 1):

* forward multiplier ``m ** -a`` (the stored weight is multiplied by it in the
  forward pass),
* init std ``sigma / sqrt(base_fan_in) * m ** -b`` of the stored weight,
* learning rate ``eta * m ** -c`` with separate ``c`` for SGD-like and
  Adam-like optimizers (SGD's effective LR on ``W = m**-a w`` is
  ``eta m**-(2a + c)``, Adam's is ``eta m**-(a + c)``),
* Adam epsilon ``eps * m ** e``, following the size of the stored tensor's
  gradient (Everett et al. 2024, section 4), so epsilon never swamps it.

Muon (:class:`toolkit.engine.optim.Muon`) orthogonalises the update of each hidden
matrix and sets its spectral norm to ``lr * sqrt(fan_out / fan_in)``: the
spectral condition for feature learning (Yang, Simon & Bernstein 2023) holds
at every width with no LR exponent. Its family (:data:`OPTIMIZER_FAMILIES`)
takes the Adam exponents for every other tensor (which Muon leaves to AdamW)
and ``lr_muon`` for hidden matrices: 0 where the stored matrix is the
effective one (SP, muP: SP's single LR is then already right for hidden
matrices), ``-a`` where a forward multiplier ``m**-a`` shrinks the update
again (mean-field), and 0 for NTK, whose hidden updates are meant to shrink
like ``m**-1/2`` (lazy training).

Depth (residual blocks ``x + mL**-alpha f(x)``) adds, for tensors inside a
block: branch multiplier ``mL**-alpha``, Adam LR ``mL**(alpha - 1)``, SGD LR
``mL**(2 alpha - 1)`` and Adam epsilon ``mL**-alpha`` (Yang et al. 2023,
"Tensor Programs VI"; Bordelon et al. 2023; Dey et al. 2025, "CompleteP").
``alpha = 1/2`` is depth-muP, ``alpha = 1`` is CompleteP. Embeddings, the
final norm and the readout are not in a block, so their rules do not change
with depth.

Weight decay is coupled to the LR in PyTorch's AdamW (each step multiplies the
weight by ``1 - lr * wd``), so the choice of how ``wd`` scales is its own rule:
``none`` keeps ``wd`` fixed; ``coupled`` divides by the LR multiplier so
``lr * wd`` is shape-independent (what ``mup``'s ``MuAdamW``/``MuSGD`` do);
``sqrt_width`` multiplies the hidden matrices' ``wd`` by ``m ** 0.5`` (Fan et
al. 2025, "Robust layerwise scaling rules by proper weight decay tuning").

:func:`resolve` turns a model's tensor specs and a parametrization into the
per-tensor numbers; :func:`describe` shows them as a polars frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

import polars as pl

from toolkit.errors import check_choice, check_positive


class Role(StrEnum):
    """How a tensor's dimensions scale with width."""

    INPUT = "input"
    HIDDEN = "hidden"
    OUTPUT = "output"
    VECTOR = "vector"
    FIXED = "fixed"


class Kind(StrEnum):
    """What a tensor is, which fixes how it is initialised."""

    WEIGHT = "weight"  # random: normal(0, init_std)
    BIAS = "bias"  # zeros
    GAIN = "gain"  # ones


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor as the parametrization sees it (shapes without the member axis).

    ``fan_in``/``fan_out`` are the matrix fans; ``base_fan_in`` the fan-in at base
    width (equal to ``fan_in`` when it does not grow). ``in_block`` marks tensors
    inside a residual block, to which the depth rule applies.
    """

    name: str
    role: Role
    kind: Kind
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    base_fan_in: int
    in_block: bool = False
    query: bool = False  # an attention query projection (see ``query_zero_init``)


@dataclass(frozen=True)
class WidthRule:
    """Exponents of the width multiplier ``m`` for one role (see module docstring)."""

    multiplier: float = 0.0  # a: forward multiplier m**-a
    init: float = 0.0  # b: init std sigma/sqrt(base_fan_in) * m**-b
    lr_sgd: float = 0.0  # c for SGD: lr * m**-c
    lr_adam: float = 0.0  # c for Adam-like optimizers: lr * m**-c
    eps: float = 0.0  # Adam epsilon * m**eps
    lr_muon: float = 0.0  # c of hidden matrices under Muon (every other role: lr_adam)


# SP: PyTorch-style fan-in init, one LR for everything. Tensors whose fan-in
# grows get std sigma/sqrt(fan_in) = sigma/sqrt(base_fan_in) * m**-1/2.
_SP = {
    Role.INPUT: WidthRule(),
    Role.HIDDEN: WidthRule(init=0.5),
    Role.OUTPUT: WidthRule(init=0.5),
    Role.VECTOR: WidthRule(),
    Role.FIXED: WidthRule(),
}

# muP in the form of the mup package (Yang et al. 2021, "Tensor Programs V",
# Table 8): readout multiplier 1/m with width-independent stored std; Adam LR
# 1/m on hidden matrices; SGD LR m on input, output and vector tensors. Every
# width-dependent gradient is O(1/m), hence epsilon / m.
_MUP = {
    Role.INPUT: WidthRule(lr_sgd=-1.0, eps=-1.0),
    Role.HIDDEN: WidthRule(init=0.5, lr_adam=1.0, eps=-1.0),
    Role.OUTPUT: WidthRule(multiplier=1.0, lr_sgd=-1.0, eps=-1.0),
    Role.VECTOR: WidthRule(lr_sgd=-1.0, eps=-1.0),
    Role.FIXED: WidthRule(),
}

# NTK (Jacot et al. 2018; Tensor Programs IV, abc = (0, 1/2, 1/2 | 0 | 0)):
# forward multiplier m**-1/2 on every tensor whose fan-in grows, stored std
# fixed. Effective SGD LR 1/m on hidden and readout (c = 0). The Adam exponents
# keep training in the kernel regime: hidden-feature updates O(m**-1/2) and
# function updates O(1), giving c = (1/2, 1, 1/2) for input, hidden, output.
# Stored-tensor gradients are O(m**-1/2) except hidden matrices, O(m**-1).
_NTK = {
    Role.INPUT: WidthRule(lr_adam=0.5, eps=-0.5),
    Role.HIDDEN: WidthRule(multiplier=0.5, lr_adam=1.0, eps=-1.0),
    Role.OUTPUT: WidthRule(multiplier=0.5, lr_adam=0.5, eps=-0.5),
    Role.VECTOR: WidthRule(lr_adam=0.5, eps=-0.5),
    Role.FIXED: WidthRule(),
}

# Mean-field (Everett et al. 2024, "MFP"): muP moved by the abc symmetry
# a -> a + 1/2, b -> b - 1/2, c_sgd -> c_sgd - 1, c_adam -> c_adam - 1/2 on the
# tensors whose fan-in grows. Same function and same dynamics as muP under
# SGD; under Adam they differ through epsilon (the stored tensors are larger),
# which is exactly what a comparison of the two can expose.
_MF = {
    Role.INPUT: WidthRule(lr_sgd=-1.0, eps=-1.0),
    Role.HIDDEN: WidthRule(multiplier=0.5, lr_sgd=-1.0, lr_adam=0.5, eps=-1.5, lr_muon=-0.5),
    Role.OUTPUT: WidthRule(multiplier=1.0, lr_sgd=-1.0, eps=-1.0),
    Role.VECTOR: WidthRule(lr_sgd=-1.0, eps=-1.0),
    Role.FIXED: WidthRule(),
}

WIDTH_RULES: dict[str, dict[Role, WidthRule]] = {
    "sp": _SP,
    "mup": _MUP,
    "ntk": _NTK,
    "mf": _MF,
}
"""Width rules by parametrization name; a new parametrization is a new entry."""

DEPTH_RULES: dict[str, float | None] = {
    "none": None,
    "depth-mup": 0.5,
    "completep": 1.0,
}
"""Named depth rules and their branch exponent ``alpha`` (``None``: no scaling)."""

WEIGHT_DECAY_SCALINGS = ("none", "coupled", "sqrt_width")

OPTIMIZER_FAMILIES: dict[str, str] = {
    "sgd": "sgd",
    "adam": "adam",
    "adamw": "adam",
    "adam-atan2": "adam",
    "muon": "muon",
}
"""Which LR exponents an optimizer uses: SGD-like (update ~ gradient), Adam-like (update
invariant to the gradient's scale) or Muon (Adam-like, hidden matrices by ``lr_muon``)."""


@dataclass(frozen=True)
class Parametrization:
    """A parametrization: width rule, depth rule, multipliers and base shape.

    Args:
        name: key of :data:`WIDTH_RULES` (``sp``, ``mup``, ``ntk``, ``mf``).
        base_width: width ``n0`` at which this equals SP.
        depth_rule: key of :data:`DEPTH_RULES`, ignored if ``depth_alpha`` is set.
        depth_alpha: branch exponent in ``[0.5, 1]`` or any positive value.
        base_depth: number of blocks ``L0`` at which the depth rule is neutral.
        init_sigma: ``sigma`` in the init std ``sigma / sqrt(fan_in)``.
        input_alpha, output_alpha: constant forward multipliers of the first
            layer and the readout (tuned at base width, transferred as is).
        readout_zero_init: initialise the readout to zero (recommended for muP
            by Tensor Programs V; off by default so muP equals SP at base width).
        weight_decay_scaling: ``none``, ``coupled`` or ``sqrt_width``.
        attn_alpha: constant multiplier of attention logits (tuned at base width).
        query_zero_init: initialise attention query projections to zero, so every
            head attends uniformly at step 0 (recommended for muP by Tensor
            Programs V); like ``readout_zero_init`` it applies to every
            parametrization, so they still agree at the base shape.
    """

    name: str = "sp"
    base_width: int = 64
    depth_rule: str = "none"
    depth_alpha: float | None = None
    base_depth: int = 1
    init_sigma: float = 1.0
    input_alpha: float = 1.0
    output_alpha: float = 1.0
    readout_zero_init: bool = False
    weight_decay_scaling: str = "coupled"
    attn_alpha: float = 1.0
    query_zero_init: bool = False
    width_rules: dict[Role, WidthRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_choice("parametrization", self.name, WIDTH_RULES)
        check_positive("base_width", self.base_width, integer=True)
        check_positive("base_depth", self.base_depth, integer=True)
        check_choice("depth_rule", self.depth_rule, DEPTH_RULES)
        if self.depth_alpha is not None:
            check_positive("depth_alpha", self.depth_alpha)
        check_positive("init_sigma", self.init_sigma)
        for argument in ("input_alpha", "output_alpha", "attn_alpha"):
            check_positive(argument, getattr(self, argument))
        check_choice("weight_decay_scaling", self.weight_decay_scaling, WEIGHT_DECAY_SCALINGS)
        object.__setattr__(self, "width_rules", WIDTH_RULES[self.name])

    @property
    def alpha(self) -> float | None:
        """Branch exponent of the depth rule (``None`` when depth is not scaled)."""
        if self.depth_alpha is not None:
            return self.depth_alpha
        return DEPTH_RULES[self.depth_rule]

    def with_(self, **changes: object) -> Parametrization:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Resolved:
    """The numbers one tensor gets: all multipliers of the base values.

    ``lr_mult`` and ``wd_mult`` multiply the (per-member) base LR and weight
    decay; ``eps_mult`` multiplies Adam's epsilon.
    """

    spec: TensorSpec
    init_std: float
    forward_mult: float
    lr_mult: float
    wd_mult: float
    eps_mult: float


def branch_multiplier(param: Parametrization, depth: int) -> float:
    """Residual-branch multiplier ``mL ** -alpha`` with ``mL = depth / base_depth``."""
    alpha = param.alpha
    if alpha is None:
        return 1.0
    return (depth / param.base_depth) ** -alpha


def forward_and_init(
    spec: TensorSpec, param: Parametrization, *, width: int
) -> tuple[float, float]:
    """Forward multiplier and init std of one tensor's stored values at ``width``."""
    m = width / param.base_width
    rule = param.width_rules[spec.role]
    forward = m**-rule.multiplier
    if spec.role is Role.INPUT:
        forward *= param.input_alpha
    elif spec.role is Role.OUTPUT:
        forward *= param.output_alpha
    zero = (spec.role is Role.OUTPUT and param.readout_zero_init) or (
        spec.query and param.query_zero_init
    )
    std = 0.0
    if spec.kind is Kind.WEIGHT and not zero:
        std = param.init_sigma / math.sqrt(spec.base_fan_in) * m**-rule.init
    return forward, std


def resolve(
    specs: Iterable[TensorSpec],
    param: Parametrization,
    *,
    width: int,
    depth: int,
    optimizer: str,
) -> list[Resolved]:
    """Per-tensor init std, forward multiplier and LR / WD / epsilon multipliers.

    ``width`` and ``depth`` are the model's; ``optimizer`` selects the SGD, Adam
    or Muon LR exponents (:data:`OPTIMIZER_FAMILIES`). Muon is Adam-like for the
    depth rule too: its update size does not follow the gradient's.
    """
    check_choice("optimizer", optimizer, OPTIMIZER_FAMILIES)
    m = width / param.base_width
    m_depth = depth / param.base_depth
    alpha = param.alpha
    family = OPTIMIZER_FAMILIES[optimizer]
    adam_like = family != "sgd"
    out = []
    for spec in specs:
        rule = param.width_rules[spec.role]
        if family == "muon" and orthogonalised(spec):
            lr = m**-rule.lr_muon
        else:
            lr = m ** -(rule.lr_adam if adam_like else rule.lr_sgd)
        eps = m**rule.eps
        if spec.in_block and alpha is not None:
            lr *= m_depth ** ((alpha - 1.0) if adam_like else (2.0 * alpha - 1.0))
            eps *= m_depth**-alpha
        forward, std = forward_and_init(spec, param, width=width)
        out.append(
            Resolved(
                spec=spec,
                init_std=std,
                forward_mult=forward,
                lr_mult=lr,
                wd_mult=_weight_decay_mult(param.weight_decay_scaling, spec, lr, m),
                eps_mult=eps,
            )
        )
    return out


def orthogonalised(spec: TensorSpec) -> bool:
    """Whether Muon orthogonalises this tensor's update: hidden matrices only."""
    return spec.role is Role.HIDDEN and spec.kind is Kind.WEIGHT


def _weight_decay_mult(scaling: str, spec: TensorSpec, lr_mult: float, m: float) -> float:
    if scaling == "coupled":
        return 1.0 / lr_mult
    if scaling == "sqrt_width" and spec.role is Role.HIDDEN:
        return m**0.5
    return 1.0


def describe(
    model,
    *,
    optimizer: str = "adam",
    lr: float = 1.0,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
) -> pl.DataFrame:
    """One row per tensor: exactly what the parametrization applies to ``model``.

    Columns: ``name``, ``role``, ``kind``, ``shape``, ``fan_in``, ``fan_out``,
    ``in_block``, ``init_std`` (std of the stored tensor at init),
    ``forward_mult``, ``branch_mult`` (the residual-branch multiplier of the
    block a tensor sits in), ``lr`` (effective base LR: ``lr * lr_mult``), ``weight_decay``
    (``weight_decay * wd_mult``), ``eps`` (``eps * eps_mult``) and the raw
    multipliers. ``model`` is any toolkit model (it has ``specs``,
    ``parametrization``, ``width`` and ``depth``).
    """
    resolved = resolve(
        model.specs,
        model.parametrization,
        width=model.width,
        depth=model.depth,
        optimizer=optimizer,
    )
    branch = branch_multiplier(model.parametrization, model.depth)
    rows = []
    for r in resolved:
        s = r.spec
        rows.append(
            {
                "name": s.name,
                "role": s.role.value,
                "kind": s.kind.value,
                "shape": list(s.shape),
                "fan_in": s.fan_in,
                "fan_out": s.fan_out,
                "in_block": s.in_block,
                "init_std": r.init_std,
                "forward_mult": r.forward_mult,
                "branch_mult": branch if s.in_block else 1.0,
                "lr": lr * r.lr_mult,
                "weight_decay": weight_decay * r.wd_mult,
                "eps": eps * r.eps_mult,
                "lr_mult": r.lr_mult,
                "wd_mult": r.wd_mult,
                "eps_mult": r.eps_mult,
            }
        )
    return pl.DataFrame(rows)
