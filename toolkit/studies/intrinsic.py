"""The intrinsic-dimension study: a spec of measurements, run into a results store.

A spec (``studies/intrinsic_dimension.toml``) names measurements
(:class:`toolkit.studies.intrinsic_settings.Measurement`); :func:`run_spec` runs
each one not yet in the store (:func:`toolkit.studies.intrinsic_search.measure_intrinsic_dim`)
and writes it as one group of the results store (:mod:`toolkit.store`), named by
the measurement's id: a ``runs`` row per baseline seed at the best LR of its
grid (``kind = "baseline"``) and per ``d x seed x lr`` of the refined sweep and
the subspace LR grid (``kind = "subspace"``). Because every run is kept,
``d_int`` at any threshold, with its interval and the subspace LR's grid-edge
status, is recomputed from the store without training
(:mod:`toolkit.analysis.intrinsic`). The shipped store
``data/intrinsic_dimension`` is made by::

    python -m toolkit intrinsic-dim --spec studies/intrinsic_dimension.toml \\
        --out data/intrinsic_dimension

(the ``[smoke]`` table of the spec with ``TOOLKIT_SMOKE=1``).

Spec format (TOML): ``kind = "intrinsic-dimension"``, then settings at the top
level, shared by every ``[[grid]]`` table, which adds its own; a ``[smoke]`` table
overrides every grid in smoke mode. The list settings (:data:`LISTS`) are crossed,
each combination one measurement; the others are shared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from toolkit import __version__
from toolkit.analysis.intrinsic import IntrinsicDimension
from toolkit.errors import InputError
from toolkit.paths import smoke_mode
from toolkit.store import SCHEMAS, Records, Store
from toolkit.studies.intrinsic_search import measure_intrinsic_dim
from toolkit.studies.intrinsic_settings import DSearch, Measurement
from toolkit.studies.kinds import stored_groups
from toolkit.studies.schema import parse_numbers

KIND = "intrinsic-dimension"
"""The ``kind`` of an intrinsic-dimension spec."""

STUDY = "intrinsic_dimension"
"""The ``study`` column of every run the study writes."""

LISTS = {"parametrizations": "parametrization", "optimizers": "optimizer",
         "projections": "projection", "widths": "width", "depths": "depth", "steps": "steps",
         "batch_sizes": "batch_size"}  # fmt: skip
"""Spec keys crossed into measurements -> the :class:`Measurement` field each sets."""

SCALARS = ("model", "task", "base_width", "seeds", "lrs", "subspace_lrs", "eval_examples",
           "max_members")  # fmt: skip
"""Spec keys shared by a grid's measurements (:class:`Measurement` fields)."""

SEARCH = {"d_grid": "grid", "threshold": "threshold", "rounds": "rounds", "points": "points",
          "confidence": "confidence"}  # fmt: skip
"""Spec keys of the search over ``d`` -> :class:`DSearch` fields."""

KEYS = tuple(sorted((*LISTS, *SCALARS, *SEARCH)))
"""Every setting a spec (or a ``[[grid]]`` or ``[smoke]`` table) may hold."""


def measurements(settings: Mapping[str, object], *, source: str) -> list[Measurement]:
    """The measurements of one grid of settings (spec keys, :data:`KEYS`).

    The lists are crossed in the order of :data:`LISTS`, the last varying
    fastest; ``base_width`` defaults to the smallest width; ``lrs``
    and ``subspace_lrs`` may be strings such as ``"2^-9:2^-5:3"``. ``source``
    (a file, or the command line) is named in every error.
    """
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise InputError(f"{source}: unknown intrinsic-dimension setting {unknown[0]!r}; "
                         f"allowed: {', '.join(KEYS)}")  # fmt: skip
    try:
        shared = {k: settings[k] for k in SCALARS if k in settings}
        for key in ("lrs", "subspace_lrs"):
            if isinstance(shared.get(key), str):
                shared[key] = parse_numbers(key, shared[key])
        search = DSearch(**{field: settings[k] for k, field in SEARCH.items() if k in settings})
        crossed = {LISTS[k]: _as_list(k, settings[k]) for k in LISTS if k in settings}
        if "base_width" not in shared and "width" in crossed:
            shared["base_width"] = min(crossed["width"])
        return [
            Measurement(**shared, **dict(zip(crossed, values, strict=True)), search=search)
            for values in itertools.product(*crossed.values())
        ]
    except (InputError, TypeError) as error:
        raise InputError(f"{source}: {error}") from None


def _as_list(key: str, value: object) -> list:
    """A list setting's values; anything but a non-empty list is refused."""
    if not isinstance(value, list | tuple) or len(value) == 0:
        raise InputError(f"{key}={value!r} must be a non-empty list")
    return list(value)


def read_spec(
    path: str | Path, *, overrides: Mapping[str, object] | None = None
) -> list[Measurement]:
    """The measurements of an intrinsic-dimension spec file, each once, in spec order.

    ``overrides`` (spec keys, e.g. from command-line flags) replace the file's
    values in every grid. Raises :class:`InputError` naming the file for a
    missing file, invalid TOML, a wrong ``kind``, an unknown key (with the list of
    known ones) or a bad value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"spec={str(path)!r} does not exist or is not a file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"spec={str(path)!r} is not valid TOML: {error}") from None
    kind = data.pop("kind", None)
    if kind != KIND:
        raise InputError(f"{path}: kind={kind!r}; an intrinsic-dimension spec has kind = {KIND!r}")
    grids = data.pop("grid", [{}])
    smoke = data.pop("smoke", {})
    if not smoke_mode():
        smoke = {}
    found = [
        m
        for grid in grids
        for m in measurements({**data, **grid, **smoke, **(overrides or {})}, source=str(path))
    ]
    return list({m.id: m for m in found}.values())


def measurement_records(measurement: Measurement, result: IntrinsicDimension) -> Records:
    """The store tables of one measurement: a ``runs`` row per baseline seed and per
    ``d x seed x lr`` (no curves or probes).

    Besides the store's run columns: ``measurement`` (its id), ``kind``
    (``baseline`` / ``subspace``), ``d`` (null on baseline rows), ``D``,
    ``projection``, ``base_width``, ``seeds`` (their count), ``lr_grid`` (the
    number of subspace LRs, every one stored; null on baseline rows), ``metric``
    (:func:`toolkit.engine.subspace.performance`) and ``final_val_accuracy``.
    """
    rows = pl.concat(
        [
            result.baselines.with_columns(kind=pl.lit("baseline"), d=pl.lit(None, pl.Int64)),
            result.frame.with_columns(
                kind=pl.lit("subspace"),
                d=pl.col("d").cast(pl.Int64),
                lr_grid=pl.lit(len(measurement.subspace_lrs), pl.Int64),
            ),
        ],
        how="diagonal_relaxed",
    )
    settings = measurement.settings()
    names = [
        f"{measurement.id}/{kind}/{d}/{seed}/{lr!r}"
        for kind, d, seed, lr in rows.select("kind", "d", "seed", "lr").iter_rows()
    ]
    runs = rows.with_columns(
        run_id=pl.Series([hashlib.sha1(n.encode()).hexdigest()[:16] for n in names]),
        study=pl.lit(STUDY),
        measurement=pl.lit(measurement.id),
        **{k: pl.lit(v) for k, v in settings.items()},
        weight_decay=pl.lit(0.0),
        final_train_loss=pl.lit(None, pl.Float64),
        D=pl.lit(result.D, pl.Int64),
        toolkit_version=pl.lit(__version__),
        created_at=pl.lit(dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
    ).with_columns(pl.col(pl.Int32).cast(pl.Int64))
    contract = [c for c in SCHEMAS["runs"] if c in runs.columns]
    runs = runs.select(*contract, pl.exclude(contract))
    empty = {table: pl.DataFrame(schema=SCHEMAS[table]) for table in ("curves", "probes")}
    return Records(runs=runs, **empty)


def run_study(
    plan: Sequence[Measurement],
    out: str | Path,
    *,
    device: str = "cpu",
    quiet: bool = False,
) -> list[str]:
    """Run every measurement of ``plan`` not yet stored in the results store at ``out``.

    Each is written as one store group when it finishes, so a killed study loses
    at most the measurement in flight and a re-run resumes. Prints one line per
    measurement to stderr unless ``quiet``. Returns the ids of all of ``plan``'s
    measurements, new and already stored, in plan order.
    """
    store = Store(out)
    stored = {path.stem for path in store.files("runs")}
    todo = [m for m in plan if m.id not in stored]
    for number, measurement in enumerate(todo, 1):
        started = time.perf_counter()
        result = measure_intrinsic_dim(measurement, device=device)
        store.write_group(measurement.id, measurement_records(measurement, result))
        if not quiet:
            print(
                f"[{number}/{len(todo)}] {measurement.describe()}: D = {result.D}, "
                f"{result.key} = {result.estimate:g} [{result.lo:g}, {result.hi:g}] "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return [m.id for m in plan]


def plan_spec(path: Path, out: Path | None = None) -> pl.DataFrame:
    """What :func:`run_spec` would do, without training or writing anything: one row
    per measurement of the spec at ``path``, in spec order, with ``stored`` true for
    those already in the results store at ``out`` (none where it does not exist)."""
    plan = read_spec(path)
    stored = stored_groups(out)
    shown = ("task", "parametrization", "projection", "width", "depth", "steps", "seeds")
    return pl.DataFrame(
        [
            {"measurement": m.id, **{k: m.settings()[k] for k in shown},
             "subspace_lrs": len(m.subspace_lrs), "stored": m.id in stored}  # fmt: skip
            for m in plan
        ]
    )


def run_spec(path: Path, out: Path, *, quiet: bool = False) -> None:
    """Run the intrinsic-dimension spec at ``path`` into the results store at ``out``,
    resuming (:func:`read_spec`, :func:`run_study`); progress on stderr unless ``quiet``."""
    run_study(read_spec(path), out, quiet=quiet)
