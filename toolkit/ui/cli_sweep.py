"""The ``sweep`` verb: train a grid (or run a study spec) into a results store, or plan it.

``--dry-run`` prints the plan with the planner's estimate from shapes alone
(:mod:`toolkit.studies.costs`); ``--dry-run --measure`` times each group for a few steps
on this machine (:mod:`toolkit.studies.timing`) and prints that estimate beside it. A spec
of another kind than ``sweep`` (e.g. intrinsic-dimension) runs its own study; the flags
it would ignore are refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl

from toolkit.errors import InputError
from toolkit.paths import check_smoke_output
from toolkit.studies.schema import SCHEMA
from toolkit.studies.spec import SweepSpec
from toolkit.ui.console import print_json as _print_json
from toolkit.ui.console import print_table as _print_table
from toolkit.ui.flags import flag_names, sweep_specs, sweep_verb

DRY_RUN_ROWS = 50
"""Groups a dry run lists as a table (``--json`` lists all)."""


def sweep_parser(sub) -> None:
    """Add the ``sweep`` verb to the subparsers ``sub``."""
    parser = sweep_verb(
        sub,
        "sweep",
        _run_sweep,
        "train a grid of runs into a results store (resumes)",
        "Train every run of a grid into the store at --out. Runs that share a shape train "
        "together as one batched ensemble; runs already in the store are skipped, and runs "
        "another sweep on the same store is training are left to it. Each run is sized "
        "from its shapes first: one that cannot fit in memory is refused, and so is a sweep "
        "above --max-runs or --max-hours (a dry run warns). A spec whose kind is not "
        "'sweep' (e.g. intrinsic-dimension) runs its own study.",
    )
    parser.add_argument("--out", help="results store directory (required unless --dry-run)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--measure", action="store_true",
                        help="with --dry-run: time each group for a few steps on this machine "
                             "and print that estimate too (seconds per group shape)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that train the small (overhead-bound) groups side by "
                             "side, one thread each (default: 1, all groups in this "
                             "process; local executor)")  # fmt: skip


def _run_sweep(args: argparse.Namespace) -> None:
    from toolkit.studies.kinds import spec_kind
    from toolkit.studies.sweep import run_local

    if not args.dry_run:
        check_smoke_output(args.out)
    if args.spec and spec_kind(Path(args.spec)) != "sweep":
        _run_study_spec(args)
        return
    if args.measure and not args.dry_run:
        raise InputError("--measure times a plan: it goes with --dry-run")
    specs = sweep_specs(args)
    if args.dry_run:
        _dry_run(args, specs)
        return
    if not args.out:
        raise InputError("out=None: give --out DIR, the results store to write")

    def announce(work) -> None:
        if args.json:
            return
        if not work.groups:
            print(f"nothing to train: all {work.finished} runs are already in {args.out}",
                  file=sys.stderr)  # fmt: skip
        elif not args.quiet:
            print(work.summary(), file=sys.stderr)

    if args.executor == "ray":
        from toolkit.studies.ray import run_ray

        work = run_ray(specs, args.out, address=args.address, quiet=args.quiet, on_plan=announce)
    else:
        work = run_local(specs, args.out, device=args.device, quiet=args.quiet, on_plan=announce,
                         workers=args.workers)  # fmt: skip
    if args.json:
        _print_json({"summary": work.summary(), "groups": work.records()})


def _run_study_spec(args: argparse.Namespace) -> None:
    """``sweep --spec FILE`` where the spec's kind is not ``sweep``: the study runs its
    own spec, so only --out, --dry-run and --quiet apply; any other flag is refused
    rather than ignored."""
    from toolkit.studies.kinds import plan_study, run_study, spec_kind

    path = Path(args.spec)
    kind = spec_kind(path)
    given = [flag_names(s)[0] for s in SCHEMA if getattr(args, s.key) is not None]
    given += [flag for flag, on in (("--executor", args.executor != "local"),
                                    ("--address", args.address is not None),
                                    ("--workers", args.workers != 1),
                                    ("--device", args.device != "cpu"),
                                    ("--json", args.json),
                                    ("--measure", args.measure)) if on]  # fmt: skip
    if given:
        raise InputError(
            f"{given[0]} does not apply to spec={args.spec!r}, whose kind is "
            f"{kind!r}: it runs its own settings; with it, sweep takes only "
            "--out, --dry-run and --quiet (edit the spec to change a setting)"
        )
    if args.dry_run:
        table = plan_study(path, Path(args.out) if args.out else None)
        stored = int(table["stored"].sum())
        print(f"{table.height} measurements, {table.height - stored} to run ({stored} already "
              f"stored); no time estimate for kind {kind!r}")  # fmt: skip
        _print_table(table)
        return
    if not args.out:
        raise InputError("out=None: give --out DIR, the results store to write")
    run_study(path, Path(args.out), quiet=args.quiet)


def _dry_run(args: argparse.Namespace, specs: list[SweepSpec]) -> None:
    """Print the plan. A sweep above its limits gets a warning on stderr; one of more than
    ``max_runs`` runs is only sized, not planned group by group."""
    from toolkit.store import Store
    from toolkit.studies.costs import available_memory
    from toolkit.studies.sweep import outlook, plan

    memory = available_memory(args.device)
    look = outlook(specs, memory=memory)
    over = look.over()
    if over is not None:
        print(f"warning: {over}; a sweep this size is refused unless max_runs / max_hours "
              "are raised", file=sys.stderr)  # fmt: skip
    if look.runs > look.max_runs:
        summary = (f"~{look.runs:,} runs, ~{look.hours:,.1f} h estimated (sized, not planned "
                   "group by group)")  # fmt: skip
        _print_json({"summary": summary, "groups": []}) if args.json else print(summary)
        return
    exists = args.out and Path(args.out, "store.json").exists()
    finished = Store(args.out, create=False).finished_run_ids() if exists else ()
    work = plan(specs, finished=finished, memory=memory)
    if args.measure:
        work = _measured(work, args)
    if args.json:
        _print_json({"summary": work.summary(), "groups": work.records()})
        return
    print(work.summary())
    _print_table(pl.DataFrame(work.records(limit=DRY_RUN_ROWS)))
    if len(work.groups) > DRY_RUN_ROWS:
        print(f"... and {len(work.groups) - DRY_RUN_ROWS} more groups (--json lists all)")


def _measured(work, args: argparse.Namespace):
    """``work`` with each group's time measured on this machine
    (:func:`toolkit.studies.timing.measured_seconds`), the shape estimate's total on stderr."""
    from toolkit.studies.timing import measured_seconds

    def progress(done: int, total: int) -> None:
        if not args.quiet and not args.json:
            print(f"\rtiming group {done}/{total}", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)  # fmt: skip

    seconds = measured_seconds(work.groups, device=args.device, on_group=progress)
    if not args.json:
        print(f"from shapes alone: ~{work.hours:.2f} h; measured on this machine below",
              file=sys.stderr)  # fmt: skip
    groups = [replace(g, seconds=s) for g, s in zip(work.groups, seconds, strict=True)]
    return replace(work, groups=groups)
