"""What a claim of the claims card is measured as, and where it is read from.

A :class:`Measurement` is one claim's number with its interval, the interval's level, the
unit and the method; :meth:`Measurement.absent` is a claim the stores cannot answer, with
the reason. :class:`Stores` reads the result stores under one directory, each table once,
and keeps analyses several claims share. :func:`largest` and :func:`magnitude` give the
number and interval of a claim about every layer (or width) at once: the largest per-row
value and the *envelope* of the per-row intervals. If each row's interval covers its row's
true value, the envelope covers the largest true value; each row's interval has the stated
level, and the envelope's simultaneous coverage can be lower, which the method says.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from toolkit import store as results
from toolkit.analysis import spectra
from toolkit.paths import DATA

LEVEL = 0.95
"""Level of every interval the card computes itself (drifts, exponents, differences)."""

EXACT = 1.0
"""The ``level`` of a number without sampling error (the same runs compared): its interval
is the number itself."""


@dataclass(frozen=True)
class Measurement:
    """One claim's number: ``value`` with the interval ``[lo, hi]`` at ``level`` (NaN where
    there is none), in ``unit``, computed as ``method`` says; ``note`` adds what the
    reason should quote (points used, censored optima, seeds); ``missing`` is why there
    is no number (then ``value`` is NaN)."""

    value: float
    lo: float
    hi: float
    level: float
    unit: str
    method: str
    note: str = ""
    missing: str | None = None

    @classmethod
    def absent(cls, reason: str, *, unit: str, method: str) -> Measurement:
        """No number: the stores cannot answer, for ``reason``."""
        nan = math.nan
        return cls(nan, nan, nan, nan, unit, method, missing=reason)


class Stores:
    """The result stores under ``root`` (default: the shipped ``data/``), each table read
    once, and analyses several claims share computed once (:meth:`shared`).
    ``has(name)`` tells whether ``root/name`` is a store."""

    def __init__(self, root: str | Path = DATA) -> None:
        self.root = Path(root)
        self._runs: dict[str, pl.DataFrame] = {}
        self._probes: dict[str, pl.DataFrame] = {}
        self._shared: dict[tuple, pl.DataFrame] = {}

    def shared(self, key: tuple, compute: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        """``compute()``, computed the first time ``key`` is asked for and kept."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def has(self, name: str) -> bool:
        """Whether ``root/name/store.json`` exists."""
        return (self.root / name / "store.json").exists()

    def runs(self, name: str) -> pl.DataFrame:
        """The runs table of store ``name``."""
        if name not in self._runs:
            self._runs[name] = results.open(self.root / name).runs().collect()
        return self._runs[name]

    def probes(self, name: str) -> pl.DataFrame:
        """Store ``name``'s probe rows with their runs' settings
        (:func:`toolkit.analysis.spectra.with_settings`)."""
        if name not in self._probes:
            rows = results.open(self.root / name).probes().collect()
            self._probes[name] = spectra.with_settings(rows, self.runs(name))
        return self._probes[name]


def largest(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[float, float, float]:
    """The largest of ``values`` with the envelope interval ``[max(lo), max(hi)]``: it
    covers the largest true value whenever every ``[lo_i, hi_i]`` covers its own."""
    i = int(np.argmax(values))
    return float(values[i]), float(np.max(lo)), float(np.max(hi))


def magnitude(
    value: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|value|`` with the interval of ``|x|`` for ``x`` in ``[lo, hi]``: from 0 (when the
    interval holds 0) or the nearer end's magnitude, to the farther end's."""
    straddles = (lo <= 0) & (hi >= 0)
    near = np.where(straddles, 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    return np.abs(value), near, np.maximum(np.abs(lo), np.abs(hi))
