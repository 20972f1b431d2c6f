"""The verbs that read a results store: ``report`` (what it holds) and ``store`` (its health).

Both print one readable line where a store has nothing to analyse, and mark what the
analysis cannot measure (optima outside the LR grid, drifts with too few measured
optima) instead of printing a confident number; ``--json`` carries the same.
"""

from __future__ import annotations

import argparse

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
    """``report DIR``: runs, optimal learning rates and their drift."""
    _store_verb(
        sub, "report", run_report, "summarise a results store",
        "Runs and the best learning rate per configuration in a results store, and how it "
        "drifts with width and depth (with the fit's method). An optimum at the edge of the "
        "LR grid is a bound and is named as such. A store with no runs, or none that "
        "finished ok, is explained in one line (exit status 0).",
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


def _notes(optima: pl.DataFrame, drifts: pl.DataFrame) -> list[str]:
    """One line per optimum that left the LR grid and per drift without a line."""
    notes = []
    for row in optima.filter(pl.col("censored").is_not_null()).iter_rows(named=True):
        side = "smaller" if row["censored"] == "below" else "larger"
        notes.append(
            f"{_config_name(row)}: the optimum lies {row['censored']} the LR grid (best at "
            f"its edge, 2^{row['log2_lr_grid']:.2f}); a bound, not a measurement: add {side} LRs"
        )
    unmeasured = drifts.filter(pl.col("status") != "ok") if drifts.height else drifts
    for row in unmeasured.iter_rows(named=True):
        notes.append(
            f"drift along {row['axis']} of {row['parametrization']} {row['optimizer']}: "
            f"{row['status']} ({row['points']} measured optima, {row['censored']} censored)"
        )
    return notes


def run_report(args: argparse.Namespace) -> None:
    """Print a store's runs, optima, drift and regret (see :func:`report_parser`)."""
    from toolkit import store as results
    from toolkit.analysis.optima import optimal_lr
    from toolkit.analysis.transfer import drift, transfer_regret

    runs = results.open(args.store).runs().collect()
    message = _nothing_to_fit(runs, args.store)
    if message is not None:
        if args.json:
            print_json({"runs": runs.to_dicts(), "optima": [], "drift": [], "regret": [],
                        "notes": [message]})  # fmt: skip
        else:
            print(message)
        return
    optima = optimal_lr(runs)
    drifts = [d for d in (drift(optima, axis=axis) for axis in ("width", "depth")) if d.height]
    drifts = pl.concat(drifts, how="diagonal_relaxed") if drifts else pl.DataFrame()
    regrets = [
        transfer_regret(runs, axis=axis).with_columns(axis=pl.lit(axis))
        for axis in ("width", "depth")
        if runs[axis].n_unique() > 1
    ]
    regret = pl.concat(regrets, how="diagonal_relaxed") if regrets else pl.DataFrame()
    notes = _notes(optima, drifts)
    if args.json:
        print_json({"runs": runs.to_dicts(), "optima": optima.to_dicts(), "notes": notes,
                    "drift": drifts.to_dicts(), "regret": regret.to_dicts()})  # fmt: skip
        return
    print(f"{runs.height} runs: " + ", ".join(f"{n} {s}" for s, n in _status_counts(runs)))
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
