"""Command line: ``python -m toolkit <verb> ...``.

Every verb has ``--help`` and ``--json`` (machine-readable output on stdout).
A user's mistake exits with status 2 and one line on stderr naming the bad
value and what is allowed, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import polars as pl

from toolkit.data import TASKS
from toolkit.models import MODELS
from toolkit.optim import OPTIMIZERS
from toolkit.parametrization import DEPTH_RULES, WIDTH_RULES, Parametrization, check_positive
from toolkit.train import TrainConfig


class UsageError(Exception):
    """A user's mistake on the command line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage dump becomes one line
        raise UsageError(message)


def int_list(text: str) -> list[int]:
    """``"128,512"`` -> ``[128, 512]``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} is empty: give at least one integer")
    return values


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="mlp", choices=sorted(MODELS), help="model (default: mlp)"
    )
    parser.add_argument("--task", default="mnist1d", choices=TASKS, help="task (default: mnist1d)")
    parser.add_argument(
        "--parametrization",
        default="mup",
        choices=sorted(WIDTH_RULES),
        help="width rules (default: mup)",
    )
    parser.add_argument(
        "--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="default: adam"
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=3,
        help="hidden layers (mlp) or residual blocks (resmlp); default 3",
    )
    parser.add_argument(
        "--depth-rule", default="none", choices=sorted(DEPTH_RULES), help="default: none"
    )
    parser.add_argument(
        "--base-depth", type=int, default=None, help="depth at which the depth rule is neutral"
    )
    parser.add_argument(
        "--init-sigma", type=float, default=1.0, help="init std * sqrt(fan_in); default 1"
    )
    parser.add_argument(
        "--output-alpha", type=float, default=1.0, help="readout multiplier; default 1"
    )
    parser.add_argument(
        "--readout-zero-init", action="store_true", help="initialise the readout to zero"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="default: 128")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def _coord_check_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "coord-check",
        help="activation size per layer vs width over the first steps",
        description=(
            "Coordinate check: train each width for a few steps at a large LR and record "
            "every layer's mean |activation| (l1) and RMS at steps 0..STEPS."
        ),
    )
    _add_model_flags(parser)
    parser.add_argument(
        "--lr", type=float, default=0.01, help="learning rate at every width (default 0.01)"
    )
    parser.add_argument(
        "--widths", type=int_list, default=[128, 512], help="comma list (default 128,512)"
    )
    parser.add_argument(
        "--base-width", type=int, default=None, help="base width (default: smallest width)"
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="updates; records at 0..STEPS (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds averaged (default 1)")
    parser.set_defaults(run=_run_coord_check)
    return parser


def _train_config(
    args: argparse.Namespace, *, width: int, base_width: int, steps: int
) -> TrainConfig:
    base_depth = args.depth if args.base_depth is None else args.base_depth
    param = Parametrization(
        name=args.parametrization,
        base_width=base_width,
        depth_rule=args.depth_rule,
        base_depth=base_depth,
        init_sigma=args.init_sigma,
        output_alpha=args.output_alpha,
        readout_zero_init=args.readout_zero_init,
    )
    return TrainConfig(
        model=args.model,
        task=args.task,
        parametrization=param,
        optimizer=args.optimizer,
        width=width,
        depth=args.depth,
        steps=steps,
        batch_size=args.batch_size,
    )


def _run_coord_check(args: argparse.Namespace) -> None:
    from toolkit.coord_check import coord_check, width_ratios

    for width in args.widths:
        check_positive("widths", width, integer=True)
    if args.seeds < 1:
        raise ValueError(f"seeds={args.seeds!r} must be a positive integer (a count)")
    if args.seed < 0:
        raise ValueError(f"seed={args.seed!r} must be a non-negative integer")
    base_width = min(args.widths) if args.base_width is None else args.base_width
    config = _train_config(args, width=min(args.widths), base_width=base_width, steps=args.steps)
    frame = coord_check(
        config,
        args.widths,
        lr=args.lr,
        seeds=range(args.seed, args.seed + args.seeds),
        device=args.device,
    )
    if args.json:
        _print_json(frame.to_dicts())
        return
    table = width_ratios(frame).pivot(on="step", index=["layer", "width"], values="ratio")
    print(f"mean |activation| relative to width {min(args.widths)} (columns: step)")
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, float_precision=3):
        print(table)


def _print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, allow_nan=True)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m toolkit", description="Hyperparameter-transfer lab.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for add in VERBS:
        add(sub)
    return parser


VERBS: Sequence[Callable] = (_coord_check_parser,)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the exit status (2 for a user's mistake)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.run(args)
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
