"""Command line: ``python -m toolkit <verb> ...``.

Every verb has ``--help`` and ``--json`` (machine-readable output on stdout).

Exit status and the error boundary (:func:`main`): a user's mistake
(:class:`~toolkit.errors.InputError`) and a fault of the environment (an
``OSError``: a path that cannot be written, a full disk, a read-only store; running
out of memory) exit with status 2 and one line on stderr naming the value or path
and what is allowed; Ctrl-C exits with 130 and one line. Files are only ever
written whole (:mod:`toolkit.io`), so an error or interruption loses nothing
already written. Any other exception is a bug and shows its traceback. ``store``
exits 1 when the store has problems. ``--device`` is checked before anything runs
(an unknown device, or CUDA where there is none, is a mistake).

Flag names shared by the sweep-like verbs (a contract): one flag per setting
of the sweep schema (:data:`toolkit.studies.spec.SCHEMA`), a grid under its
plural and its singular name, each a comma list: ``--model``, ``--task``,
``--parametrization``, ``--optimizer``, ``--widths``, ``--depths``, ``--lrs``
(comma list or ``2^a:2^b:n``), ``--weight-decays``, ``--seeds`` (a count),
``--steps``, ``--batch-size``, ``--init-sigmas``, ``--output-alphas``,
``--momentums``, ... and ``--spec``, ``--out``, ``--json``.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence

import polars as pl

from toolkit import interrupts
from toolkit.engine.catalogue import PROJECTIONS
from toolkit.errors import InputError
from toolkit.paths import check_smoke_output
from toolkit.studies.schema import SCHEMA
from toolkit.ui.cli_claims import claims_parser
from toolkit.ui.cli_store import report_parser, store_parser
from toolkit.ui.cli_sweep import sweep_parser
from toolkit.ui.console import print_json as _print_json
from toolkit.ui.console import print_table as _print_table
from toolkit.ui.flags import (
    SettingFlag,
    device,
    flag_names,
    sweep_specs,
    sweep_verb,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump becomes one line
        raise InputError(message)


def _figures_parser(sub) -> None:
    parser = sub.add_parser(
        "figures",
        help="render the headline figure of every shipped study",
        description="Draw each shipped study's headline figure from its store in data/ and "
        "export it sized for a paper column (the README's pictures come from this).",
    )
    parser.add_argument("--out", default="docs/figures", help="directory (default docs/figures)")
    parser.add_argument("--format", default="png", choices=("png", "pdf", "svg"))
    parser.add_argument("--venue", default="neurips", help="paper style preset")
    parser.add_argument("--width", default="column", choices=("column", "full"))
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.set_defaults(run=_run_figures)


def _run_figures(args: argparse.Namespace) -> None:
    from toolkit.ui.figures import render_all

    written = render_all(args.out, format=args.format, venue=args.venue, width=args.width)
    if args.json:
        _print_json([str(p) for p in written])
    else:
        print("\n".join(str(p) for p in written))


def _spectra_parser(sub) -> None:
    sweep_verb(
        sub,
        "spectra",
        _run_spectra,
        "layer spectra and spectral-condition ratios recorded during training",
        "Train the grid of the sweep flags (with the spectra probe at --probe-points "
        "log-spaced steps) and print every weight matrix's spectral statistics (sigma_max, "
        "stable_rank, fro_norm, cond_ratio, delta_cond_ratio, update_cond_ratio, act_rms, "
        "alpha where reliable).",
    )


def _run_spectra(args: argparse.Namespace) -> None:
    from toolkit.analysis.spectra import SUMMARY_STATS
    from toolkit.studies.sweep import probe_records

    specs = [spec.with_(probes=("spectra",)) for spec in sweep_specs(args)]
    columns = ["width", "depth", "parametrization", "optimizer", "lr", "weight_decay", "seed",
               "layer", "role", "step", "stat", "value"]  # fmt: skip
    frame = probe_records(specs, device=args.device)
    frame = frame.filter(pl.col("stat").is_in(SUMMARY_STATS)).select(columns)
    if args.json:
        _print_json(frame.to_dicts())
        return
    last = frame.filter(pl.col("step") == pl.col("step").max())
    _print_table(
        last.group_by("parametrization", "width", "layer", "stat")
        .agg(pl.col("value").mean())
        .pivot(on="stat", index=["parametrization", "width", "layer"], values="value")
        .sort("parametrization", "layer", "width")
    )


_INTRINSIC_FLAGS = ("model", "task", "parametrizations", "optimizers", "widths", "depths",
                    "base_width", "lrs", "seeds", "steps", "batch_sizes")  # fmt: skip
"""Sweep settings the intrinsic-dim verb shares (their spec keys are the same)."""


def _intrinsic_dim_parser(sub) -> None:
    parser = sub.add_parser(
        "intrinsic-dim",
        help="intrinsic dimension d_int of the loss landscape per width and depth",
        description=(
            "Train each model in random subspaces of growing dimension d and report the "
            "smallest d whose performance reaches THRESHOLD times full training (Li et al. "
            "2018), with a bootstrap interval over seeds. With --out, every measurement is "
            "kept in the results store DIR (re-running skips those already there)."
        ),
    )
    parser.add_argument("--spec", help="intrinsic-dimension spec (TOML); flags override it")
    by_key = {setting.key: setting for setting in SCHEMA}
    for key in _INTRINSIC_FLAGS:
        setting = by_key[key]
        parser.add_argument(*flag_names(setting), dest=key, action=SettingFlag,
                            setting=setting, default=None, help=setting.describe())  # fmt: skip
    parser.add_argument(
        "--subspace-lrs", dest="subspace_lrs", action=SettingFlag, setting=by_key["lrs"],
        default=None, help="LRs of theta_d: comma list, or 2^a:2^b:n",
    )  # fmt: skip
    parser.add_argument(
        "--projection",
        choices=sorted(PROJECTIONS),
        help="random subspace (default: the spec's projections, else fastfood)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="fraction of the baseline to report d_int at (default 0.9); without --spec "
        "also the one the search over d is refined near",
    )
    parser.add_argument("--out", default=None, help="results store that keeps the measurements")
    parser.add_argument("--device", default="cpu", type=device, help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no line per measurement")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.set_defaults(run=_run_intrinsic_dim)


def _run_intrinsic_dim(args: argparse.Namespace) -> None:
    import tempfile

    from toolkit.analysis.intrinsic import (
        check_threshold,
        d_int_records,
        d_int_table,
        load_measurements,
    )
    from toolkit.studies.intrinsic import measurements, read_spec, run_study

    check_smoke_output(args.out)
    if args.threshold is not None:
        check_threshold(args.threshold)
    overrides = {
        key: getattr(args, key)
        for key in (*_INTRINSIC_FLAGS, "subspace_lrs")
        if getattr(args, key) is not None
    }
    if args.projection is not None:
        overrides["projections"] = [args.projection]
    if args.spec:
        plan = read_spec(args.spec, overrides=overrides)
    else:
        search = {} if args.threshold is None else {"threshold": args.threshold}
        plan = measurements({**overrides, **search}, source="command line")
    with tempfile.TemporaryDirectory() as scratch:
        out = scratch if args.out is None else args.out
        ids = run_study(plan, out, device=args.device, quiet=args.quiet)
        frame = load_measurements(out).filter(pl.col("measurement").is_in(ids))
    order = pl.DataFrame({"measurement": ids, "order": range(len(ids))})
    table = (
        d_int_table(frame, threshold=0.9 if args.threshold is None else args.threshold)
        .join(order, on="measurement")
        .sort("order")
    )
    records = d_int_records(table)
    if args.json:
        _print_json(records)
        return
    tasks = table["task"]  # the printed table also names the task (a spec may hold several)
    _print_table(pl.DataFrame([{"task": t, **r} for t, r in zip(tasks, records, strict=True)]))


COORD_CHECK_DEFAULTS = {
    "widths": (128, 512),
    "depths": (3,),
    "steps": (3,),
    "lrs": (0.01,),
    "seeds": 4,
}
"""The coordinate check's own defaults for the shared sweep flags."""


def _coord_check_parser(sub) -> None:
    from toolkit.analysis.coord_check import LEVEL, MIN_WIDTHS, TOLERANCE

    parser = sweep_verb(
        sub,
        "coord-check",
        _run_coord_check,
        "activation size per layer vs width over the first steps",
        "Coordinate check: train each width for a few steps at a large LR (--lr, default "
        "0.01) and record every layer's mean |activation| (l1) and RMS at steps 0..STEPS "
        "(default 3), averaged over seeds (default 4). Widths default to 128,512 and the "
        "base width to the smallest; every other grid flag takes one value. A member that "
        "blows up keeps its real (inf/NaN) values and is marked diverged.",
    )
    parser.add_argument(
        "--verdict",
        action="store_true",
        help=f"judge each layer and step: the slope of log2(l1) against log2(width) over at "
        f"least {MIN_WIDTHS} widths, mean over seeds with a {LEVEL * 100:.0f}%% t-interval, passes "
        "if the mean is within the tolerance (readout: below it) and nothing diverged",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"largest width-stable |slope| per doubling of width (default {TOLERANCE})",
    )


def _run_coord_check(args: argparse.Namespace) -> None:
    from toolkit.analysis.coord_check import (
        LEVEL,
        check_verdict,
        diverged_members,
        seed_mean,
        verdict,
        verdict_summary,
        width_ratios,
    )
    from toolkit.studies.coord_check import coord_check_seeds

    spec = sweep_specs(args, defaults=COORD_CHECK_DEFAULTS)[0]
    for s in SCHEMA:
        values = getattr(spec, s.key)
        if s.is_grid and s.key != "widths" and len(values) > 1:
            raise InputError(f"{s.key}={values!r}: the coordinate check takes one value")
    if args.verdict:
        check_verdict(list(spec.widths), tolerance=args.tolerance)
    config = spec.with_(widths=(min(spec.widths),)).configs()[0]
    seeds = range(spec.seed, spec.seed + spec.seeds)
    per_seed = coord_check_seeds(config, spec.widths, lr=spec.lrs[0], seeds=seeds,
                                 device=args.device)  # fmt: skip
    diverged = diverged_members(per_seed)
    if args.verdict:
        table = verdict(per_seed, tolerance=args.tolerance)
        if args.json:
            _print_json({"pass": bool(table["pass"].all()), "tolerance": args.tolerance,
                         "level": LEVEL, "judged": "point estimate",
                         "diverged": diverged.to_dicts(), "layers": table.to_dicts()})  # fmt: skip
            return
        _print_table(table.drop("widths"))
        print(verdict_summary(table, tolerance=args.tolerance))
        return
    frame = seed_mean(per_seed)
    if args.json:
        _print_json(frame.to_dicts())
        return
    table = width_ratios(frame).pivot(on="step", index=["layer", "width"], values="ratio")
    print(f"mean |activation| relative to width {min(spec.widths)} (columns: step)")
    _print_table(table)
    for width, seed, step in diverged.iter_rows():
        print(f"width {width}, seed {seed}: diverged at step {step} (values from then on are "
              "what it computed, inf/NaN included)")  # fmt: skip


VERBS: Sequence[Callable] = (
    sweep_parser,
    report_parser,
    store_parser,
    _coord_check_parser,
    _intrinsic_dim_parser,
    _spectra_parser,
    _figures_parser,
    claims_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m toolkit", description="Hyperparameter-transfer lab.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for add in VERBS:
        add(sub)
    return parser


def _environment_fault(error: OSError) -> str:
    """One line for an ``OSError``: the path(s), the reason and what would work."""
    paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
    reason = error.strerror or str(error)
    hint = {
        errno.ENOSPC: "free some space or write elsewhere",
        errno.EDQUOT: "free some space or write elsewhere",
        errno.EACCES: "a path this user may write",
        errno.EPERM: "a path this user may write",
        errno.EROFS: "a path on a writable file system",
        errno.ENOTDIR: "a path whose every parent is a directory",
        errno.EEXIST: "a path whose every parent is a directory",
        errno.EISDIR: "a file path, not a directory",
        errno.ENOENT: "an existing path",
    }.get(error.errno, "a path that can be read and written")
    return f"{paths or 'I/O'}: {reason}; allowed: {hint}"


def _fail(message: str) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as shells report it)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the exit status (see the module docstring: 0 ok, 1 problems
    found by ``store``, 2 a user's mistake or an environment fault, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with interrupts.remembered():
            return args.run(args) or 0
    except InputError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the exit
        print("interrupted: files already written are whole; a sweep run again resumes",
              file=sys.stderr)  # fmt: skip
        return INTERRUPTED
    except BrokenPipeError:  # e.g. `python -m toolkit report DIR | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed stdout
        return 0
    except MemoryError:
        return _fail("out of memory; allowed: smaller width, batch_size or max_members")
    except OSError as error:
        return _fail(_environment_fault(error))
