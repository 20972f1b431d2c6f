"""The published claims the toolkit checks, as data: one :class:`Claim` per row of the card.

Each claim names its measure (:mod:`toolkit.analysis.claim_measures`), the store it reads,
its expected direction (``expect``) and its tolerance; :func:`toolkit.analysis.claims.judge`
turns a measurement's interval into a verdict by the same rule for every claim:

* ``near``: the claim holds when the whole interval lies in ``target ± tolerance``;
* ``below`` / ``above``: when it lies below ``target - tolerance`` / above
  ``target + tolerance`` (the tolerance is how far from the target counts as a move);
* ``covers``: when the interval contains ``target`` (a prediction interval that must
  cover the observation).

It does not hold when the interval lies wholly outside that band (or, for ``covers``,
misses the target), and the card cannot tell when the interval straddles the band's edge.

Tolerances for drifts are "one grid step over the study's range": the shipped LR grids
step by one octave, so an optimum that moves less than ``1 / doublings`` octaves per
doubling stays within one grid step from the smallest size to the largest (widths 64-1024:
4 doublings, 0.25; depths 2-16: 3 doublings, 1/3; the Transformer's widths 32-128 and depths
1-4: 0.5; batch sizes 32-512: 0.25).

Sources name the paper and year; a section, table or figure is given only where the
project's reference notes support it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from toolkit.analysis import claim_measures as measures
from toolkit.analysis.coord_check import TOLERANCE as COORD_TOLERANCE
from toolkit.analysis.spectra import DECAY_OBJECTIVE

EXPECTATIONS = ("near", "below", "above", "covers")
"""The directions a claim can expect (see the module docstring)."""


@dataclass(frozen=True)
class Claim:
    """One published claim and how the card checks it.

    ``id`` is kebab-case; ``claim`` one sentence; ``source`` the paper and year;
    ``store`` the shipped store the measure reads (``None``: no store holds it);
    ``measure`` maps :class:`~toolkit.analysis.claim_measures.Stores` to a
    :class:`~toolkit.analysis.claim_measures.Measurement`; ``expect``, ``target`` and
    ``tolerance`` the rule the measurement's interval is judged by.
    """

    id: str
    claim: str
    source: str
    store: str | None
    measure: Callable[[measures.Stores], measures.Measurement]
    expect: str
    target: float
    tolerance: float

    def __post_init__(self) -> None:
        if self.expect not in EXPECTATIONS:
            raise ValueError(f"expect={self.expect!r}; allowed: {EXPECTATIONS}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance={self.tolerance!r} must be >= 0")


_TP5 = "Yang et al. 2021, Tensor Programs V"
_WIDTH_STEP = 0.25  # one octave over widths 64-1024 (4 doublings)
_TRANSFORMER_STEP = 0.5  # one octave over the Transformer's widths 32-128 or depths 1-4
_BATCH_STEP = 0.25  # one octave over batch sizes 32-512 (4 doublings)
_DEPTH_STEP = 1 / 3  # one octave over depths 2-16 (3 doublings)
_D_INT_FLAT = 0.1  # Li et al.: d_int90 within 575-775 while D grew 24x: |k| <= log(775/575)/log(24)
_SIGMA_RULES = 0.125  # half the gap to the other rules' predicted exponents (+-0.25)
_PROJECTIONS = 0.5  # half an octave: d_int within a factor sqrt(2)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "mup-equals-sp-at-base-width",
        "muP equals standard parametrization at the base width: the same runs give the same "
        "losses.",
        f"{_TP5}; the mup package", "width_transfer", measures.sp_equals_mup_at_base,
        "near", 0.0, 1e-6,
    ),
    Claim(
        "coord-check-flat-under-mup",
        "Under muP no layer's activation size changes with width (the readout's may shrink).",
        f"{_TP5} (coordinate check, as in the mup package)", measures.COORD_CHECK_STORE,
        measures.coord_check_flat, "near", 0.0, COORD_TOLERANCE,
    ),
    Claim(
        "coord-check-grows-under-sp",
        "Under standard parametrization with Adam the hidden activations grow with width.",
        f"{_TP5} (coordinate check, as in the mup package)", measures.COORD_CHECK_STORE,
        measures.coord_check_grows, "above", 0.0, COORD_TOLERANCE,
    ),
    Claim(
        "sp-optimal-lr-drifts-down",
        "Under standard parametrization with Adam the optimal learning rate falls as the "
        "MLP widens.",
        _TP5, "width_transfer",
        partial(measures.optimum_drift, store="width_transfer", axis="width",
                where={"parametrization": "sp", "optimizer": "adam"}),
        "below", 0.0, _WIDTH_STEP,
    ),  # fmt: skip
    Claim(
        "mup-optimal-lr-stays",
        "Under muP with Adam the optimal learning rate stays put as the MLP widens.",
        _TP5, "width_transfer",
        partial(measures.optimum_drift, store="width_transfer", axis="width",
                where={"parametrization": "mup", "optimizer": "adam"}),
        "near", 0.0, _WIDTH_STEP,
    ),  # fmt: skip
    Claim(
        "mup-drifts-less-than-sp",
        "With Adam the optimal learning rate moves less across width under muP than under "
        "standard parametrization.",
        _TP5, "width_transfer",
        partial(measures.drift_gap, store="width_transfer", axis="width",
                where={"parametrization": "mup", "optimizer": "adam"},
                than={"parametrization": "sp", "optimizer": "adam"}),
        "below", 0.0, 0.0,
    ),  # fmt: skip
    Claim(
        "wider-is-better-under-mup",
        "Under muP the loss at the transferred learning rate falls with every increase in "
        "width.",
        _TP5, "width_transfer", measures.loss_change_with_width, "below", 0.0, 0.0,
    ),
    Claim(
        "widest-loss-predicted",
        "Under muP the loss of the widest model is predicted by a power law fitted on the "
        "narrower ones.",
        "Yao et al. 2023 (mu-scaling)", "width_transfer", measures.loss_prediction,
        "covers", 0.0, 0.0,
    ),
    Claim(
        "depth-mup-keeps-optimum",
        "With depth-muP residual scaling the optimal learning rate stays put as the residual "
        "MLP deepens.",
        "Yang et al. 2023, Tensor Programs VI; Bordelon et al. 2023", "depth_transfer",
        partial(measures.optimum_drift, store="depth_transfer", axis="depth",
                where={"depth_rule": "depth-mup"}),
        "near", 0.0, _DEPTH_STEP,
    ),  # fmt: skip
    Claim(
        "completep-keeps-optimum",
        "With CompleteP residual scaling the optimal learning rate stays put as the residual "
        "MLP deepens.",
        "CompleteP, 2025", "depth_transfer",
        partial(measures.optimum_drift, store="depth_transfer", axis="depth",
                where={"depth_rule": "completep"}),
        "near", 0.0, _DEPTH_STEP,
    ),  # fmt: skip
    Claim(
        "no-depth-scaling-drifts",
        "Without depth scaling the optimal learning rate falls as the residual MLP deepens.",
        "Yang et al. 2023, Tensor Programs VI; Bordelon et al. 2023", "depth_transfer",
        partial(measures.optimum_drift, store="depth_transfer", axis="depth",
                where={"depth_rule": "none"}),
        "below", 0.0, _DEPTH_STEP,
    ),  # fmt: skip
    Claim(
        "optimal-lr-falls-with-horizon",
        "The optimal learning rate falls as the training horizon grows, also under muP.",
        "Bjorck et al. 2024", "horizon",
        partial(measures.optimum_drift, store="horizon", axis="steps",
                where={"parametrization": "mup"}),
        "below", 0.0, 0.0,
    ),  # fmt: skip
    Claim(
        "adamw-timescale-constant-across-batch-size",
        "At a fixed number of training examples the optimal AdamW weight decay grows in "
        "proportion to the batch size, keeping the timescale B / (lr wd D) constant.",
        "Bergsma et al. 2025 (Power Lines); Wang & Aitchison 2024", "batch_size",
        partial(measures.optimum_drift, store="batch_size", axis="batch_size",
                where={"optimizer": "adamw"}, x="weight_decay", loss=DECAY_OBJECTIVE),
        "near", 1.0, _BATCH_STEP,
    ),  # fmt: skip
    Claim(
        "transformer-mup-optimal-lr-stays",
        "Under muP with Adam the optimal learning rate of a small Transformer stays put as it "
        "widens.",
        _TP5, "transformer_transfer",
        partial(measures.optimum_drift, store="transformer_transfer", axis="width",
                where={"parametrization": "mup", "optimizer": "adam"}),
        "near", 0.0, _TRANSFORMER_STEP,
    ),  # fmt: skip
    Claim(
        "transformer-muon-optimal-lr-stays",
        "Under muP with Muon, whose hidden-matrix update has spectral norm lr * sqrt(fan_out / "
        "fan_in), the optimal learning rate of a small Transformer stays put as it widens.",
        "Yang, Simon & Bernstein 2023; Jordan et al. 2024 (Muon)", "transformer_transfer",
        partial(measures.optimum_drift, store="transformer_transfer", axis="width",
                where={"parametrization": "mup", "optimizer": "muon"}),
        "near", 0.0, _TRANSFORMER_STEP,
    ),  # fmt: skip
    Claim(
        "transformer-completep-keeps-optimum",
        "With CompleteP residual scaling the optimal learning rate of a small Transformer stays "
        "put as it deepens.",
        "CompleteP, 2025", "transformer_transfer",
        partial(measures.optimum_drift, store="transformer_transfer", axis="depth",
                where={"depth_rule": "completep", "optimizer": "adam"}),
        "near", 0.0, _TRANSFORMER_STEP,
    ),  # fmt: skip
    Claim(
        "spectral-condition-under-mup",
        "Under muP each hidden matrix's spectral norm scales as sqrt(fan_out / fan_in).",
        "Yang, Simon & Bernstein 2023", "spectra", measures.spectral_condition,
        "near", 0.0, COORD_TOLERANCE,
    ),
    Claim(
        "sigma-max-sqrt-lr-over-wd",
        "Under AdamW each matrix's top singular value scales as sqrt(lr / wd) (exponent 0.5 "
        "in lr / wd).",
        "Fan et al. 2025 (abstract)", measures.WEIGHT_DECAY_STORE,
        measures.sigma_max_lr_over_wd,
        "near", 1.0, 0.2,
    ),
    Claim(
        "sqrt-width-decay-flattens-sigma-max",
        "Under muP with AdamW, weight decay growing as sqrt(width) keeps the hidden matrices' "
        "top singular value flat across width.",
        "Fan et al. 2025 (abstract)", measures.WEIGHT_DECAY_STORE,
        measures.sqrt_width_decay_flat,
        "near", 0.0, _SIGMA_RULES,
    ),
    Claim(
        "toy-d-int-is-10",
        "A toy problem with D = 1000 parameters and 10 constraints has intrinsic dimension "
        "exactly 10.",
        "Li et al. 2018", measures.TOY_STORE, measures.toy_problem, "near", 10.0, 0.0,
    ),
    Claim(
        "d-int90-flat-across-width",
        "An MLP's d_int90 stays nearly constant as its width (and parameter count) grows.",
        "Li et al. 2018", "intrinsic_dimension", measures.d_int_flat, "near", 0.0, _D_INT_FLAT,
    ),
    Claim(
        "dense-and-fastfood-agree",
        "Dense and Fastfood random projections give the same intrinsic dimension.",
        "Li et al. 2018", "intrinsic_dimension", measures.projections_agree,
        "near", 0.0, _PROJECTIONS,
    ),
    Claim(
        "sharpness-width-independent-under-mup",
        "Under muP the sharpness (top Hessian eigenvalue) is nearly width-independent.",
        "Noci et al. 2024 (super consistency)", measures.SHARPNESS_STORE,
        measures.sharpness_width_exponent, "near", 0.0, COORD_TOLERANCE,
    ),
)
"""Every claim the card checks, in the order it shows them."""
