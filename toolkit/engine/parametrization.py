"""Parametrizations as data: per-role scaling rules for width and depth.

The rule tables (roles, width rules, depth, epsilon and weight-decay rules) are
in :mod:`toolkit.engine.rules`; a :class:`Parametrization` picks one of each and
:func:`resolve` turns a model's tensor specs into per-tensor numbers.

Depth (residual blocks ``x + mL**-alpha f(x)``) adds, for tensors inside a
block: branch multiplier ``mL**-alpha``, Adam LR ``mL**(alpha - 1)``, SGD LR
``mL**(2 alpha - 1)`` and, under the ``gradient`` epsilon rule, Adam epsilon
``mL**-alpha`` (Yang et al. 2023, "Tensor Programs VI"; Bordelon et al. 2023;
Dey et al. 2025, "CompleteP"). ``alpha = 1/2`` is depth-muP, ``alpha = 1`` is
CompleteP. Embeddings, the final norm and the readout are not in a block, so
their rules do not change with depth.

Weight decay shrinks a tensor by its *per-step decay* ``d`` each step: ``lr *
wd`` when it is coupled to the LR (PyTorch's AdamW, Adam-atan2, Muon; SGD and
Adam add ``wd * p`` to the gradient, an L2 penalty scaled the same way), ``wd``
when it is independent of it (``independent_weight_decay``; Wortsman et al.
2024). :data:`~toolkit.engine.rules.WEIGHT_DECAY_SCALINGS` sets how ``d`` scales
with width, from which the ``wd`` multiplier follows for each LR multiplier:
Fan et al. 2025's ``d ∝ m**-1/2`` on hidden matrices holds under SP, muP,
mean-field and Muon alike. ``weight_decay_exclude`` keeps norm gains, or every
vector tensor, out of the decay.

u-muP (``name="u-mup"``; Blake et al. 2024, "u-muP: The Unit-Scaled Maximal Update
Parametrization") writes its rules on the fans themselves (unit-scaled rules,
:mod:`toolkit.engine.rules`): it does not equal SP at the base width, and ``base_width``
only fixes where epsilon takes its base value. With ``depth_rule="depth-mup"`` and
``base_depth=1`` a tensor in a block gets Adam LR ``L**-1/2``, as the unit-scaling
package's ``DepthSequential`` gives every parameter of its stack. What the toolkit's models
do not reproduce of that package:

* residual branches: the package mixes ``(tau f(x) + x) / sqrt(1 + tau**2)`` with ``tau``
  from its residual rule (paper, appendix G), ours add ``x + mL**-alpha f(x)``;
* biases: the package adds a linear map's bias before the map's output scale (its bias
  acts as ``fan_in**-1/2 b``), ours after it (the paper's models have no biases);
* gradients: the package scales its backward pass on its own (``scale_bwd``), so its
  gradients are the true ones times a constant per tensor in a chain of layers; Adam
  does not see such a constant (up to epsilon), SGD would, so only Adam-like optimizers
  are defined for ``u-mup`` (:func:`check_optimizer`). Adam's L2 penalty is added to the
  package's rescaled gradient and to our true one, so with ``weight_decay`` Adam differs
  from the package (AdamW's decoupled decay does not);
* nonlinearities: ours are scaled to unit RMS
  (:data:`~toolkit.engine.rules.UNIT_ACTIVATION_GAINS`); the package's GELU to an
  empirical unit standard deviation, and it has no ReLU or tanh;
* the Transformer: the package has no position embedding (ours adds one to the token
  embedding, an RMS of ``sqrt(2)`` at init), scales the attention output by an empirical
  model and uses RMSNorm without gains and a gated MLP; ours keeps the Transformer of
  :mod:`toolkit.engine.transformer` and gives each of its tensors u-muP's rules.

:func:`describe` shows every number and every rule as a polars frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import polars as pl

from toolkit.engine.rules import (
    DEPTH_RULES,
    EPSILON_RULES,
    LR_CONSTANTS,
    MUON_SCALINGS,
    OPTIMIZER_FAMILIES,
    WEIGHT_DECAY_EXCLUSIONS,
    WEIGHT_DECAY_SCALINGS,
    WIDTH_RULES,
    WIDTH_RULES_BY_ALIGNMENT,
    WITHOUT_EPSILON,
    Kind,
    Role,
    TensorSpec,
    WidthRule,
)
from toolkit.errors import InputError, check_choice, check_positive

ALIGNMENTS = tuple(WIDTH_RULES_BY_ALIGNMENT)
"""Alignment assumptions a width rule may be derived under (``full``, ``none``)."""

__all__ = [
    "ALIGNMENTS", "DEPTH_RULES", "EPSILON_RULES", "LR_CONSTANTS", "MUON_SCALINGS",
    "OPTIMIZER_FAMILIES", "WEIGHT_DECAY_EXCLUSIONS", "WEIGHT_DECAY_SCALINGS", "WIDTH_RULES",
    "Kind",
    "Parametrization", "Resolved", "Role",
    "TensorSpec", "WidthRule", "branch_multiplier", "check_optimizer", "defines_optimizer",
    "describe", "forward_and_init", "orthogonalised", "resolve", "unit_fans",
]  # fmt: skip


@dataclass(frozen=True)
class Parametrization:
    """A parametrization: width rule, depth rule, multipliers and base shape.

    Args:
        name: key of :data:`~toolkit.engine.rules.WIDTH_RULES` (``sp``, ``mup``, ``ntk``
            (lazy), ``mf``, and Everett et al.'s rows ``sp-everett``, ``ntk-everett``,
            ``mup-everett``, ``mf-everett``; and ``u-mup``).
        alignment: the alignment assumption of Everett et al.'s rows, ``full`` (the
            default, every rule) or ``none`` (their rows only;
            :data:`~toolkit.engine.rules.WIDTH_RULES_BY_ALIGNMENT`).
        lr_input, lr_hidden, lr_output, lr_vector: constants multiplying the learning rate
            of the input, hidden, output and vector tensors on top of the width rule, the
            same at every width (:data:`~toolkit.engine.rules.LR_CONSTANTS`); tuned at the
            base width, transferred as they are.
        base_width: width ``n0`` at which this equals SP.
        depth_rule: key of :data:`DEPTH_RULES`, ignored if ``depth_alpha`` is set.
        depth_alpha: branch exponent in ``[0.5, 1]`` or any positive value.
        base_depth: number of blocks ``L0`` at which the depth rule is neutral.
        init_sigma: ``sigma`` in the init std ``sigma / sqrt(fan_in)``.
        input_alpha, output_alpha: constant forward multipliers of the first
            layer and the readout (tuned at base width, transferred as is).
        readout_zero_init: initialise the readout to zero (recommended for muP
            by Tensor Programs V; off by default so muP equals SP at base width).
        weight_decay_scaling: how the per-step decay scales with width (``none``,
            ``coupled``, ``sqrt_width``, ``fan``;
            :data:`~toolkit.engine.rules.WEIGHT_DECAY_SCALINGS`).
        weight_decay_exclude: ``none``, ``gains`` or ``vectors``: tensors never decayed.
        independent_weight_decay: decay by ``wd`` per step (times the schedule) instead of
            ``lr * wd``; only for the decoupled decay of AdamW, Adam-atan2 and Muon.
        eps_rule: ``gradient`` (epsilon follows the stored tensor's gradient) or
            ``constant`` (:data:`~toolkit.engine.rules.EPSILON_RULES`).
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
    weight_decay_exclude: str = "none"
    independent_weight_decay: bool = False
    eps_rule: str = "gradient"
    alignment: str = "full"
    lr_input: float = 1.0
    lr_hidden: float = 1.0
    lr_output: float = 1.0
    lr_vector: float = 1.0
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
        check_choice("weight_decay_exclude", self.weight_decay_exclude, WEIGHT_DECAY_EXCLUSIONS)
        check_choice("eps_rule", self.eps_rule, EPSILON_RULES)
        check_choice("alignment", self.alignment, ALIGNMENTS)
        rules = WIDTH_RULES_BY_ALIGNMENT[self.alignment]
        if self.name not in rules:
            raise InputError(
                f"alignment={self.alignment!r} has no rule for parametrization={self.name!r}; "
                f"allowed: {', '.join(repr(n) for n in rules)} (or alignment='full')"
            )
        for argument in LR_CONSTANTS.values():
            check_positive(argument, getattr(self, argument))
        object.__setattr__(self, "width_rules", rules[self.name])

    @property
    def alpha(self) -> float | None:
        """Branch exponent of the depth rule (``None`` when depth is not scaled)."""
        if self.depth_alpha is not None:
            return self.depth_alpha
        return DEPTH_RULES[self.depth_rule]

    def lr_constant(self, role: Role) -> float:
        """The constant multiplying ``role``'s learning rate (1 for a fixed tensor)."""
        return getattr(self, LR_CONSTANTS[role]) if role in LR_CONSTANTS else 1.0

    @property
    def width_rule(self) -> str:
        """The width rule's name, with its alignment assumption where it has one."""
        if self.name in WIDTH_RULES_BY_ALIGNMENT["none"]:
            return f"{self.name}, {self.alignment} alignment"
        return self.name

    def with_(self, **changes: object) -> Parametrization:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Resolved:
    """The numbers one tensor gets: all multipliers of the base values.

    ``lr_mult`` (the width and depth rules' multiplier times the role's LR constant) and
    ``wd_mult`` multiply the (per-member) base LR and weight decay; ``eps_mult`` multiplies
    Adam's epsilon. ``decay_with_lr``: the per-step decay is ``lr * wd`` (else ``wd``,
    independent of the LR).
    """

    spec: TensorSpec
    init_std: float
    forward_mult: float
    lr_mult: float
    wd_mult: float
    eps_mult: float
    decay_with_lr: bool = True


def branch_multiplier(param: Parametrization, depth: int) -> float:
    """Residual-branch multiplier ``mL ** -alpha`` with ``mL = depth / base_depth``."""
    alpha = param.alpha
    if alpha is None:
        return 1.0
    return (depth / param.base_depth) ** -alpha


def unit_fans(spec: TensorSpec) -> tuple[int, int]:
    """The fans ``(F, G)`` a unit-scaled rule's forward/init and LR exponents apply to.

    ``F`` is the number of terms each output sums: a matrix's fan-in, 1 for an embedding
    lookup. ``G`` is the fan the LR rule is written on: a matrix's fan-in, an embedding's
    width (Blake et al. 2024, section 4, "A new embedding LR rule"; the unit-scaling
    package's ``optim`` takes a weight's second PyTorch dimension, which for an
    ``Embedding`` is its width). For a vector both are its fan-in, never used (its
    exponents are 0).
    """
    if spec.lookup:
        return 1, spec.fan_out
    return spec.fan_in, spec.fan_in


_FAMILY_EXPONENTS = {"sgd": ("lr_sgd",), "adam": ("lr_adam",), "muon": ("lr_adam", "lr_muon")}
"""The :class:`WidthRule` exponents each optimizer family reads."""


def defines_optimizer(param: Parametrization, optimizer: str) -> bool:
    """Whether every rule of ``param`` has the LR exponents ``optimizer`` needs (none is
    ``None``)."""
    exponents = _FAMILY_EXPONENTS[OPTIMIZER_FAMILIES[optimizer]]
    rules = param.width_rules.values()
    return all(getattr(rule, e) is not None for rule in rules for e in exponents)


def check_optimizer(param: Parametrization, optimizer: str) -> None:
    """Raise ``InputError`` unless ``param`` defines learning rates for ``optimizer``."""
    check_choice("optimizer", optimizer, OPTIMIZER_FAMILIES)
    if not defines_optimizer(param, optimizer):
        allowed = ", ".join(repr(o) for o in OPTIMIZER_FAMILIES if defines_optimizer(param, o))
        raise InputError(
            f"optimizer={optimizer!r}: parametrization {param.name!r} defines no learning "
            f"rates for it; allowed: {allowed}"
        )


def forward_and_init(
    spec: TensorSpec, param: Parametrization, *, width: int
) -> tuple[float, float]:
    """Forward multiplier and init std of one tensor's stored values at ``width``."""
    m = width / param.base_width
    rule = param.width_rules[spec.role]
    if rule.unit:
        fan, _ = unit_fans(spec)
        forward, std_scale = fan**-rule.multiplier, fan**-rule.init
    else:
        forward = m**-rule.multiplier
        std_scale = m**-rule.init / math.sqrt(spec.base_fan_in)
    if spec.role is Role.INPUT:
        forward *= param.input_alpha
    elif spec.role is Role.OUTPUT:
        forward *= param.output_alpha
    zero = (spec.role is Role.OUTPUT and param.readout_zero_init) or (
        spec.query and param.query_zero_init
    )
    std = 0.0
    if spec.kind is Kind.WEIGHT and not zero:
        std = param.init_sigma * std_scale
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

    ``lr_mult`` is the width and depth rules' multiplier times the role's constant
    (:meth:`Parametrization.lr_constant`). The constant acts like a per-role base LR: it
    changes no other number (the ``wd`` multiplier is that of the rules' multiplier alone,
    so a decay coupled to the LR follows the constant as it follows the base LR).
    """
    check_optimizer(param, optimizer)
    m = width / param.base_width
    m_depth = depth / param.base_depth
    alpha = param.alpha
    family = OPTIMIZER_FAMILIES[optimizer]
    adam_like = family != "sgd"
    out = []
    for spec in specs:
        rule = param.width_rules[spec.role]
        scale = unit_fans(spec)[1] if rule.unit else m  # what the LR exponents are powers of
        if family == "muon" and orthogonalised(spec):
            lr = scale**-rule.lr_muon
        else:
            lr = scale ** -(rule.lr_adam if adam_like else rule.lr_sgd)
        gradient_eps = param.eps_rule == "gradient"
        eps = m**rule.eps if gradient_eps else 1.0
        if spec.in_block and alpha is not None:
            lr *= m_depth ** ((alpha - 1.0) if adam_like else (2.0 * alpha - 1.0))
            if gradient_eps:
                eps *= m_depth**-alpha
        forward, std = forward_and_init(spec, param, width=width)
        out.append(
            Resolved(
                spec=spec,
                init_std=std,
                forward_mult=forward,
                lr_mult=lr * param.lr_constant(spec.role),
                wd_mult=_weight_decay_mult(param, spec, lr, m),
                eps_mult=eps,
                decay_with_lr=not param.independent_weight_decay,
            )
        )
    return out


def orthogonalised(spec: TensorSpec) -> bool:
    """Whether Muon orthogonalises this tensor's update: hidden matrices only."""
    return spec.role is Role.HIDDEN and spec.kind is Kind.WEIGHT


def _weight_decay_mult(param: Parametrization, spec: TensorSpec, lr_mult: float, m: float) -> float:
    """The ``wd`` multiplier that gives ``spec`` its rule's per-step decay (module docstring)."""
    vector_like = spec.role in (Role.VECTOR, Role.FIXED)
    excluded = {"none": False, "gains": spec.kind is Kind.GAIN, "vectors": vector_like}
    if excluded[param.weight_decay_exclude]:
        return 0.0
    decay_lr = 1.0 if param.independent_weight_decay else lr_mult
    scaling = param.weight_decay_scaling
    if scaling == "coupled":
        return 1.0 / decay_lr
    if scaling == "sqrt_width":
        return m**0.5 if spec.role is Role.HIDDEN else 1.0
    if scaling == "fan":
        if vector_like:
            return 0.0
        return (m**-0.5 if orthogonalised(spec) else 1.0) / decay_lr
    return 1.0


def describe(
    model,
    *,
    optimizer: str = "adam",
    lr: float = 1.0,
    weight_decay: float = 0.0,
    eps: float = 1e-8,
    muon_scaling: str = "fan_ratio",
) -> pl.DataFrame:
    """One row per tensor: exactly what the parametrization applies to ``model``.

    Columns: ``name``, ``role``, ``kind``, ``shape``, ``fan_in``, ``fan_out``,
    ``in_block``, ``init_std`` (std of the stored tensor at init),
    ``forward_mult``, ``branch_mult`` (the residual-branch multiplier of the
    block a tensor sits in), ``lr`` (effective base LR: ``lr * lr_mult``), ``weight_decay``
    (``weight_decay * wd_mult``), ``eps`` (``eps * eps_mult``), the raw
    multipliers, then the rules: ``width_rule`` (the parametrization's name, with its
    alignment assumption for Everett et al.'s rows), ``lr_constant`` (the role's constant,
    a factor of ``lr_mult``), ``decay_per_step`` (``lr * weight_decay``, or
    ``weight_decay`` when the decay is independent of the LR), ``weight_decay_rule``
    (scaling, exclusion, coupling), ``eps_rule`` (``none`` for an optimizer without
    epsilon) and ``update_scale`` (Muon's scale of an orthogonalised update,
    :data:`~toolkit.engine.rules.MUON_SCALINGS` ``[muon_scaling]``; null for every
    other tensor and optimizer). ``model`` is any toolkit model (it has ``specs``,
    ``parametrization``, ``width`` and ``depth``).
    """
    check_choice("muon_scaling", muon_scaling, MUON_SCALINGS)
    param = model.parametrization
    coupling = "independent" if param.independent_weight_decay else "lr"
    wd_rule = f"{param.weight_decay_scaling}, exclude {param.weight_decay_exclude}, {coupling}"
    eps_rule = "none" if optimizer in WITHOUT_EPSILON else param.eps_rule
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
        decay_lr = lr * r.lr_mult if r.decay_with_lr else 1.0
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
                "width_rule": param.width_rule,
                "lr_constant": param.lr_constant(s.role),
                "decay_per_step": weight_decay * r.wd_mult * decay_lr,
                "weight_decay_rule": wd_rule,
                "eps_rule": eps_rule,
                "update_scale": (
                    MUON_SCALINGS[muon_scaling](s.fan_in, s.fan_out)
                    if optimizer == "muon" and orthogonalised(s)
                    else None
                ),
            }
        )
    return pl.DataFrame(rows)
