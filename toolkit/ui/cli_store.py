"""The verbs that read a results store: ``report`` (what it holds) and ``store`` (its health).

Both print one readable line where a store has nothing to analyse, and mark what the
analysis cannot measure (optima outside the LR grid, drifts with too few measured
optima) instead of printing a confident number; ``--json`` carries the same.

``report`` finds the optimum of every swept member axis of the sweep schema
(:mod:`toolkit.studies.schema`: the learning rate, and besides it weight decay and the
multipliers ``init_sigma``, ``input_alpha``, ``output_alpha``) the same way, at each
setting of the others, and its drift with width and depth.
"""

from __future__ import annotations

import argparse
import math

import polars as pl

from toolkit.errors import InputError
from toolkit.ui.console import print_json, print_table


def _store_verb(sub, verb: str, run, help_text: str, description: str):
    """A verb over one results store: the store's directory, ``--json``, and ``run``."""
    parser = sub.add_parser(verb, help=help_text, description=description)
    parser.add_argument("store", help="results store directory")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.set_defaults(run=run)
    return parser


def report_parser(sub) -> None:
    """``report DIR``: runs, optimal learning rates and their drift, and the same for every
    other swept member axis (weight decay, init_sigma, input_alpha, output_alpha)."""
    _store_verb(
        sub, "report", run_report, "summarise a results store",
        "Runs and the best learning rate per configuration in a results store, and how it "
        "drifts with width and depth (with the fit's method); the same for every other "
        "hyperparameter the store sweeps (weight decay, init_sigma, input_alpha, "
        "output_alpha), at each setting of the others. An optimum at the edge of its grid "
        "is a bound and is named as such. A store with no runs, or none that finished ok, "
        "is explained in one line (exit status 0).",
    )  # fmt: skip


def _nothing_to_fit(runs: pl.DataFrame, where: str) -> str | None:
    """One line on a store that has no optimum to fit, else ``None``."""
    if runs.height == 0:
        return f"{where}: no runs yet; train some with `python -m toolkit sweep --out {where}`"
    if runs.filter(pl.col("status") == "ok").height == 0:
        counts = ", ".join(f"{n} {s}" for s, n in _status_counts(runs))
        return f"{where}: {runs.height} runs ({counts}), none finished ok: no optimum to report"
    return None


def _status_counts(runs: pl.DataFrame) -> list[tuple[str, int]]:
    return list(runs.group_by("status").len().sort("status").iter_rows())


def _config_name(row: dict) -> str:
    return (f"{row['parametrization']} {row['optimizer']} width {row['width']} "
            f"depth {row['depth']} steps {row['steps']}")  # fmt: skip


def _held(row: dict, held: list[str]) -> str:
    return "".join(f", {k} {row[k]:g}" for k in held)


def _notes(optima: pl.DataFrame, drifts: pl.DataFrame, *, x: str = "lr",
           held: list[str] | None = None) -> list[str]:  # fmt: skip
    """One line per optimum that left the grid of ``x`` and per drift without a line;
    ``held`` names the other hyperparameters that vary between configurations."""
    notes = []
    grid = "the LR grid" if x == "lr" else f"its {x} grid"
    more = "LRs" if x == "lr" else "values"
    for row in optima.filter(pl.col("censored").is_not_null()).iter_rows(named=True):
        side = "smaller" if row["censored"] == "below" else "larger"
        what = "the optimum" if x == "lr" else f"the optimal {x}"
        notes.append(
            f"{_config_name(row)}{_held(row, held or [])}: {what} lies {row['censored']} "
            f"{grid} (best at its edge, 2^{row[f'log2_{x}_grid']:.2f}); a bound, not a "
            f"measurement: add {side} {more}"
        )
    unmeasured = drifts.filter(pl.col("status") != "ok") if drifts.height else drifts
    of = "" if x == "lr" else f" of log2({x}*)"
    for row in unmeasured.iter_rows(named=True):
        notes.append(
            f"drift{of} along {row['axis']} of {row['parametrization']} {row['optimizer']}"
            f"{_held(row, held or [])}: {row['status']} ({row['points']} measured optima, "
            f"{row['censored']} censored)"
        )
    return notes


def _drifts(optima: pl.DataFrame) -> pl.DataFrame:
    """:func:`~toolkit.analysis.transfer.drift` along width and depth, where sizes vary."""
    from toolkit.analysis.transfer import drift

    drifts = [d for d in (drift(optima, axis=axis) for axis in ("width", "depth")) if d.height]
    return pl.concat(drifts, how="diagonal_relaxed") if drifts else pl.DataFrame()


def _swept_axes(runs: pl.DataFrame) -> list[str]:
    """The member axes of the sweep schema (LR first) that take two values or more."""
    from toolkit.studies.schema import SCHEMA, Axis

    names = [s.field_name for s in SCHEMA if s.axis is Axis.MEMBER]
    return [x for x in names if x in runs.columns and runs[x].n_unique() > 1]


def _hyperparameter(runs: pl.DataFrame, x: str) -> dict:
    """Optima of ``x`` where it is swept, their drift and notes; or one note saying why
    ``x`` has none (a grid holding values that have no log2, such as weight decay 0)."""
    from toolkit.analysis.optima import optimal_hyperparameter, swept

    if (bad := runs.filter(~(pl.col(x) > 0))).height:
        return {"optima": pl.DataFrame(), "drift": pl.DataFrame(), "held": [], "notes": [
            f"{x}: its grid holds {bad[x][0]:g}, which has no log2: no optimum of {x} is "
            "fitted (sweep positive values to fit one)"]}  # fmt: skip
    optima = optimal_hyperparameter(swept(runs, x), x)
    drifts = _drifts(optima)
    members = [m for m in _swept_axes(runs) if m != x]
    held = [m for m in members if m in optima.columns and optima[m].n_unique() > 1]
    return {"optima": optima, "drift": drifts, "held": held,
            "notes": _notes(optima, drifts, x=x, held=held)}  # fmt: skip


def _print_hyperparameter(x: str, found: dict) -> None:
    optima, drifts = found["optima"], found["drift"]
    if optima.height == 0:
        return
    shown = ["parametrization", "optimizer", "width", "depth", "steps", *found["held"],
             f"log2_{x}_opt", f"log2_{x}_lo", f"log2_{x}_hi", "loss_opt", "fit",
             "censored"]  # fmt: skip
    print(f"\noptimal {x} (log2, 95% interval; grid-edge: a bound), at each setting of the "
          "other hyperparameters")  # fmt: skip
    print_table(optima.select(shown))
    if drifts.height:
        methods = ", ".join(sorted(m for m in drifts["method"].unique().to_list() if m))
        print(f"\ndrift of log2({x}*) per doubling (line fit: {methods or 'none'})")
        print_table(drifts.select("parametrization", "optimizer", "axis", *found["held"],
                                  "slope", "slope_lo", "slope_hi", "points", "censored",
                                  "contradicting", "status", "method"))  # fmt: skip


def run_report(args: argparse.Namespace) -> None:
    """Print a store's runs, optima, drift and regret (see :func:`report_parser`)."""
    from toolkit import store as results
    from toolkit.analysis.optima import optimal_lr
    from toolkit.analysis.transfer import transfer_regret

    runs = results.open(args.store).runs().collect()
    message = _nothing_to_fit(runs, args.store)
    if message is not None:
        if args.json:
            print_json({"runs": runs.to_dicts(), "optima": [], "drift": [], "regret": [],
                        "hyperparameters": {}, "notes": [message]})  # fmt: skip
        else:
            print(message)
        return
    axes = _swept_axes(runs)
    others = {x: _hyperparameter(runs, x) for x in axes if x != "lr"}
    optima = drifts = regret = pl.DataFrame()
    notes = []
    if "lr" in axes or not others:
        optima = optimal_lr(runs)
        drifts = _drifts(optima)
        regrets = [
            transfer_regret(runs, axis=axis).with_columns(axis=pl.lit(axis))
            for axis in ("width", "depth")
            if runs[axis].n_unique() > 1
        ]
        regret = pl.concat(regrets, how="diagonal_relaxed") if regrets else pl.DataFrame()
        notes = _notes(optima, drifts)
    else:
        notes = [f"learning rate: one value (2^{math.log2(runs['lr'][0]):.2f}) in every run, "
                 "not swept: no LR optimum"]  # fmt: skip
    notes += [note for found in others.values() for note in found["notes"]]
    if args.json:
        print_json({"runs": runs.to_dicts(), "optima": optima.to_dicts(), "notes": notes,
                    "drift": drifts.to_dicts(), "regret": regret.to_dicts(),
                    "hyperparameters": {x: {"optima": found["optima"].to_dicts(),
                                            "drift": found["drift"].to_dicts()}
                                        for x, found in others.items()}})  # fmt: skip
        return
    print(f"{runs.height} runs: " + ", ".join(f"{n} {s}" for s, n in _status_counts(runs)))
    if optima.height:
        shown = ["parametrization", "optimizer", "width", "depth", "steps", "log2_lr_opt",
                 "log2_lr_lo", "log2_lr_hi", "loss_opt", "fit", "censored"]  # fmt: skip
        print("\noptimal learning rates (log2, 95% interval; grid-edge: a bound)")
        print_table(optima.select(shown))
    if drifts.height:
        methods = ", ".join(sorted(m for m in drifts["method"].unique().to_list() if m))
        print(f"\ndrift of log2(lr*) per doubling (line fit: {methods or 'none'})")
        print_table(drifts.select("parametrization", "optimizer", "axis", "slope", "slope_lo",
                                  "slope_hi", "points", "censored", "contradicting", "status",
                                  "method"))  # fmt: skip
    for x, found in others.items():
        _print_hyperparameter(x, found)
    if notes:
        print()
        print("\n".join(notes))


def store_parser(sub) -> None:
    """``store DIR``: verify every byte, list damage and duplicates, repair on request."""
    parser = _store_verb(
        sub, "store", run_store,
        "verify a results store; move damaged files aside, remove duplicates",
        "Read every byte of every file of a store and check it against the checksum "
        "written with it; list damaged files and runs stored more than once. --quarantine "
        "moves damaged files to DIR/quarantine (a resumed sweep trains their runs again; "
        "refused while a sweep writes), --dedupe removes the extra copies, --upgrade gives "
        "a schema-version-1 store its checksums. Exit status: 0 if the store is sound "
        "(after the repairs asked for), 1 if problems remain, 2 on bad input.",
    )  # fmt: skip
    parser.add_argument("--quarantine", action="store_true", help="move damaged files aside")
    parser.add_argument("--dedupe", action="store_true", help="remove duplicate runs")
    parser.add_argument("--upgrade", action="store_true", help="add checksums (schema 1 -> 2)")


def run_store(args: argparse.Namespace) -> int:
    """Check (and repair) a store; 1 if problems remain, else 0."""
    from toolkit import store as results

    upgraded = results.upgrade(args.store) if args.upgrade else 0
    store = results.open(args.store)
    bad = store.check()
    moved = store.quarantine() if args.quarantine else []
    damaged = [] if args.quarantine else bad
    if args.dedupe and damaged:
        raise InputError(f"dedupe refused: {len(damaged)} damaged files in {args.store}; "
                         "move them aside first (--quarantine)")  # fmt: skip
    duplicates = None if damaged else store.duplicates().filter(~pl.col("kept"))
    removed = store.dedupe() if args.dedupe else 0
    extra = 0 if duplicates is None or args.dedupe else duplicates.height
    files = sum(len(store.files(table)) for table in results.TABLES)
    if args.json:
        print_json({
            "store": args.store, "schema_version": store.schema_version,
            "verified": store.verified, "files": files, "upgraded": upgraded,
            "bad": [{"path": str(p), "error": e} for p, e in bad],
            "moved": [str(p) for p in moved],
            "duplicates": [] if duplicates is None else duplicates.to_dicts(),
            "removed": removed, "ok": not damaged and not extra,
        })  # fmt: skip
    else:
        _print_store(args.store, store, files, upgraded, bad, moved, duplicates, removed)
    return 1 if damaged or extra else 0


def _print_store(where, store, files, upgraded, bad, moved, duplicates, removed) -> None:
    if upgraded:
        print(f"upgraded: {upgraded} files checksummed")
    for path, error in bad:
        print(f"damaged: {path}: {error}")
    for path in moved:
        print(f"moved aside: {path}")
    if duplicates is None:
        print("duplicates: not checked while damaged files are in place")
    else:
        for row in duplicates.iter_rows(named=True):
            print(f"duplicate: run {row['run_id']} again in group {row['group']}")
    if removed:
        print(f"removed {removed} duplicate runs")
    checked = (
        "every byte matches its checksum"
        if store.verified
        else ("read unverified: schema version 1 has no checksums (--upgrade adds them)")
    )
    if not bad:
        print(f"{where}: {files} files, {checked}")
