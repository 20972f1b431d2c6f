"""The rule tables a :class:`~toolkit.engine.parametrization.Parametrization` picks from.

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

A width rule maps each role to exponents of the width multiplier ``m = n / n0``
(abc-parametrization, Tensor Programs IV, written relative to standard
parametrization at the base width so that every parametrization but the unit-scaled
u-muP (below) equals SP at ``m = 1``; Everett et al. 2024, "Scaling exponents across
parameterizations and optimizers"):

* forward multiplier ``m ** -a`` (the stored weight is multiplied by it in the
  forward pass),
* init std ``sigma / sqrt(base_fan_in) * m ** -b`` of the stored weight,
* learning rate ``eta * m ** -c`` with separate ``c`` for SGD-like and
  Adam-like optimizers (SGD's effective LR on ``W = m**-a w`` is
  ``eta m**-(2a + c)``, Adam's is ``eta m**-(a + c)``),
* Adam epsilon ``eps * m ** e``: the size of the stored tensor's gradient,
  used by the ``gradient`` epsilon rule (:data:`EPSILON_RULES`).

**Unit-scaled rules** (``WidthRule.unit``). u-muP (Blake et al. 2024, "u-muP: The
Unit-Scaled Maximal Update Parametrization", section 4) is not SP at a base width: every
weight starts at unit scale and each op carries an absolute scale of its own fans. A rule
with ``unit=True`` reads its exponents as powers of the tensor's fans instead of ``m``:

* forward multiplier ``F ** -a``, init std ``sigma * F ** -b``, Adam-like LR
  ``eta * G ** -c``, where ``F`` is the number of terms each output of the op sums (a
  matrix's fan-in; 1 for an embedding lookup, which sums nothing) and ``G`` the fan the
  LR rule is written on (a matrix's fan-in; an embedding's width, which the paper and the
  ``unit-scaling`` package call its fan-in: section 4, "A new embedding LR rule");
* epsilon still scales as ``m ** e`` (``base_width`` is where epsilon is its base value),
  and depth rules apply as to any rule;
* ``None`` in ``lr_sgd`` or ``lr_muon``: the parametrization defines no LR for that
  optimizer family, and a run asking for one is refused
  (:func:`~toolkit.engine.parametrization.check_optimizer`).

A unit-scaled parametrization may also scale its nonlinearities
(:data:`ACTIVATION_GAINS`), so that a unit-RMS pre-activation gives a unit-RMS
activation.

The abc symmetry (Everett et al. 2024, section 2) ``a -> a + t``, ``b -> b - t``,
``c_sgd -> c_sgd - 2t``, ``c_adam -> c_adam - t``, ``e -> e - t`` leaves the
function and its training unchanged under SGD, and under Adam as long as
epsilon follows the gradient. It pairs SP with NTK and muP with mean-field; a
*constant* epsilon (``eps_rule = "constant"``) is what tells the members of a
pair apart, and Adam-atan2 has no epsilon at all.

Muon (:class:`toolkit.engine.optim.Muon`) sets the size of each hidden matrix's
update itself (:data:`toolkit.engine.optim.MUON_SCALINGS`), so its family
(:data:`OPTIMIZER_FAMILIES`) takes the Adam exponents for every other tensor
(which Muon leaves to AdamW, with its own LR) and ``lr_muon`` for hidden matrices: 0 where the
stored matrix is the effective one (SP, muP, NTK's lazy form), ``-a`` where a
forward multiplier ``m**-a`` shrinks the update again (mean-field, NTK with
per-layer LRs).

Everett et al. 2024's Table 1 (:mod:`toolkit.engine.everett`) gives per-layer LR
exponents for SP, NTK, muP and mean-field, for Adam and SGD, under two assumptions on
how an update lines up with the activations it meets: ``full`` and ``none``
(:data:`WIDTH_RULES_BY_ALIGNMENT`). Its rows are the parametrizations ``sp-everett``,
``ntk-everett``, ``mup-everett`` and ``mf-everett``; a :class:`Parametrization`'s
``alignment`` picks the assumption. On top of any width rule, a per-role constant
(:data:`LR_CONSTANTS`: ``lr_input``, ``lr_hidden``, ``lr_output``, ``lr_vector``)
multiplies the role's learning rate, the same at every width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from toolkit.engine.everett import PARAMETRIZATIONS as EVERETT_PARAMETRIZATIONS
from toolkit.engine.everett import everett_exponents


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
    lookup: bool = False  # an embedding table: the forward pass reads rows, summing nothing


@dataclass(frozen=True)
class WidthRule:
    """Exponents of the width multiplier ``m`` for one role (see the module docstring);
    with ``unit``, of the tensor's own fans (u-muP's absolute form)."""

    multiplier: float = 0.0  # a: forward multiplier m**-a (unit: F**-a)
    init: float = 0.0  # b: init std sigma/sqrt(base_fan_in) * m**-b (unit: sigma * F**-b)
    lr_sgd: float | None = 0.0  # c for SGD: lr * m**-c; None: no SGD rule
    lr_adam: float = 0.0  # c for Adam-like optimizers: lr * m**-c (unit: lr * G**-c)
    eps: float = 0.0  # Adam epsilon * m**eps under the ``gradient`` epsilon rule
    lr_muon: float | None = 0.0  # c of hidden matrices under Muon (every other role: lr_adam)
    unit: bool = False  # exponents of the fans, not of m (module docstring)


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

# NTK, lazy (Jacot et al. 2018; Tensor Programs IV, abc = (0, 1/2, 1/2 | 0 | 0)):
# forward multiplier m**-1/2 on every tensor whose fan-in grows, stored std
# fixed. Effective SGD LR 1/m on hidden and readout (c = 0). The Adam exponents
# keep training in the kernel regime: hidden-feature updates O(m**-1/2) and
# function updates O(1), giving c = (1/2, 1, 1/2) for input, hidden, output.
# This is not Everett et al.'s NTK row (``ntk-everett``, below): its features
# stop moving as width grows, so its optimal LR does not transfer like muP's.
# Stored-tensor gradients are O(m**-1/2) except hidden matrices, O(m**-1).
_NTK_LAZY = {
    Role.INPUT: WidthRule(lr_adam=0.5, eps=-0.5),
    Role.HIDDEN: WidthRule(multiplier=0.5, lr_adam=1.0, eps=-1.0),
    Role.OUTPUT: WidthRule(multiplier=0.5, lr_adam=0.5, eps=-0.5),
    Role.VECTOR: WidthRule(lr_adam=0.5, eps=-0.5),
    Role.FIXED: WidthRule(),
}

# Mean-field (Everett et al. 2024, "MFP"): muP moved by the abc symmetry with
# t = 1/2 on the hidden matrices (a 1/2, b 0, c_sgd -1, c_adam 1/2, e -3/2).
# The same network as muP under SGD, and under Adam or AdamW while epsilon
# follows the gradient (the ``gradient`` epsilon rule); with a constant epsilon
# the two differ, and Adam-atan2 makes them the same again.
_MF = {
    Role.INPUT: WidthRule(lr_sgd=-1.0, eps=-1.0),
    Role.HIDDEN: WidthRule(multiplier=0.5, lr_sgd=-1.0, lr_adam=0.5, eps=-1.5, lr_muon=-0.5),
    Role.OUTPUT: WidthRule(multiplier=1.0, lr_sgd=-1.0, eps=-1.0),
    Role.VECTOR: WidthRule(lr_sgd=-1.0, eps=-1.0),
    Role.FIXED: WidthRule(),
}

# u-muP (Blake et al. 2024, section 4, as the unit-scaling package 0.3.5 implements it):
# every weight starts at std 1; a linear map scales its output by fan_in**-1/2 (input and
# hidden matrices, ``unit_scaling.functional.linear``) and the readout by fan_in**-1
# (``linear_readout``); an embedding lookup is not scaled. Adam's LR is fan_in**-1/2 on
# matrices (``optim.lr_scale_func_adam``), width**-1/2 on embeddings (section 4, "A new
# embedding LR rule", offered without theory) and 1 on the readout, biases and norm gains.
# In m these are mean-field's exponents (``_MF``) up to constants, so the effective init and
# Adam LR scale as muP's on every tensor but the embedding, and the stored tensors'
# gradients scale as mean-field's (its epsilon exponents). The package defines its SGD rule
# on its own unit-scaled gradients (``scale_bwd``), not on the true gradient that the
# toolkit's SGD follows, and no Muon rule: both are left undefined (None).
_UMUP = {
    Role.INPUT: WidthRule(multiplier=0.5, lr_adam=0.5, eps=-1.0, lr_sgd=None, lr_muon=None,
                          unit=True),
    Role.HIDDEN: WidthRule(multiplier=0.5, lr_adam=0.5, eps=-1.5, lr_sgd=None, lr_muon=None,
                           unit=True),
    Role.OUTPUT: WidthRule(multiplier=1.0, eps=-1.0, lr_sgd=None, lr_muon=None, unit=True),
    Role.VECTOR: WidthRule(eps=-1.0, lr_sgd=None, lr_muon=None, unit=True),
    Role.FIXED: WidthRule(lr_sgd=None, lr_muon=None, unit=True),
}  # fmt: skip


def _everett(name: str, alignment: str) -> dict[Role, WidthRule]:
    """A row of Everett et al.'s Table 1 as width rules (:func:`everett_exponents`)."""
    exponents = everett_exponents(name, alignment)
    return {role: WidthRule(**exponents[role.value]) for role in Role}


WIDTH_RULES: dict[str, dict[Role, WidthRule]] = {
    "sp": _SP,
    "mup": _MUP,
    "ntk": _NTK_LAZY,
    "mf": _MF,
    "u-mup": _UMUP,
    **{name: _everett(name, "full") for name in EVERETT_PARAMETRIZATIONS},
}
"""Width rules by parametrization name; a new parametrization is a new entry.
``ntk`` is the lazy NTK (the name old stores hold); ``sp-everett``, ``ntk-everett``,
``mup-everett`` and ``mf-everett`` are the rows of Everett et al. 2024's Table 1 under full
alignment (:mod:`toolkit.engine.everett`): their per-layer LR exponents for Adam and SGD.
``mf-everett`` is the same rule as ``mf``, ``mup-everett`` the same network as ``mup``
under the abc symmetry. ``u-mup`` is the unit-scaled muP of Blake et al. 2024."""

UNIT_ACTIVATION_GAINS: dict[str, float] = {
    "relu": math.sqrt(2.0),  # E[relu(z)^2] = 1/2
    "gelu": (1.0 / 3.0 + 1.0 / (2.0 * math.pi * math.sqrt(3.0))) ** -0.5,  # E[z^2 Phi(z)^2]
    "tanh": 0.394294490397841**-0.5,  # E[tanh(z)^2], by quadrature
}
"""``1 / sqrt(E[f(z)^2])`` for ``z ~ N(0, 1)``: the gain that gives each nonlinearity ``f``
a unit-RMS output for a unit-Gaussian input (He et al. 2015's ``sqrt(2)`` for ReLU), so a
following zero-mean linear map, which keeps the RMS, sees unit-RMS inputs. u-muP scales
every op to unit output (Blake et al. 2024, sections 2 and 4); the unit-scaling package's
GELU targets the output's standard deviation with an empirical model (a gain of 1.77 at
``mult = 1``, ``unit_scaling.functional.gelu``) and it has no ReLU or tanh."""

ACTIVATION_GAINS: dict[str, dict[str, float]] = {"u-mup": UNIT_ACTIVATION_GAINS}
"""Gains of the nonlinearities by parametrization (absent: 1, the plain function)."""

WIDTH_RULES_BY_ALIGNMENT: dict[str, dict[str, dict[Role, WidthRule]]] = {
    "full": WIDTH_RULES,
    "none": {name: _everett(name, "none") for name in EVERETT_PARAMETRIZATIONS},
}
"""Width rules by alignment assumption (a :class:`Parametrization`'s ``alignment``) and
name. Only Everett et al.'s rows are derived under an alignment assumption: every rule
is there under ``full`` (the default), only theirs under ``none``, whose LR exponents
assume an update independent of the activations it meets (``dW x`` grows like
``fan_in ** 1/2``, not ``fan_in``)."""

LR_CONSTANTS: dict[Role, str] = {
    Role.INPUT: "lr_input",
    Role.HIDDEN: "lr_hidden",
    Role.OUTPUT: "lr_output",
    Role.VECTOR: "lr_vector",
}
"""The :class:`Parametrization` field whose constant multiplies each role's learning rate
on top of its width rule: Everett et al. 2024 tune such per-layer constants at the base width
and transfer them as they are. A fixed tensor (the readout's bias) has none."""

DEPTH_RULES: dict[str, float | None] = {
    "none": None,
    "depth-mup": 0.5,
    "completep": 1.0,
}
"""Named depth rules and their branch exponent ``alpha`` (``None``: no scaling)."""

EPSILON_RULES = ("gradient", "constant")
"""How Adam's epsilon scales (Everett et al. 2024, section 4): ``gradient`` follows the
size of the stored tensor's gradient (``eps * m**e``, times ``mL**-alpha`` in a block),
so epsilon never swamps it; ``constant`` keeps the base value on every tensor. Adam-atan2
has no epsilon, so neither rule changes it."""

WEIGHT_DECAY_SCALINGS = ("none", "coupled", "sqrt_width", "fan")
"""How weight decay scales with width; each rule fixes the *per-step* decay ``d`` of a
tensor: ``lr * wd`` (times the schedule) when the decay is coupled to the LR, ``wd`` when it
is independent (Wortsman et al. 2024, "Small-scale proxies for large-scale Transformer
training instabilities").

* ``none``: ``wd`` unscaled (``d`` follows the LR multiplier when coupled);
* ``coupled``: ``d`` width-independent on every tensor (``mup``'s ``MuAdamW``/``MuSGD``);
* ``sqrt_width``: hidden matrices' ``wd`` times ``m**1/2`` whatever their LR: Fan et al.'s
  rule only for muP with coupled Adam-like decay (kept as the stores made with it know it);
* ``fan``: Fan et al. 2025 ("Robust layerwise scaling rules by proper weight decay
  tuning"): ``d ∝ m**-1/2`` on hidden matrices for every parametrization and optimizer,
  vector and fixed tensors undecayed, input and output matrices width-independent ``d``.
"""

WEIGHT_DECAY_EXCLUSIONS = ("none", "gains", "vectors")
"""Tensors kept out of weight decay: ``gains`` (norm gains), ``vectors`` (every vector and
fixed tensor: biases and gains), or ``none``."""

OPTIMIZER_FAMILIES: dict[str, str] = {
    "sgd": "sgd",
    "adam": "adam",
    "adamw": "adam",
    "adam-atan2": "adam",
    "muon": "muon",
}
"""Which LR exponents an optimizer uses: SGD-like (update ~ gradient), Adam-like (update
invariant to the gradient's scale) or Muon (Adam-like, hidden matrices by ``lr_muon``)."""

WITHOUT_EPSILON = ("sgd", "adam-atan2")
"""Optimizers with no epsilon (Adam-atan2 is Adam with it removed)."""

MUON_SCALINGS: dict[str, Callable[[int, int], float]] = {
    "fan_ratio": lambda fan_in, fan_out: math.sqrt(fan_out / fan_in),
    "max_fan_ratio": lambda fan_in, fan_out: math.sqrt(max(1.0, fan_out / fan_in)),
    "adamw_rms": lambda fan_in, fan_out: 0.2 * math.sqrt(max(fan_in, fan_out)),
    "spectral": lambda fan_in, fan_out: math.sqrt(fan_out / fan_in),
}
"""Muon's update scale ``s`` of a hidden matrix, ``W <- W - lr s O(U)``, by name:

* ``fan_ratio``: ``sqrt(fan_out / fan_in)``, the spectral condition for feature learning
  (Yang, Simon & Bernstein 2023), up to the Newton–Schulz iteration's spread;
* ``max_fan_ratio``: ``max(1, fan_out / fan_in) ** 1/2`` (Jordan et al. 2024's implementation);
* ``adamw_rms``: ``0.2 sqrt(max(fan_in, fan_out))``, which gives the update an RMS of
  ``0.2 lr``, AdamW's typical update RMS (Liu et al. 2025, "Muon is scalable for LLM
  training", Moonlight);
* ``spectral``: ``sqrt(fan_out / fan_in)`` with the orthogonalised update first divided by
  its measured spectral norm, so the step's spectral norm is exactly ``lr sqrt(fan_out /
  fan_in)`` whatever the iteration leaves (Bernstein & Newhouse 2024, "Modular duality").
"""

MUON_NORMALISED = ("spectral",)
"""Scalings that divide the orthogonalised update by its spectral norm first."""

ATTENTION_EXPONENTS: dict[str, float] = {
    "sp": 0.5,
    "mup": 1.0,
    "ntk": 0.5,
    "mf": 1.0,
    "u-mup": 1.0,
    "sp-everett": 0.5,
    "ntk-everett": 0.5,
    "mup-everett": 1.0,
    "mf-everett": 1.0,
}
"""Exponent ``e`` of the attention-logit scale ``attn_alpha / sqrt(d0) * (d0 / d_head) ** e``
(``d0``: the base head dimension), which equals SP's ``attn_alpha / sqrt(d_head)`` at the
base shape. ``e = 1`` is muP's ``1 / d_head`` (Tensor Programs V, section 6 and appendix
J.2.1: queries and keys become correlated during training, so ``q.k`` grows like
``d_head``); mean-field shares it through the abc symmetry, SP and NTK keep ``1/2``; each
of Everett et al.'s rows takes its class's (their Table 1 has no attention exponent).
u-muP's is ``1/d_head`` too (the unit-scaling package's ``scaled_dot_product_attention``
uses ``mult / d_head``, ours with ``attn_alpha = mult / sqrt(d0)``)."""
