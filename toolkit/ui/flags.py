"""Command-line flags generated from the sweep schema (:data:`toolkit.studies.schema.SCHEMA`).

Every sweep-like verb shares them: one flag per setting, a grid under its plural and
its singular name (``--widths 64,128``, ``--output-alpha 2``), each value parsed and
checked by the schema under the flag's own name; plus ``--spec``, ``--device`` and
``--json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from toolkit.studies.schema import SCHEMA, Setting
from toolkit.studies.spec import SweepSpec


class SettingFlag(argparse.Action):
    """A sweep setting's flag: its value parsed and checked by the schema under the flag's
    own name (``--lr -1`` says ``lr=-1.0``); a bare boolean flag means true."""

    def __init__(self, option_strings: list[str], dest: str, *, setting: Setting, **kwargs):
        self.setting = setting
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        argument = option_string.removeprefix("--").replace("-", "_")
        value = (True,) if values is None else self.setting.parse(argument, values)
        setattr(namespace, self.dest, value)


def device(text: str) -> str:
    """``--device``: a torch device this machine has (``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    if text == "cpu":  # every machine has one; torch is not imported to say so
        return text
    import torch

    try:
        kind = torch.device(text).type
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"device={text!r} is not a torch device; allowed: cpu, cuda, cuda:N, mps"
        ) from None
    present = {"cpu": True, "cuda": torch.cuda.is_available(),
               "mps": torch.backends.mps.is_available()}  # fmt: skip
    if not present.get(kind, False):
        have = ", ".join(name for name, ok in present.items() if ok)
        raise argparse.ArgumentTypeError(f"device={text!r} is not available on this machine; "
                                         f"allowed here: {have}")  # fmt: skip
    index = torch.device(text).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"device={text!r}: this machine has {torch.cuda.device_count()} CUDA devices"
        )
    return text


def flag_names(setting: Setting) -> list[str]:
    names = [setting.key] if not setting.is_grid else [setting.key, setting.name]
    return ["--" + name.replace("_", "-") for name in dict.fromkeys(names)]


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """``--spec``, ``--device``, ``--json`` and one flag per setting of the sweep schema
    (:data:`toolkit.studies.spec.SCHEMA`): a grid takes a comma list under its plural
    and its singular name (``--widths 64,128``, ``--output-alpha 2``)."""
    parser.add_argument("--spec", help="TOML file with the sweep (flags override its values)")
    for setting in SCHEMA:
        parser.add_argument(
            *flag_names(setting),
            dest=setting.key,
            action=SettingFlag,
            setting=setting,
            nargs="?" if setting.type is bool else None,
            default=None,
            help=setting.describe(),
        )
    parser.add_argument("--device", default="cpu", type=device, help="torch device (default: cpu)")
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


def sweep_verb(sub, verb: str, run: Callable, help_text: str, description: str):
    """A verb that reads a sweep (``--spec`` and the schema's flags) and runs ``run``."""
    parser = sub.add_parser(verb, help=help_text, description=description)
    add_sweep_flags(parser)
    parser.set_defaults(run=run)
    return parser
