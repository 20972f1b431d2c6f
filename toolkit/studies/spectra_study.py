"""The spectra study: sweeps that record layer spectra while they train.

Each group of a sweep (:func:`toolkit.studies.sweep.plan`) trains with the spectral
probe (:func:`toolkit.engine.probes.spectral_stats`) at log-spaced steps
(:func:`toolkit.engine.probes.log_spaced_steps`). :func:`run_study` writes the groups
into a results store, resuming like a sweep (same run and group ids, so the
store is the one ``python -m toolkit sweep`` would write with the probe on);
:func:`spectra_records` returns the probe values as flat records instead.

The shipped store ``data/spectra`` is made by::

    python -m toolkit.studies.spectra_study --out data/spectra

from ``studies/spectra.toml`` (its ``[smoke]`` grid with ``TOOLKIT_SMOKE=1``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import polars as pl

from toolkit.engine.probes import log_spaced_steps, spectral_stats
from toolkit.engine.train import Records, train
from toolkit.errors import check_positive
from toolkit.paths import study_spec
from toolkit.store import Store
from toolkit.studies.sweep import Group, Plan, SweepSpec, plan

#: Probe points per run (step 0, the last step and log-spaced steps between).
POINTS = 8

#: Run settings copied into every record of :func:`spectra_records`.
RECORD_SETTINGS = ("width", "depth", "parametrization", "optimizer", "lr", "weight_decay",
                   "seed")  # fmt: skip


def train_with_spectra(
    group: Group, *, points: int = POINTS, sv_points: int = 32, device: str = "cpu"
) -> Records:
    """Train one group, recording :func:`~toolkit.engine.probes.spectral_stats` at ``points``
    log-spaced steps (singular values at ``sv_points`` ranks per matrix)."""
    check_positive("points", points, integer=True)
    return train(
        group.config,
        group.members,
        probes=[partial(spectral_stats, sv_points=sv_points)],
        probe_steps=log_spaced_steps(group.config.steps, points),
        device=device,
    )


def run_study(
    specs: SweepSpec | Sequence[SweepSpec],
    out: str | Path,
    *,
    points: int = POINTS,
    device: str = "cpu",
    quiet: bool = False,
) -> Plan:
    """Train every group of ``specs`` not yet in the store at ``out``, with spectra.

    Shows a progress bar over groups unless ``quiet``; returns the executed plan.
    """
    from tqdm.auto import tqdm

    store = Store(out)
    work = plan(specs, finished=store.finished_run_ids())
    for group in tqdm(work.groups, unit="group", disable=quiet, dynamic_ncols=True):
        store.write_group(group.id, train_with_spectra(group, points=points, device=device))
    return work


def spectra_records(
    specs: SweepSpec | Sequence[SweepSpec], *, points: int = POINTS, device: str = "cpu"
) -> list[dict]:
    """Train ``specs`` and return their spectral statistics as flat records.

    One record per run, probe step, weight matrix and statistic: ``width``,
    ``depth``, ``parametrization``, ``optimizer``, ``lr``, ``weight_decay``,
    ``seed``, ``layer``, ``role``, ``step``, ``stat``, ``value``, with ``stat`` one
    of ``sigma_max``, ``fro_norm``, ``stable_rank``, ``cond_ratio``,
    ``delta_cond_ratio``, ``update_cond_ratio`` and ``update_ratio`` (from step
    1), ``act_rms`` and ``alpha`` (only where the power-law fit is reliable);
    see :func:`toolkit.engine.probes.spectral_stats`. Nothing is stored.
    """
    frames = []
    for group in plan(specs).groups:
        records = train_with_spectra(group, points=points, sv_points=0, device=device)
        settings = records.runs.select("run_id", *RECORD_SETTINGS)
        frames.append(records.probes.join(settings, on="run_id").drop("run_id"))
    if not frames:
        return []
    columns = [*RECORD_SETTINGS, "layer", "role", "step", "stat", "value"]
    return pl.concat(frames).select(columns).to_dicts()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolkit.studies.spectra_study --out DIR [--spec FILE] [--quiet]``."""
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.studies.spectra_study",
        description="Train the spectra study (with spectral probes) into a results store.",
    )
    parser.add_argument("--out", required=True, help="results store directory")
    parser.add_argument("--spec", default=None, help="TOML sweep (default: studies/spectra.toml)")
    parser.add_argument("--points", type=int, default=POINTS, help="probe steps per run")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:  # a user's mistake: one line on stderr, exit status 2
        specs = SweepSpec.from_toml(args.spec or study_spec("spectra"))
        check_positive("points", args.points, integer=True)
        Store(args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    work = run_study(specs, args.out, points=args.points, device=args.device, quiet=args.quiet)
    print(f"{work.runs} runs trained into {args.out} ({work.finished} already there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
