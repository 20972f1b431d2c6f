"""What one intrinsic-dimension measurement is: frozen settings, validated once.

A :class:`Measurement` names everything that changes a measurement's numbers:
the model and its training budget (shared by the full-training baseline and the
subspace runs), the projection, the seeds, both learning-rate grids and the
search over ``d`` (:class:`DSearch`). Its :attr:`Measurement.id` is derived from
all of them, so a changed grid is a new measurement and a stored one is found
again on resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from toolkit.analysis.intrinsic import check_threshold
from toolkit.engine.catalogue import PROJECTIONS, TASKS
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig
from toolkit.errors import InputError, check_choice, check_positive

DEFAULT_SUBSPACE_LRS = (2.0**-10, 2.0**-8, 2.0**-6, 2.0**-4, 2.0**-2)
"""Full-training-equivalent LRs tried for ``theta_d`` (see
:func:`toolkit.studies.intrinsic_search.subspace_measure`): in the shipped
measurements, tuned on ``2^-8, 2^-6, 2^-4``, the best was at either end for 38% of
the ``d`` (29% at ``2^-8``, 9% at ``2^-4``), so the grid goes one step beyond each."""

DEFAULT_LRS = (2.0**-9, 2.0**-7, 2.0**-5)
"""Adam LRs tried for the full-parameter baseline."""

GRID_STOP = 2**14
"""Largest ``d`` of the default first grid (:meth:`DSearch.first_grid`)."""


def _numbers(argument: str, values: Sequence[float], *, integer: bool = False) -> tuple:
    """``values`` as a tuple, each a positive number (integer), at least one."""
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise InputError(f"{argument}={values!r} must be a non-empty list of positive numbers")
    for value in values:
        check_positive(argument[:-1] if argument.endswith("s") else argument, value,
                       integer=integer)  # fmt: skip
    return tuple(int(v) if integer else float(v) for v in values)


def log_grid(D: int, *, start: int = 4, stop: int | None = None) -> list[int]:
    """Powers of two from ``start`` below ``min(D, stop)``, then ``min(D, stop)`` itself."""
    top = D if stop is None else min(D, stop)
    grid = []
    d = start
    while d < top:
        grid.append(d)
        d *= 2
    return [*grid, top]


@dataclass(frozen=True)
class DSearch:
    """How ``d`` is searched: a first grid, then rounds of refinement near the threshold.

    Each round measures up to ``points`` log-spaced integers strictly between
    the largest failing ``d`` below the current estimate and the estimate
    (``points=1`` is bisection). ``grid=None`` is :func:`log_grid` up to
    ``min(D, GRID_STOP)``. ``confidence`` sets the interval
    (:func:`toolkit.analysis.intrinsic.estimate_intrinsic_dim`).
    """

    grid: tuple[int, ...] | None = None
    threshold: float = 0.9
    rounds: int = 3
    points: int = 3
    confidence: float = 0.9

    def __post_init__(self) -> None:
        if self.grid is not None:
            grid = _numbers("d", self.grid, integer=True)
            object.__setattr__(self, "grid", tuple(sorted(set(grid))))
        check_threshold(self.threshold)
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 0:
            raise InputError(f"rounds={self.rounds!r} must be a non-negative integer")
        check_positive("points", self.points, integer=True)
        if not 0.0 < self.confidence < 1.0:
            raise InputError(f"confidence={self.confidence!r} must be in (0, 1)")

    def first_grid(self, D: int) -> list[int]:
        """The ``d`` measured before any refinement, for a model of ``D`` parameters."""
        return log_grid(D, stop=GRID_STOP) if self.grid is None else list(self.grid)


@dataclass(frozen=True)
class Measurement:
    """One ``d_int`` measurement: a model shape, its training budget and the d-search.

    ``base_width`` defaults to ``width``; ``seeds`` is a count (``0 .. seeds-1``);
    ``lrs`` is the baseline's LR grid and ``subspace_lrs`` the one of ``theta_d``;
    ``eval_examples`` validation examples score every run; ``max_members``
    bounds an ensemble of subspace runs (it does not change the numbers).
    """

    model: str = "mlp"
    task: str = "digits"
    parametrization: str = "sp"
    base_width: int | None = None
    optimizer: str = "adam"
    width: int = 64
    depth: int = 2
    steps: int = 300
    batch_size: int = 128
    projection: str = "fastfood"
    seeds: int = 3
    lrs: tuple[float, ...] = DEFAULT_LRS
    subspace_lrs: tuple[float, ...] = DEFAULT_SUBSPACE_LRS
    eval_examples: int = 2048
    search: DSearch = field(default_factory=DSearch)
    max_members: int = 64

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("projection", self.projection, PROJECTIONS)
        if self.base_width is None:
            object.__setattr__(self, "base_width", self.width)
        object.__setattr__(self, "lrs", _numbers("lrs", self.lrs))
        object.__setattr__(self, "subspace_lrs", _numbers("subspace_lrs", self.subspace_lrs))
        for argument in ("seeds", "max_members"):
            check_positive(argument, getattr(self, argument), integer=True)
        if not isinstance(self.search, DSearch):
            raise InputError(f"search={self.search!r} must be a DSearch")
        self.config()  # the model, task, parametrization and budget, checked by the engine

    def config(self) -> TrainConfig:
        """The training settings shared by the baseline and the subspace runs."""
        return TrainConfig(
            model=self.model,
            task=self.task,
            parametrization=Parametrization(self.parametrization, base_width=self.base_width),
            optimizer=self.optimizer,
            width=self.width,
            depth=self.depth,
            steps=self.steps,
            batch_size=self.batch_size,
            eval_every=self.steps,
            eval_examples=self.eval_examples,
        )

    def settings(self) -> dict:
        """The columns that name the measurement in a table
        (:data:`toolkit.analysis.intrinsic.SETTINGS`)."""
        return {
            "model": self.model,
            "task": self.task,
            "parametrization": self.parametrization,
            "base_width": self.base_width,
            "optimizer": self.optimizer,
            "projection": self.projection,
            "width": self.width,
            "depth": self.depth,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seeds": self.seeds,
        }

    def identity(self) -> dict:
        """Every setting that changes the stored numbers (not the interval's
        ``confidence``, not ``max_members``)."""
        search = asdict(self.search)
        del search["confidence"]
        return {
            **self.settings(),
            "lrs": list(self.lrs),
            "subspace_lrs": list(self.subspace_lrs),
            "eval_examples": self.eval_examples,
            **search,
        }

    @property
    def id(self) -> str:
        """A readable stem and a hash of :meth:`identity`: ``digits-sp-fastfood-w64-d2-<hash>``."""
        text = json.dumps(self.identity(), sort_keys=True)
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        stem = f"{self.task}-{self.parametrization}-{self.projection}"
        return f"{stem}-w{self.width}-d{self.depth}-{digest}"

    def describe(self) -> str:
        """One line naming the measurement, for progress messages."""
        return (
            f"{self.task} {self.parametrization} {self.projection} width {self.width} "
            f"depth {self.depth}"
        )
