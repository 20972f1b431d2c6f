"""Command line: ``python -m toolkit <verb> ...``.

Every verb has ``--help`` and ``--json`` (machine-readable output on stdout).
A user's mistake exits with status 2 and one line on stderr naming the bad
value and what is allowed, never a traceback.

Flag names shared by the sweep-like verbs (a contract): ``--model``,
``--task``, ``--parametrization`` and ``--optimizer`` (comma lists),
``--widths``, ``--depths``, ``--lrs`` (comma list or ``2^a:2^b:n``),
``--weight-decays``, ``--seeds`` (a count), ``--steps``, ``--batch-size``,
``--out``, ``--json``.
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

from toolkit.engine.data import TASKS
from toolkit.engine.models import MODELS
from toolkit.engine.optim import OPTIMIZERS
from toolkit.engine.parametrization import (
    DEPTH_RULES,
    WEIGHT_DECAY_SCALINGS,
    WIDTH_RULES,
    Parametrization,
)
from toolkit.engine.projections import PROJECTIONS
from toolkit.engine.train import SCHEDULES, TrainConfig
from toolkit.errors import InputError, check_positive


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump becomes one line
        raise InputError(message)


def _list_of(convert: Callable, what: str, allowed: Sequence[str] | None = None) -> Callable:
    """An argparse type for comma lists: ``"128,512"`` -> ``[128, 512]``."""

    def parse(text: str) -> list:
        try:
            values = [convert(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of {what}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} is empty: give at least one value")
        for value in values if allowed is not None else ():
            if value not in allowed:
                choices = ", ".join(allowed)
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {choices}")
        return values

    return parse


int_list = _list_of(int, "integers")
float_list = _list_of(float, "numbers")


def _lrs(text: str) -> tuple[float, ...]:
    from toolkit.studies.sweep import parse_lrs

    try:
        return parse_lrs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# Sweep flags as data: flag -> (SweepSpec field, argparse type, help). Defaults
# come from SweepSpec (or the --spec file); a flag given on the command line
# overrides them.
SWEEP_FLAGS: dict[str, tuple[str, Callable, str]] = {
    "--study": ("study", str, "label stored with every run"),
    "--model": ("model", str, f"one of {', '.join(MODELS)}"),
    "--task": ("task", str, f"one of {', '.join(TASKS)}"),
    "--parametrization": (
        "parametrizations",
        _list_of(str, "names", sorted(WIDTH_RULES)),
        f"comma list of {', '.join(WIDTH_RULES)}",
    ),
    "--optimizer": (
        "optimizers",
        _list_of(str, "names", sorted(OPTIMIZERS)),
        f"comma list of {', '.join(OPTIMIZERS)}",
    ),
    "--widths": ("widths", int_list, "comma list of widths"),
    "--depths": ("depths", int_list, "hidden layers (mlp) or blocks (resmlp), comma list"),
    "--lrs": ("lrs", _lrs, "comma list, or 2^a:2^b:n for n log2-spaced values"),
    "--weight-decays": ("weight_decays", float_list, "comma list"),
    "--seeds": ("seeds", int, "number of seeds (0..N-1)"),
    "--steps": ("steps", int_list, "training steps, comma list"),
    "--batch-size": ("batch_sizes", int_list, "comma list"),
    "--schedule": ("schedules", _list_of(str, "names", SCHEDULES), ", ".join(SCHEDULES)),
    "--warmup-steps": ("warmup_steps", int, "linear warmup steps"),
    "--depth-rule": (
        "depth_rules",
        _list_of(str, "names", sorted(DEPTH_RULES)),
        f"comma list of {', '.join(DEPTH_RULES)}",
    ),
    "--base-width": ("base_width", int, "width at which every parametrization equals SP"),
    "--base-depth": ("base_depth", int, "depth at which depth rules are neutral"),
    "--init-sigma": ("init_sigma", float, "init std * sqrt(fan_in)"),
    "--input-alpha": ("input_alpha", float, "first-layer multiplier"),
    "--output-alpha": ("output_alpha", float, "readout multiplier"),
    "--weight-decay-scaling": (
        "weight_decay_scaling",
        str,
        f"one of {', '.join(WEIGHT_DECAY_SCALINGS)}",
    ),
    "--eval-every": ("eval_every", int, "steps between evaluations"),
    "--max-members": ("max_members", int, "largest ensemble per group"),
}


def _add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", help="TOML file with the sweep (flags override its values)")
    for flag, (_, kind, help_text) in SWEEP_FLAGS.items():
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument(
        "--readout-zero-init", action="store_true", default=None, help="zero-init the readout"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def sweep_specs(args: argparse.Namespace, *, extra: Sequence[str] = ()) -> list:
    """The sweep(s) described by ``--spec`` and the flags, validated (``extra``: study
    settings a spec file may hold besides the sweep's, see ``SweepSpec.from_toml``)."""
    from toolkit.studies.sweep import SweepSpec

    overrides = {
        field: getattr(args, flag[2:].replace("-", "_"))
        for flag, (field, _, _) in SWEEP_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    if args.readout_zero_init:
        overrides["readout_zero_init"] = True
    if args.spec:
        return [s.with_(**overrides) for s in SweepSpec.from_toml(args.spec, extra=extra)]
    return [SweepSpec(**overrides)]


def _sweep_parser(sub) -> None:
    parser = sub.add_parser(
        "sweep",
        help="train a grid of runs into a results store (resumes)",
        description=(
            "Train every run of a grid into the store at --out. Runs that share a shape train "
            "together as one batched ensemble; runs already in the store are skipped."
        ),
    )
    _add_sweep_flags(parser)
    parser.add_argument("--out", help="results store directory (required unless --dry-run)")
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--address", default=None, help="Ray cluster address (ray executor)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> None:
    from toolkit.store import Store
    from toolkit.studies.sweep import plan, run_local

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
    parser = sub.add_parser(
        "spectra",
        help="layer spectra and spectral-condition ratios recorded during training",
        description=(
            "Train the grid of the sweep flags and print every weight matrix's spectral "
            "statistics (sigma_max, stable_rank, fro_norm, cond_ratio, delta_cond_ratio, "
            "update_cond_ratio, act_rms, alpha where reliable) at log-spaced steps."
        ),
    )
    _add_sweep_flags(parser)
    parser.set_defaults(run=_run_spectra)


def _run_spectra(args: argparse.Namespace) -> None:
    from toolkit.studies.spectra_study import spectra_records

    records = spectra_records(sweep_specs(args), device=args.device)
    if args.json:
        _print_json(records)
        return
    frame = pl.DataFrame(records)
    last = frame.filter(pl.col("step") == pl.col("step").max())
    _print_table(
        last.group_by("parametrization", "width", "layer", "stat")
        .agg(pl.col("value").mean())
        .pivot(on="stat", index=["parametrization", "width", "layer"], values="value")
        .sort("parametrization", "layer", "width")
    )


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
    parser.add_argument("--model", choices=sorted(MODELS))
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument(
        "--parametrization",
        type=_list_of(str, "names", sorted(WIDTH_RULES)),
        help=f"comma list of {', '.join(WIDTH_RULES)}",
    )
    parser.add_argument(
        "--optimizer",
        type=_list_of(str, "names", sorted(OPTIMIZERS)),
        help=f"comma list of {', '.join(OPTIMIZERS)}",
    )
    parser.add_argument("--widths", type=int_list, help="comma list of widths")
    parser.add_argument("--depths", type=int_list, help="hidden layers, comma list")
    parser.add_argument("--base-width", type=int, help="default: the smallest width")
    parser.add_argument("--lrs", type=_lrs, help="baseline LRs: comma list, or 2^a:2^b:n")
    parser.add_argument("--subspace-lrs", type=_lrs, help="LRs of theta_d, as --lrs")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    parser.add_argument("--steps", type=int_list, help="training steps, comma list")
    parser.add_argument("--batch-size", type=int_list, help="comma list")
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


# intrinsic-dim flag -> spec key (toolkit.studies.intrinsic.KEYS)
_INTRINSIC_FLAGS = {
    "model": "model", "task": "task", "parametrization": "parametrizations",
    "optimizer": "optimizers", "widths": "widths", "depths": "depths",
    "base_width": "base_width", "lrs": "lrs", "subspace_lrs": "subspace_lrs", "seeds": "seeds",
    "steps": "steps", "batch_size": "batch_sizes",
}  # fmt: skip


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
        key: getattr(args, flag)
        for flag, key in _INTRINSIC_FLAGS.items()
        if getattr(args, flag) is not None
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


def _coord_check_parser(sub) -> None:
    parser = sub.add_parser(
        "coord-check",
        help="activation size per layer vs width over the first steps",
        description=(
            "Coordinate check: train each width for a few steps at a large LR and record "
            "every layer's mean |activation| (l1) and RMS at steps 0..STEPS."
        ),
    )
    parser.add_argument("--model", default="mlp", choices=sorted(MODELS))
    parser.add_argument(
        "--task", default=None, choices=TASKS, help="default: chars (transformer), else mnist1d"
    )
    parser.add_argument("--parametrization", default="mup", choices=sorted(WIDTH_RULES))
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    parser.add_argument("--depth", type=int, default=3, help="hidden layers or blocks")
    parser.add_argument("--depth-rule", default="none", choices=sorted(DEPTH_RULES))
    parser.add_argument("--base-depth", type=int, default=None, help="default: --depth")
    parser.add_argument("--init-sigma", type=float, default=1.0)
    parser.add_argument("--output-alpha", type=float, default=1.0)
    parser.add_argument("--readout-zero-init", action="store_true")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.01, help="LR at every width")
    parser.add_argument("--widths", type=int_list, default=[128, 512], help="comma list")
    parser.add_argument("--base-width", type=int, default=None, help="default: smallest width")
    parser.add_argument("--steps", type=int, default=3, help="updates; records at 0..STEPS")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds averaged")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.set_defaults(run=_run_coord_check)


def _run_coord_check(args: argparse.Namespace) -> None:
    from toolkit.studies.coord_check import coord_check, width_ratios

    for width in args.widths:
        check_positive("widths", width, integer=True)
    if args.seeds < 1:
        raise InputError(f"seeds={args.seeds!r} must be a positive integer (a count)")
    if args.seed < 0:
        raise InputError(f"seed={args.seed!r} must be a non-negative integer")
    param = Parametrization(
        name=args.parametrization,
        base_width=min(args.widths) if args.base_width is None else args.base_width,
        depth_rule=args.depth_rule,
        base_depth=args.depth if args.base_depth is None else args.base_depth,
        init_sigma=args.init_sigma,
        output_alpha=args.output_alpha,
        readout_zero_init=args.readout_zero_init,
    )
    config = TrainConfig(
        model=args.model,
        task=args.task,
        parametrization=param,
        optimizer=args.optimizer,
        width=min(args.widths),
        depth=args.depth,
        steps=args.steps,
        batch_size=args.batch_size,
    )
    seeds = range(args.seed, args.seed + args.seeds)
    frame = coord_check(config, args.widths, lr=args.lr, seeds=seeds, device=args.device)
    if args.json:
        _print_json(frame.to_dicts())
        return
    table = width_ratios(frame).pivot(on="step", index=["layer", "width"], values="ratio")
    print(f"mean |activation| relative to width {min(args.widths)} (columns: step)")
    _print_table(table)


def _print_table(frame: pl.DataFrame) -> None:
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=160,
        tbl_hide_dataframe_shape=True,
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
