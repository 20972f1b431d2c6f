"""Everett et al.'s per-layer learning-rate exponents, as data.

Everett et al. 2024, "Scaling exponents across parameterizations and optimizers"
(ICML 2024, arXiv:2407.05872), Table 1, write four parametrizations in the
abc-form of their section 2, for width ``n``: a layer's weight is ``W = n**-a w``,
its stored values start at ``w ~ N(0, n**-2b)`` and train with learning rate
``eta n**-c``. The embedding (first layer, fan-in fixed), the hidden layers and the
readout each have their own ``a, b`` (:data:`ABC`), and each optimizer its own
``c``, under two assumptions on how an update lines up with the activations it
meets (:data:`LR_EXPONENTS`):

* ``full``: an update ``dW`` is as aligned with its layer's input ``x`` as it can be,
  so ``dW x`` sums ``fan_in`` terms of one sign and grows like ``fan_in``;
* ``none``: ``dW`` and ``x`` are independent, so ``dW x`` grows like ``fan_in ** 1/2``.

The exponents ``c`` make every hidden feature move by ``O(1)`` per step under the
assumption, with the logits' change at most ``O(1)``: the Adam updates (size
``eta n**-c`` per stored entry, ``eta n**-(a + c)`` on ``W``) need ``a + c = 0`` on
the embedding and ``a + c = 1`` (full) or ``1/2`` (none) on hidden layers and the
readout. SGD's updates (``eta n**-(2a + c)`` times the gradient on ``W``) follow the
gradient, which carries the readout's ``n**-r``, ``r = a + b`` of the readout, into every
layer below it: ``2a + c = -r`` on the embedding, ``1 - r`` or ``1/2 - r`` on hidden
layers, and on the readout ``max(1, r)`` or ``max(1/2, r)``, so that its entries never
outgrow their init. ``tests/engine/test_everett.py`` derives every row this way. The paper
tabulates Adafactor too, which the toolkit does not have.

Width enters the toolkit through ``m = n / n0`` (every parametrization equals SP at
the base width ``n0``), so the table's exponents are those of
:class:`toolkit.engine.rules.WidthRule` as they stand. :func:`everett_exponents`
turns a row into the toolkit's five roles; what the table leaves open is derived,
and said so there.
"""

from __future__ import annotations

ALIGNMENTS = ("full", "none")
"""The alignment assumptions of Everett et al.'s Table 1 (module docstring)."""

LAYERS = ("input", "hidden", "output")
"""The table's embedding, hidden and readout layers, by the toolkit's role names."""

# fmt: off
ABC: dict[str, tuple[tuple[float, float], ...]] = {
    #          embedding      hidden       readout        (a, b) of each, Table 1
    "sp":  ((0.0, 0.0),  (0.0, 0.5), (0.0, 0.5)),
    "ntk": ((0.0, 0.0),  (0.5, 0.0), (0.5, 0.0)),
    "mup": ((-0.5, 0.5), (0.0, 0.5), (0.5, 0.5)),
    "mf":  ((0.0, 0.0),  (0.5, 0.0), (1.0, 0.0)),
}
"""Forward multiplier ``a`` and init ``b`` exponents of each layer (Table 1; ``mf`` is the
paper's mean-field parametrization MFP). muP is the paper's form: embedding multiplier
``n**1/2`` with init ``n**-1/2``, readout ``n**-1/2`` on both; the abc symmetry maps it onto
the ``mup`` package's form (:data:`toolkit.engine.rules.WIDTH_RULES` ``["mup"]``)."""

LR_EXPONENTS: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    # (optimizer family, alignment): {parametrization: c of embedding, hidden, readout}
    ("adam", "full"): {"sp": (0.0, 1.0, 1.0),   "ntk": (0.0, 0.5, 0.5),
                       "mup": (0.5, 1.0, 0.5),  "mf": (0.0, 0.5, 0.0)},
    ("adam", "none"): {"sp": (0.0, 0.5, 0.5),   "ntk": (0.0, 0.0, 0.0),
                       "mup": (0.5, 0.5, 0.0),  "mf": (0.0, 0.0, -0.5)},
    ("sgd", "full"):  {"sp": (-0.5, 0.5, 1.0),  "ntk": (-0.5, -0.5, 0.0),
                       "mup": (0.0, 0.0, 0.0),  "mf": (-1.0, -1.0, -1.0)},
    ("sgd", "none"):  {"sp": (-0.5, 0.0, 0.5),  "ntk": (-0.5, -1.0, -0.5),
                       "mup": (0.0, -0.5, 0.0), "mf": (-1.0, -1.5, -1.0)},
}
"""Learning-rate exponents ``c`` (LR ``eta n**-c``) of the embedding, hidden layers and
readout, per optimizer family and alignment assumption (Table 1)."""
# fmt: on

PARAMETRIZATIONS: dict[str, str] = {f"{name}-everett": name for name in ABC}
"""The toolkit's name of each row (``sp-everett``, ``ntk-everett``, ``mup-everett``,
``mf-everett``) and the table's."""


def everett_exponents(name: str, alignment: str) -> dict[str, dict[str, float]]:
    """The width exponents of parametrization ``name`` (a key of :data:`PARAMETRIZATIONS`)
    under ``alignment``, by role, as the fields of a
    :class:`~toolkit.engine.rules.WidthRule`.

    * ``input``, ``hidden``, ``output``: the table's ``a`` (``multiplier``), ``b``
      (``init``) and ``c`` for SGD (``lr_sgd``) and Adam (``lr_adam``).
    * ``vector`` (biases, norm gains; not in the table): a bias is an embedding weight
      whose input is the constant 1, so a vector takes the embedding's *effective*
      exponents with no forward multiplier (a gain starts at one and must stay one):
      ``a = b = 0``, Adam ``c = a1 + c1``, SGD ``c = 2 a1 + c1``.
    * ``fixed`` (the readout's bias): nothing grows; all zero.
    * ``eps`` (the ``gradient`` epsilon rule): the exponent of the stored tensor's gradient at
      initialisation. The readout's ``n**-r``, ``r = a + b`` of the readout, reaches every
      layer below it, so a stored weight's gradient is ``n**-(a + r)`` on the embedding,
      hidden layers and vectors (``a = 0``), ``n**-a`` on the readout, ``O(1)`` on the
      fixed bias.
    * ``lr_muon`` (hidden matrices under Muon, whose own scaling sets the update of the
      effective matrix): ``-a``, undoing the forward multiplier, under either alignment.
    """
    ab, table = ABC[PARAMETRIZATIONS[name]], PARAMETRIZATIONS[name]
    adam = LR_EXPONENTS["adam", alignment][table]
    sgd = LR_EXPONENTS["sgd", alignment][table]
    r = sum(ab[2])
    rules = {}
    for i, role in enumerate(LAYERS):
        a, b = ab[i]
        rules[role] = {
            "multiplier": a,
            "init": b,
            "lr_sgd": sgd[i],
            "lr_adam": adam[i],
            "eps": -a if role == "output" else -(a + r),
            "lr_muon": -a if role == "hidden" else 0.0,
        }
    a1 = ab[0][0]
    rules["vector"] = {"multiplier": 0.0, "init": 0.0, "lr_sgd": 2 * a1 + sgd[0],
                       "lr_adam": a1 + adam[0], "eps": -r, "lr_muon": 0.0}  # fmt: skip
    rules["fixed"] = dict.fromkeys(rules["vector"], 0.0)
    return {role: {k: v + 0.0 for k, v in row.items()} for role, row in rules.items()}  # no -0.0
