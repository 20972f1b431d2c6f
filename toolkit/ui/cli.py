"""Command line: ``python -m toolkit <verb> ...``.

Every verb has ``--help`` and ``--json`` (machine-readable output on stdout).
A user's mistake exits with status 2 and one line on stderr naming the bad
value and what is allowed, never a traceback.

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
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from toolkit.engine.projections import PROJECTIONS
from toolkit.errors import InputError
from toolkit.studies.schema import SCHEMA, Setting
from toolkit.studies.spec import SweepSpec


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump becomes one line
        raise InputError(message)


class _SettingFlag(argparse.Action):
    """A sweep setting's flag: its value parsed and checked by the schema under the flag's
    own name (``--lr -1`` says ``lr=-1.0``); a bare boolean flag means true."""

    def __init__(self, option_strings: list[str], dest: str, *, setting: Setting, **kwargs):
        self.setting = setting
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        argument = option_string.removeprefix("--").replace("-", "_")
        value = (True,) if values is None else self.setting.parse(argument, values)
        setattr(namespace, self.dest, value)


def _flag_names(setting: Setting) -> list[str]:
    names = [setting.key] if not setting.is_grid else [setting.key, setting.name]
    return ["--" + name.replace("_", "-") for name in dict.fromkeys(names)]


def _add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """``--spec``, ``--device``, ``--json`` and one flag per setting of the sweep schema
    (:data:`toolkit.studies.spec.SCHEMA`): a grid takes a comma list under its plural
    and its singular name (``--widths 64,128``, ``--output-alpha 2``)."""
    parser.add_argument("--spec", help="TOML file with the sweep (flags override its values)")
    for setting in SCHEMA:
        parser.add_argument(
            *_flag_names(setting),
            dest=setting.key,
            action=_SettingFlag,
            setting=setting,
            nargs="?" if setting.type is bool else None,
            default=None,
            help=setting.describe(),
        )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def sweep_specs(
    args: argparse.Namespace,
    *,
    extra: Sequence[str] = (),
    defaults: dict[str, object] | None = None,
) -> list[SweepSpec]:
    """The sweep(s) described by ``--spec`` (or ``defaults``) and the flags, validated
    (``extra``: study settings a spec file may hold besides the sweep's, see
    :meth:`SweepSpec.from_toml`)."""
    given = {s.key: getattr(args, s.key) for s in SCHEMA if getattr(args, s.key) is not None}
    if args.spec:
        return [s.with_(**given) for s in SweepSpec.from_toml(args.spec, extra=extra)]
    return [SweepSpec(**{**(defaults or {}), **given})]


def _sweep_verb(sub, verb: str, run: Callable, help_text: str, description: str):
    """A verb that reads a sweep (``--spec`` and the schema's flags) and runs ``run``."""
    parser = sub.add_parser(verb, help=help_text, description=description)
    _add_sweep_flags(parser)
    parser.set_defaults(run=run)
    return parser


def _sweep_parser(sub) -> None:
    parser = _sweep_verb(
        sub,
        "sweep",
        _run_sweep,
        "train a grid of runs into a results store (resumes)",
        "Train every run of a grid into the store at --out. Runs that share a shape train "
        "together as one batched ensemble; runs already in the store are skipped. A spec "
        "whose kind is not 'sweep' (e.g. intrinsic-dimension) runs its own study.",
    )
    parser.add_argument("--out", help="results store directory (required unless --dry-run)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_sweep(args: argparse.Namespace) -> None:
    from toolkit.store import Store
    from toolkit.studies.kinds import run_study, spec_kind
    from toolkit.studies.sweep import plan, run_local

    if args.spec and spec_kind(Path(args.spec)) != "sweep":
        if not args.out:
            raise InputError("out=None: give --out DIR, the results store to write")
        run_study(Path(args.spec), Path(args.out), quiet=args.quiet)
        return
    specs = sweep_specs(args)
    if args.dry_run:
        exists = args.out and Path(args.out, "store.json").exists()
        finished = Store(args.out, create=False).finished_run_ids() if exists else ()
        work = plan(specs, finished=finished)
        if args.json:
            _print_json({"summary": work.summary(), "groups": work.records()})
        else:
            print(work.summary())
            _print_table(pl.DataFrame(work.records()))
        return
    if not args.out:
        raise InputError("out=None: give --out DIR, the results store to write")

    def announce(work) -> None:
        if not args.quiet and not args.json:
            print(work.summary(), file=sys.stderr)

    if args.executor == "ray":
        from toolkit.studies.ray import run_ray

        work = run_ray(specs, args.out, address=args.address, quiet=args.quiet, on_plan=announce)
    else:
        work = run_local(specs, args.out, device=args.device, quiet=args.quiet, on_plan=announce)
    if args.json:
        _print_json({"summary": work.summary(), "groups": work.records()})


def _report_parser(sub) -> None:
    parser = sub.add_parser(
        "report",
        help="summarise a results store",
        description="Runs and the best learning rate per configuration in a results store.",
    )
    parser.add_argument("store", help="results store directory")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from toolkit import store as results
    from toolkit.analysis.transfer import drift, optimal_lr, transfer_regret

    runs = results.open(args.store).runs().collect()
    optima = optimal_lr(runs)
    drifts = [d for d in (drift(optima, axis=axis) for axis in ("width", "depth")) if d.height]
    drifts = pl.concat(drifts, how="diagonal_relaxed") if drifts else pl.DataFrame()
    regrets = [
        transfer_regret(runs, axis=axis).with_columns(axis=pl.lit(axis))
        for axis in ("width", "depth")
        if runs[axis].n_unique() > 1
    ]
    regret = pl.concat(regrets, how="diagonal_relaxed") if regrets else pl.DataFrame()
    if args.json:
        _print_json(
            {
                "runs": runs.to_dicts(),
                "optima": optima.to_dicts(),
                "drift": drifts.to_dicts(),
                "regret": regret.to_dicts(),
            }
        )
        return
    status = runs.group_by("status").len().sort("status")
    print(f"{runs.height} runs: " + ", ".join(f"{n} {s}" for s, n in status.iter_rows()))
    shown = ["parametrization", "optimizer", "width", "depth", "steps", "log2_lr_opt",
             "log2_lr_lo", "log2_lr_hi", "loss_opt", "fit"]  # fmt: skip
    print("\noptimal learning rates (log2, 95% interval)")
    _print_table(optima.select(shown))
    if drifts.height:
        print("\ndrift of log2(lr*) per doubling")
        _print_table(
            drifts.select("parametrization", "optimizer", "axis", "slope", "slope_lo", "slope_hi")
        )


def _store_parser(sub) -> None:
    parser = sub.add_parser(
        "store",
        help="check a results store; move unreadable files aside",
        description="List unreadable (e.g. truncated) files of a store; --quarantine moves them "
        "to DIR/quarantine so the runs they held are trained again on the next sweep.",
    )
    parser.add_argument("store", help="results store directory")
    parser.add_argument("--quarantine", action="store_true", help="move bad files aside")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.set_defaults(run=_run_store)


def _run_store(args: argparse.Namespace) -> None:
    from toolkit import store as results

    store = results.open(args.store)
    bad = store.check()
    moved = store.quarantine() if args.quarantine else []
    if args.json:
        _print_json(
            {
                "bad": [{"path": str(p), "error": e} for p, e in bad],
                "moved": [str(p) for p in moved],
            }
        )
        return
    for path, error in bad:
        print(f"unreadable: {path}: {error}")
    for path in moved:
        print(f"moved aside: {path}")
    if not bad:
        print(f"{args.store}: every file readable")


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
    _sweep_verb(
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
        parser.add_argument(*_flag_names(setting), dest=key, action=_SettingFlag,
                            setting=setting, default=None, help=setting.describe())  # fmt: skip
    parser.add_argument(
        "--subspace-lrs", dest="subspace_lrs", action=_SettingFlag, setting=by_key["lrs"],
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
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
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

    parser = _sweep_verb(
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
        f"least {MIN_WIDTHS} widths, mean over seeds with a {LEVEL:.0%} t-interval, passes "
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
    if args.base_width is None and not args.spec:
        spec = spec.with_(base_width=min(spec.widths))
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


def _print_table(frame: pl.DataFrame) -> None:
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=160,
        tbl_hide_dataframe_shape=True,
        fmt_str_lengths=60,
        float_precision=4,
    ):
        print(frame)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _print_json(payload: object) -> None:
    """Strict JSON on stdout: NaN and infinities become null."""
    json.dump(_json_safe(payload), sys.stdout, default=str)
    sys.stdout.write("\n")


VERBS: Sequence[Callable] = (
    _sweep_parser,
    _report_parser,
    _store_parser,
    _coord_check_parser,
    _intrinsic_dim_parser,
    _spectra_parser,
    _figures_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m toolkit", description="Hyperparameter-transfer lab.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for add in VERBS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the exit status (2 for a user's mistake)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.run(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `python -m toolkit report DIR | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed stdout
    return 0
