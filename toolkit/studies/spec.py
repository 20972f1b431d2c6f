"""Sweep specs: a typed grid over any training setting (:mod:`toolkit.studies.schema`).

A :class:`SweepSpec` holds one checked value per setting of the schema (a tuple for a
grid); :meth:`SweepSpec.configs` crosses the shape grids into training configs and
:meth:`SweepSpec.members` the member grids and seeds into ensemble members. Specs are
read from TOML (:meth:`SweepSpec.from_toml`) or built from command-line flags, both
through the schema; every message of a spec file names the file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolkit.engine.config import MEMBER_MULTIPLIERS, Member, TrainConfig
from toolkit.engine.parametrization import Parametrization
from toolkit.errors import InputError
from toolkit.paths import smoke_mode
from toolkit.studies.kinds import read_toml
from toolkit.studies.schema import (
    SCHEMA,
    SETTINGS,
    SETTINGS_BY_FIELD,
    Axis,
    Setting,
    setting,
)


def _resolve(given: Mapping[str, object]) -> dict[str, object]:
    """Checked values by key from keys or singular names (a grid becomes a tuple)."""
    resolved: dict[str, object] = {}
    for argument, value in given.items():
        s = setting(argument)
        if s.key in resolved:
            raise InputError(f"{argument}={value!r}: {s.key} is given twice (as "
                             f"{s.key} and {s.name}); give one")  # fmt: skip
        if s.is_grid:
            resolved[s.key] = s.values(argument, value)
        elif s.default == ():
            resolved[s.key] = s.values(argument, value) if value != () else ()
        else:
            resolved[s.key] = s.value(argument, value)
    return {s.key: resolved.get(s.key, _as_default(s)) for s in SCHEMA}


def _as_default(s: Setting) -> object:
    if s.is_grid and not isinstance(s.default, tuple):
        return (s.default,)
    return s.default


class SweepSpec:
    """A grid of runs: every combination of the grid settings' values.

    Construct with keys or singular names of :data:`SCHEMA`, e.g.
    ``SweepSpec(task="digits", widths=(16, 32), lrs=(1e-3, 1e-2), output_alpha=2.0)``;
    read a setting by its key (``spec.widths``, ``spec.seeds``). ``extra`` holds
    settings of a study built on sweeps (see :meth:`from_toml`). Immutable; compare
    and hash by value.
    """

    __slots__ = ("_values", "extra")

    def __init__(self, *, extra: Mapping[str, object] | None = None, **settings: object) -> None:
        values = _resolve(settings)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "extra", dict(extra or {}))
        warmup, steps = max(values["warmup_steps"]), min(values["steps"])
        if warmup > steps:
            raise InputError(f"warmup_steps={warmup} is more than steps={steps}; allowed: "
                             f"0..{steps}")  # fmt: skip
        self.configs()  # every combination is checked before anything is planned

    def __getattr__(self, key: str) -> object:
        try:
            return object.__getattribute__(self, "_values")[key]
        except KeyError:
            raise AttributeError(f"SweepSpec has no setting {key!r}") from None

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("SweepSpec is immutable: use with_(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SweepSpec) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        changed = (f"{k}={v!r}" for k, v in self._values.items()
                   if v != _as_default(SETTINGS[k]))  # fmt: skip
        return f"SweepSpec({', '.join(changed)})"

    def settings(self) -> dict[str, object]:
        """Every setting by key (grids as tuples)."""
        return dict(self._values)

    def with_(self, *, extra: Mapping[str, object] | None = None, **changes: object) -> SweepSpec:
        """A copy with some settings (by key or singular name) or ``extra`` changed,
        checked again."""
        values = dict(self._values)
        for argument in changes:
            values.pop(setting(argument).key)
        return SweepSpec(extra=self.extra if extra is None else extra, **values, **changes)

    def grid(self, axis: Axis) -> list[dict[str, object]]:
        """Every combination of the ``axis`` grids, as ``{key: value}``."""
        keys = [s.key for s in SCHEMA if s.axis is axis]
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self._values[k] for k in keys))]  # fmt: skip

    def configs(self) -> list[TrainConfig]:
        """One training config per point of the shape grid."""
        return [self._config(point) for point in self.grid(Axis.SHAPE)]

    def _config(self, point: Mapping[str, object]) -> TrainConfig:
        v = self._values
        settings = {"config": {}, "parametrization": {}}
        for key, value in point.items():
            s = SETTINGS[key]
            settings[s.target][s.field_name] = value
        # A member multiplier's first value is the group's; members override it (Member).
        for name in MEMBER_MULTIPLIERS:
            settings["parametrization"][name] = v[SETTINGS_BY_FIELD[name].key][0]
        steps = settings["config"]["steps"]
        return TrainConfig(
            model=v["model"],
            task=v["task"],
            parametrization=Parametrization(
                base_width=v["base_width"] or min(v["widths"]),
                base_depth=v["base_depth"] or min(v["depths"]),
                **settings["parametrization"],
            ),
            eval_every=min(v["eval_every"], steps),
            study=v["study"],
            **settings["config"],
        )

    def members(self) -> list[Member]:
        """Every member: each combination of the member grids, for every seed. A member
        multiplier equal to the group's (its grid's first value) is left ``None``, so the
        members of a one-value grid have the run ids they always had."""
        seeds = range(self.seed, self.seed + self.seeds)
        first = {k: values[0] for k, values in self._values.items() if SETTINGS[k].is_grid}
        return [
            Member(
                **{
                    SETTINGS[k].field_name: None
                    if SETTINGS[k].field_name in MEMBER_MULTIPLIERS and value == first[k]
                    else value
                    for k, value in point.items()
                },
                seed=seed,
            )
            for point in self.grid(Axis.MEMBER)
            for seed in seeds
        ]

    def probe_steps_for(self, steps: int) -> tuple[int, ...]:
        """The steps at which this spec's probes run in a run of ``steps`` steps."""
        if not self.probes:
            return ()
        if self.probe_steps:
            return tuple(s for s in self.probe_steps if s <= steps)
        from toolkit.engine.probes import log_spaced_steps

        return tuple(log_spaced_steps(steps, self.probe_points))

    @property
    def size(self) -> int:
        """Number of runs."""
        shapes = math.prod(len(self._values[s.key]) for s in SCHEMA if s.axis is Axis.SHAPE)
        return shapes * len(self.members())

    @classmethod
    def from_toml(cls, path: str | Path, *, extra: Sequence[str] = ()) -> list[SweepSpec]:
        """Specs from a TOML file: top-level keys are one grid; ``[[grid]]`` tables add more,
        each inheriting the top-level keys. A ``[smoke]`` table overrides every grid in smoke
        mode (:func:`smoke_mode`); it is checked in every mode. Keys named in ``extra``
        are settings of a study built on sweeps: they go to the spec's ``extra`` dict.
        Every message names the file."""
        path = Path(path)
        data = read_toml(path)
        try:
            kind = data.pop("kind", "sweep")
            if kind != "sweep":
                raise InputError(f"kind={kind!r}: this is not a sweep spec (kind = 'sweep')")
            grids = data.pop("grid", [{}])
            smoke = data.pop("smoke", {})
            if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
                raise InputError(f"grid={grids!r} must be [[grid]] tables")
            if not isinstance(smoke, dict):
                raise InputError(f"smoke={smoke!r} must be a [smoke] table")
        except InputError as error:
            raise InputError(f"{path}: {error}") from None
        specs = []
        for i, grid in enumerate(grids, start=1):
            where = f"{path} [[grid]] {i}" if len(grids) > 1 else str(path)
            merged = {**data, **grid}
            spec = _from_table(merged, extra, where)
            smoked = _from_table({**merged, **smoke}, extra, f"{path} [smoke]")
            specs.append(smoked if smoke_mode() else spec)
        return specs


def _from_table(table: dict, extra: Sequence[str], where: str) -> SweepSpec:
    table = dict(table)
    extras = {key: table.pop(key) for key in extra if key in table}
    try:
        return SweepSpec(extra=extras, **table)
    except InputError as error:
        raise InputError(f"{where}: {error}") from None
