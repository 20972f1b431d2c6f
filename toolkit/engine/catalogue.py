"""Every named choice a run makes, as data that loads without torch.

A run picks a model, a task, a nonlinearity, an optimizer, an LR schedule, the probes
it records and (in an intrinsic-dimension study) a projection, each by name. This
module holds those names and what is known about each choice without building it:
a task's shape, whether a model reads token sequences, the options a model takes.
:class:`~toolkit.engine.config.TrainConfig`, the sweep schema and the command line
check a request against these tables, so a mistake, or a sweep too large for the
machine, is refused before torch is imported.

The modules that implement the choices key their registries by the same names
(:data:`toolkit.engine.models.MODEL_CLASSES`, :data:`toolkit.engine.layers.ACTIVATION_FUNCTIONS`,
:data:`toolkit.engine.optim.OPTIMIZER_CLASSES`, :data:`toolkit.engine.probes.PROBE_FUNCTIONS`,
:data:`toolkit.engine.projections.PROJECTION_CLASSES`) and check, as they are imported,
that they implement exactly these names (:func:`check_registry`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TEACHER_D_IN = 32
TEACHER_HIDDEN = 64
TEACHER_D_OUT = 1

TASK_SHAPES: dict[str, tuple[int, int]] = {
    "mnist1d": (40, 10),
    "digits": (64, 10),
    "teacher": (TEACHER_D_IN, TEACHER_D_OUT),
    "chars": (64, 94),
}
"""``(d_in, d_out)`` of each task (:mod:`toolkit.engine.data`), known without loading it
(for sizing a sweep before anything is loaded): MNIST-1D's 40 samples and 10 classes,
the 8x8 digits, the teacher's shape, and the character task's context length and
alphabet (of the committed corpus). ``tests/engine/test_data.py`` checks each against
the loaded task."""

TASKS: tuple[str, ...] = tuple(TASK_SHAPES)
"""Task names, in the order the documentation lists them."""

LANGUAGE_TASKS: tuple[str, ...] = ("chars",)
"""Tasks whose inputs are token sequences (for models that read tokens)."""

ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh")
"""Hidden nonlinearities."""

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw", "adam-atan2", "muon")
"""Optimizers (:mod:`toolkit.engine.optim`)."""

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")
"""Learning-rate schedules (:func:`toolkit.engine.config.lr_factor`)."""

PROBES: tuple[str, ...] = ("activations", "spectra", "sharpness", "alignment")
"""Probes a run can record while it trains (:mod:`toolkit.engine.probes`)."""

PROJECTIONS: tuple[str, ...] = ("dense", "sparse", "fastfood")
"""Random projections of an intrinsic-dimension subspace (:mod:`toolkit.engine.projections`)."""


@dataclass(frozen=True)
class MLPOptions:
    """Options of an MLP: the nonlinearity and whether linear maps have biases."""

    activation: str = "relu"
    bias: bool = True


@dataclass(frozen=True)
class ResidualMLPOptions(MLPOptions):
    """Options of a residual MLP: those of the MLP, and a LayerNorm before each block."""

    prenorm: bool = True


@dataclass(frozen=True)
class TransformerOptions:
    """Options of the Transformer: nonlinearity, biases, head dimension, tied readout."""

    activation: str = "relu"
    bias: bool = True
    head_dim: int = 16
    tie_embeddings: bool = False
    heads: int | None = None
    base_head_dim: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """What is known about a model without building it.

    ``options``: the frozen dataclass of its constructor arguments that are
    :class:`~toolkit.engine.config.TrainConfig` fields of the same names;
    ``reads_tokens``: its input is token ids (a language task) rather than features;
    ``own_settings``: settings only its runs record (so other models' run ids do not
    depend on them).
    """

    options: type
    reads_tokens: bool = False
    own_settings: tuple[str, ...] = ()


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(MLPOptions),
    "resmlp": ModelEntry(ResidualMLPOptions),
    "transformer": ModelEntry(
        TransformerOptions,
        reads_tokens=True,
        own_settings=(
            "head_dim",
            "tie_embeddings",
            "attn_alpha",
            "query_zero_init",
            "heads",
            "base_head_dim",
        ),  # fmt: skip
    ),
}
"""Models by the name used in configs and on the command line."""


def check_registry(what: str, implemented: Iterable[str], names: Iterable[str]) -> None:
    """Raise ``RuntimeError`` (a bug) unless ``implemented`` are exactly ``names``."""
    implemented, names = set(implemented), set(names)
    if implemented != names:
        raise RuntimeError(
            f"{what}: the implementation has {sorted(implemented)}, the catalogue {sorted(names)}"
        )
