"""Li et al.'s toy problem, measured with the toolkit's random projections.

Li, Farkhoor, Liu and Yosinski (2018, "Measuring the intrinsic dimension of objective
landscapes", Section 2) open with a problem whose intrinsic dimension is known: ``D``
parameters in ``G`` contiguous groups of ``D / G``, and the objective asks the ``g``-th
group's sum to be ``g``,

    L(theta) = sum_g (sum_{j in group g} theta_j - g)^2     (g = 1 .. G).

Its minima (``L = 0``) form an affine subspace of dimension ``D - G``, so a random
subspace ``theta = theta0 + P theta_d`` of dimension ``d`` meets it, for a generic
``P``, exactly when ``d >= G``: the intrinsic dimension is ``G`` (10 for their
``D = 1000``, ``G = 10``), whatever the projection.

This study checks that claim on every projection of :mod:`toolkit.engine.projections`
(which subspace training uses). ``L`` is quadratic in ``theta_d``, so the best loss in a
subspace is a least-squares problem, solved exactly in float64: what subspace training
converges to, without an optimizer's tolerance in the way. Each ``(projection, seed, d)``
is a ``runs`` row with ``final_train_loss`` the subspace's minimal loss and
``initial_loss`` the loss at ``theta0`` (``theta0 ~ N(0, 1)``, seeded);
:func:`toolkit.analysis.intrinsic.toy_d_int` reads ``d_int`` from them. The whole study
takes about a second.

Spec (TOML): ``kind = "intrinsic-toy"``, ``parameters`` (``D``), ``groups`` (``G``),
``projections``, ``seeds`` (a count) and ``max_d`` (``d`` runs over ``1 .. max_d``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import polars as pl

from toolkit import __version__
from toolkit.engine.catalogue import PROJECTIONS
from toolkit.errors import InputError, check_choice, check_positive
from toolkit.store import SCHEMAS, Records, Store
from toolkit.studies.kinds import read_toml, stored_groups

KIND = "intrinsic-toy"
"""The ``kind`` of a toy-problem spec."""

STUDY = "intrinsic_toy"
"""The ``study`` column of every row the study writes."""

SETTINGS = ("parameters", "groups", "projections", "seeds", "max_d")
"""Every key a spec holds (besides ``kind``)."""


def read_spec(path: Path) -> dict:
    """The settings of the toy-problem spec at ``path``, checked."""
    data = read_toml(Path(path))
    if data.pop("kind", None) != KIND:
        raise InputError(f"{path}: an intrinsic-toy spec has kind = {KIND!r}")
    unknown = sorted(set(data) - set(SETTINGS))
    missing = sorted(set(SETTINGS) - set(data))
    if unknown or missing:
        raise InputError(
            f"{path}: {'unknown' if unknown else 'missing'} setting "
            f"{(unknown or missing)[0]!r}; a spec holds {', '.join(SETTINGS)}"
        )
    for key in ("parameters", "groups", "seeds", "max_d"):
        check_positive(key, data[key], integer=True)
    if data["parameters"] % data["groups"]:
        raise InputError(f"parameters={data['parameters']} must be a multiple of "
                         f"groups={data['groups']}")  # fmt: skip
    if not isinstance(data["projections"], list) or not data["projections"]:
        raise InputError(f"projections={data['projections']!r} must be a non-empty list")
    for name in data["projections"]:
        check_choice("projection", name, PROJECTIONS)
    return data


def _group_id(settings: dict, projection: str) -> str:
    text = json.dumps({**settings, "projections": [projection]}, sort_keys=True)
    return f"toy-{projection}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def measure(
    projection: str, *, parameters: int, groups: int, seed: int, max_d: int
) -> tuple[list[tuple[int, float]], float]:
    """``(d, minimal loss)`` for ``d = 1 .. max_d`` in the nested subspaces of one seed's
    projection, and the loss at ``theta0``."""
    import torch

    from toolkit.engine.projections import make_projection

    D, G = parameters, groups
    theta0 = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    sums = torch.zeros(G, D, dtype=torch.float64)  # row g sums the g-th group
    sums[torch.arange(D) * G // D, torch.arange(D)] = 1.0
    targets = torch.arange(1, G + 1, dtype=torch.float64)
    residual = targets - sums @ theta0
    with torch.no_grad():  # P's columns, by projecting the unit vectors of R^max_d
        P = make_projection(projection, D, [max_d] * max_d, [seed] * max_d)
        columns = P.project(torch.eye(max_d)).to(torch.float64).T  # (D, max_d)
    A = sums @ columns  # the constraints seen from the subspace
    losses = []
    for d in range(1, max_d + 1):
        solution = torch.linalg.lstsq(A[:, :d], residual[:, None], driver="gelsd").solution
        left = residual - A[:, :d] @ solution[:, 0]
        losses.append((d, float(left @ left)))
    return losses, float(residual @ residual)


def records(settings: dict, projection: str) -> Records:
    """The ``runs`` rows of one projection: every seed and ``d``."""
    rows = []
    for seed in range(settings["seeds"]):
        losses, initial = measure(projection, parameters=settings["parameters"],
                                  groups=settings["groups"], seed=seed,
                                  max_d=settings["max_d"])  # fmt: skip
        for d, loss in losses:
            name = f"{_group_id(settings, projection)}/{seed}/{d}"
            rows.append({
                "run_id": hashlib.sha1(name.encode()).hexdigest()[:16], "study": STUDY,
                "model": "group_sums", "task": "group_sums", "seed": seed, "status": "ok",
                "final_train_loss": loss, "projection": projection, "d": d,
                "D": settings["parameters"], "groups": settings["groups"],
                "initial_loss": initial, "toolkit_version": __version__,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            })  # fmt: skip
    runs = pl.DataFrame(rows)
    contract = [c for c in SCHEMAS["runs"] if c in runs.columns]
    empty = {table: pl.DataFrame(schema=SCHEMAS[table]) for table in ("curves", "probes")}
    return Records(runs=runs.select(*contract, pl.exclude(contract)), **empty)


def plan_spec(path: Path, out: Path | None = None) -> pl.DataFrame:
    """One row per projection of the spec, ``stored`` where ``out`` already holds it."""
    settings = read_spec(path)
    stored = stored_groups(out)
    return pl.DataFrame([
        {"projection": p, "seeds": settings["seeds"], "max_d": settings["max_d"],
         "stored": _group_id(settings, p) in stored}
        for p in settings["projections"]
    ])  # fmt: skip


def run_spec(path: Path, out: Path, *, quiet: bool = False) -> None:
    """Measure every projection of the spec at ``path`` not yet in the store at ``out``."""
    settings = read_spec(path)
    store = Store(out)
    stored = stored_groups(out)
    for projection in settings["projections"]:
        group = _group_id(settings, projection)
        if group in stored:
            continue
        store.write_group(group, records(settings, projection))
        if not quiet:
            print(f"{projection}: {settings['seeds']} seeds, d = 1..{settings['max_d']}",
                  file=sys.stderr)  # fmt: skip
