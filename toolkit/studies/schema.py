"""The sweep schema: every setting a sweep can take, as data.

Each :class:`Setting` of :data:`SCHEMA` has a key, type, default, checks and *axis*:

* ``spec``: one value for the whole sweep (study label, model, task, base shape,
  probes, planning bounds);
* ``shape``: a grid axis whose values change what a group trains (width, depth,
  optimizer, momentum, activation, ...): each value is its own group;
* ``member``: a grid axis whose values change no tensor shape (learning rate, weight
  decay, the multipliers ``init_sigma``, ``input_alpha``, ``output_alpha``; seeds
  too): its values are members of one batched ensemble
  (:class:`~toolkit.engine.config.Member`).

A grid setting has a plural key for a list (``widths = [64, 128]``) and its singular
name, the :class:`~toolkit.engine.config.TrainConfig` / :class:`Parametrization`
field, for one value (``width = 64``); the two coincide for ``steps``,
``warmup_steps``, ``eps``, ``eval_examples``, ``tie_embeddings``, ``nesterov`` and
``independent_weight_decay``, which take either
form. A float grid may also be a log2 range ``"2^a:2^b:n"``. The TOML reader
(:meth:`toolkit.studies.spec.SweepSpec.from_toml`) and the command line
(:mod:`toolkit.ui.cli`) both read this schema, so each check is written once: types
exactly (no string for a bool, no float for an int), known keys only, no empty
lists, ranges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from functools import partial

from toolkit.engine.catalogue import ACTIVATIONS, MODELS, OPTIMIZERS, PROBES, SCHEDULES, TASKS
from toolkit.engine.config import Member, TrainConfig
from toolkit.engine.parametrization import (
    ALIGNMENTS,
    DEPTH_RULES,
    EPSILON_RULES,
    MUON_SCALINGS,
    WEIGHT_DECAY_EXCLUSIONS,
    WEIGHT_DECAY_SCALINGS,
    WIDTH_RULES,
    Parametrization,
)
from toolkit.errors import InputError, check_positive

_LOG2_RANGE = re.compile(r"^\s*2\^(-?\d+(?:\.\d+)?)\s*:\s*2\^(-?\d+(?:\.\d+)?)\s*:\s*(\d+)\s*$")


class Axis(StrEnum):
    """How a setting enters a sweep (see the module docstring)."""

    SPEC = "spec"
    SHAPE = "shape"
    MEMBER = "member"


def _finite_nonnegative(argument: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"{argument}={value!r} must be a finite number >= 0")


def _nonnegative_integer(argument: str, value: int) -> None:
    if value < 0:
        raise InputError(f"{argument}={value!r} must be a non-negative integer")


def _unit_interval(argument: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise InputError(f"{argument}={value!r} must be in [0, 1)")


@dataclass(frozen=True)
class Setting:
    """One setting of a sweep: where it goes, its type, default and checks.

    ``target`` is ``config``, ``parametrization`` or ``member`` (the field ``field``,
    default ``name``, of :class:`TrainConfig`, :class:`Parametrization` or
    :class:`Member`) or ``spec`` (used by the sweep itself). ``name`` is the singular
    name, ``key`` the plural grid key (both the same for a ``spec`` setting).
    """

    name: str
    type: type
    axis: Axis
    target: str
    help: str
    key: str = ""
    default: object = None
    choices: tuple = ()
    check: Callable[[str, object], None] | None = None
    optional: bool = False  # None is allowed (and then means "not set")
    field: str = ""

    @property
    def field_name(self) -> str:
        """The :class:`TrainConfig` / :class:`Parametrization` / :class:`Member` field."""
        return self.field or self.name

    @property
    def is_grid(self) -> bool:
        return self.axis is not Axis.SPEC

    def value(self, argument: str, value: object) -> object:
        """``value`` checked exactly against this setting's type, choices and range
        (an int is accepted for a float; a bool is never a number)."""
        if value is None and self.optional:
            return None
        ok = isinstance(value, self.type) and (self.type is bool or not isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            given = _VALUE_WORDS.get(type(value), type(value).__name__)
            raise InputError(f"{argument}={value!r} is {given}; allowed: {TYPE_WORDS[self.type]}")
        if self.choices and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise InputError(f"{self.name}={value!r} is not one of {allowed}")
        if self.type is float and not math.isfinite(value) and self.check is None:
            raise InputError(f"{argument}={value!r} must be a finite number")
        if self.check is not None:
            self.check(argument, value)
        return value

    def values(self, argument: str, given: object) -> tuple:
        """A grid's values from a list (or, under the singular name, one value)."""
        if isinstance(given, str) and self.type is float and _LOG2_RANGE.match(given):
            return parse_numbers(argument, given)
        if argument == self.key and isinstance(given, list | tuple):
            if not given:
                raise InputError(f"{argument}={given!r} is empty: give at least one value")
            return tuple(self.value(argument, v) for v in given)
        if argument == self.name != self.key and isinstance(given, list | tuple):
            raise InputError(
                f"{argument}={given!r} is a list; allowed: one value ({TYPE_WORDS[self.type]}), "
                f"or {self.key} = a list"
            )
        if argument == self.key and argument != self.name:
            raise InputError(
                f"{argument}={given!r} is not a list; allowed: a list of "
                f"{TYPE_WORDS[self.type]}, or {self.name} = one value"
            )
        return (self.value(argument, given),)

    def describe(self) -> str:
        """One line for ``--help``: what it is, what it takes, its axis."""
        listed = "comma list of " if self.is_grid or self.default == () else ""
        allowed = ", ".join(map(str, self.choices)) or TYPE_WORDS[self.type]
        return f"{self.help} ({listed}{allowed}; {self.axis} setting)"

    def parse(self, argument: str, text: str) -> object:
        """The value(s) of a command-line flag: a comma list for a grid or a list setting."""
        if self.type is float and _LOG2_RANGE.match(text):
            return parse_numbers(argument, text)
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise InputError(f"{argument}={text!r} is empty: give at least one value")
        try:
            parsed = tuple(_FROM_TEXT[self.type](t) for t in items)
        except ValueError:
            raise InputError(
                f"{argument}={text!r} is not a comma list of {TYPE_WORDS[self.type]}"
            ) from None
        values = tuple(self.value(argument, v) for v in parsed)
        if self.is_grid or self.default == ():
            return values
        if len(values) > 1:
            raise InputError(f"{argument}={text!r} takes one value")
        return values[0]


def _bool_from_text(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


_FROM_TEXT: dict[type, Callable[[str], object]] = {
    int: int, float: float, bool: _bool_from_text, str: str,
}  # fmt: skip
TYPE_WORDS = {int: "integers", float: "numbers", bool: "true or false", str: "strings"}
_VALUE_WORDS = {int: "an integer", float: "a float", bool: "a bool", str: "a string",
                list: "a list", dict: "a table"}  # fmt: skip


def parse_numbers(argument: str, text: str) -> tuple[float, ...]:
    """Numbers from ``"1e-3,3e-3"`` or a log2 range ``"2^-14:2^-2:13"``.

    The range form gives ``n`` values evenly spaced in log2 from ``2^a`` to ``2^b``
    inclusive (``2^-14:2^-2:13`` is every power of two in between).
    """
    match = _LOG2_RANGE.match(text)
    if match:
        lo, hi, n = float(match[1]), float(match[2]), int(match[3])
        if n < 1 or (n == 1 and lo != hi) or hi < lo:
            raise InputError(
                f"{argument}={text!r}: need 2^a:2^b:n with a <= b and n >= 2 (or a == b)"
            )
        try:
            if n == 1:
                return (2.0**lo,)
            return tuple(2.0 ** (lo + (hi - lo) * i / (n - 1)) for i in range(n))
        except OverflowError:
            raise InputError(f"{argument}={text!r} overflows a float") from None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"{argument}={text!r} is neither a comma list of numbers nor a range like 2^-14:2^-2:13"
        ) from None
    if not values:
        raise InputError(f"{argument}={text!r} is empty")
    return values


def _default(owner: type, name: str) -> object:
    (f,) = (f for f in fields(owner) if f.name == name)
    return f.default if f.default is not MISSING else f.default_factory()


def _grid(owner: type, name: str, type_: type, axis: Axis, help_text: str, *, key: str = "",
          default: object = MISSING, field: str = "", **more) -> Setting:  # fmt: skip
    target = {TrainConfig: "config", Parametrization: "parametrization", Member: "member"}[owner]
    value = _default(owner, field or name) if default is MISSING else default
    return Setting(name, type_, axis, target, help_text, key=key or f"{name}s", default=value,
                   field=field, **more)  # fmt: skip


def _spec(name: str, type_: type, default: object, help_text: str, **more) -> Setting:
    return Setting(name, type_, Axis.SPEC, "spec", help_text, key=name, default=default, **more)


_positive = check_positive
_positive_int = partial(check_positive, integer=True)
C, P, M = TrainConfig, Parametrization, Member

# Shape axes first, in the order runs have always been planned (group order).
# fmt: off
SCHEMA: tuple[Setting, ...] = (
    _spec("study", str, "", "label stored with every run"),
    _spec("model", str, "mlp", "model", choices=tuple(MODELS)),
    _spec("task", str, None, "task (default: chars for a model that reads tokens, else "
          "mnist1d)", choices=TASKS, optional=True),
    _grid(P, "parametrization", str, Axis.SHAPE, "width rule", field="name", default="mup",
          choices=tuple(WIDTH_RULES)),
    _grid(P, "depth_rule", str, Axis.SHAPE, "depth rule", choices=tuple(DEPTH_RULES)),
    _grid(C, "optimizer", str, Axis.SHAPE, "optimizer", choices=OPTIMIZERS),
    _grid(C, "width", int, Axis.SHAPE, "hidden width", default=64, check=_positive_int),
    _grid(C, "depth", int, Axis.SHAPE, "hidden layers (mlp) or blocks", check=_positive_int),
    _grid(C, "steps", int, Axis.SHAPE, "training steps", key="steps", check=_positive_int),
    _grid(C, "batch_size", int, Axis.SHAPE, "examples per step", check=_positive_int),
    _grid(C, "schedule", str, Axis.SHAPE, "LR schedule", choices=SCHEDULES),
    _grid(C, "warmup_steps", int, Axis.SHAPE, "linear warmup steps (at most steps)",
          key="warmup_steps", check=_nonnegative_integer),
    _grid(P, "readout_zero_init", bool, Axis.SHAPE, "zero-init the readout"),
    _grid(P, "weight_decay_scaling", str, Axis.SHAPE, "how weight decay scales with width",
          choices=WEIGHT_DECAY_SCALINGS),
    _grid(P, "depth_alpha", float, Axis.SHAPE, "branch exponent (overrides depth_rule)",
          check=_positive, optional=True),
    _grid(P, "attn_alpha", float, Axis.SHAPE, "attention-logit multiplier", check=_positive),
    _grid(P, "query_zero_init", bool, Axis.SHAPE, "zero-init attention queries"),
    _grid(C, "activation", str, Axis.SHAPE, "hidden nonlinearity", choices=ACTIVATIONS),
    _grid(C, "bias", bool, Axis.SHAPE, "layers have biases", key="biases"),
    _grid(C, "prenorm", bool, Axis.SHAPE, "pre-norm residual blocks (resmlp)"),
    _grid(C, "momentum", float, Axis.SHAPE, "SGD / Muon momentum (default 0.9 / 0.95)",
          check=_unit_interval, optional=True),
    _grid(C, "nesterov", bool, Axis.SHAPE, "Muon's Nesterov look-ahead", key="nesterov"),
    _grid(C, "muon_scaling", str, Axis.SHAPE, "scale of Muon's orthogonalised update",
          choices=tuple(MUON_SCALINGS)),
    _grid(C, "adam_lr", float, Axis.SHAPE, "LR of Muon's AdamW part (default: the Muon LR)",
          check=_positive, optional=True),
    _grid(C, "adam_lr_ratio", float, Axis.SHAPE, "LR of Muon's AdamW part / the Muon LR",
          check=_positive, optional=True),
    _grid(P, "eps_rule", str, Axis.SHAPE, "how Adam epsilon scales", choices=EPSILON_RULES),
    _grid(P, "weight_decay_exclude", str, Axis.SHAPE, "tensors never decayed",
          choices=WEIGHT_DECAY_EXCLUSIONS),
    _grid(P, "independent_weight_decay", bool, Axis.SHAPE, "decay by wd, not lr * wd",
          key="independent_weight_decay"),
    _grid(C, "eps", float, Axis.SHAPE, "Adam epsilon at base shape", key="eps",
          check=_positive),
    _grid(P, "alignment", str, Axis.SHAPE, "alignment assumption of Everett et al.'s width "
          "rules (*-everett)", choices=ALIGNMENTS),
    _grid(P, "lr_input", float, Axis.SHAPE, "LR constant of input tensors (x the width rule)",
          check=_positive),
    _grid(P, "lr_hidden", float, Axis.SHAPE, "LR constant of hidden tensors", check=_positive),
    _grid(P, "lr_output", float, Axis.SHAPE, "LR constant of output tensors", check=_positive),
    _grid(P, "lr_vector", float, Axis.SHAPE, "LR constant of vector tensors (biases, gains)",
          check=_positive),
    _grid(C, "head_dim", int, Axis.SHAPE, "transformer head dimension", check=_positive_int),
    _grid(C, "heads", int, Axis.SHAPE, "fixed number of transformer heads (head dim grows)",
          check=_positive_int, optional=True),
    _grid(C, "base_head_dim", int, Axis.SHAPE, "base head dimension of the attention scale",
          check=_positive_int, optional=True),
    _grid(C, "tie_embeddings", bool, Axis.SHAPE, "transformer readout = token embedding",
          key="tie_embeddings"),
    _grid(C, "eval_examples", int, Axis.SHAPE, "examples per evaluation", key="eval_examples",
          check=_positive_int),
    _grid(C, "divergence_factor", float, Axis.SHAPE, "loss / first loss that is divergence",
          check=_positive),
    _grid(M, "lr", float, Axis.MEMBER, "learning rate (a list, or 2^a:2^b:n)",
          default=tuple(2.0**k for k in range(-12, -3)), check=_positive),
    _grid(M, "weight_decay", float, Axis.MEMBER, "weight decay", check=_finite_nonnegative),
    _grid(M, "init_sigma", float, Axis.MEMBER, "init std * sqrt(fan_in)", default=1.0,
          check=_positive),
    _grid(M, "input_alpha", float, Axis.MEMBER, "first-layer multiplier", default=1.0,
          check=_positive),
    _grid(M, "output_alpha", float, Axis.MEMBER, "readout multiplier", default=1.0,
          check=_positive),
    _spec("seeds", int, 1, "number of seeds (seed .. seed + seeds - 1)", check=_positive_int),
    _spec("seed", int, 0, "first seed", check=_nonnegative_integer),
    _spec("base_width", int, None, "width at which every parametrization equals SP (default: "
          "the smallest width)", check=_positive_int, optional=True),
    _spec("base_depth", int, None, "depth at which depth rules are neutral (default: the "
          "smallest depth)", check=_positive_int, optional=True),
    _spec("eval_every", int, 100, "steps between evaluations", check=_positive_int),
    _spec("probes", str, (), "probes recorded while training", choices=PROBES),
    _spec("probe_points", int, 8, "log-spaced probe steps per run", check=_positive_int),
    _spec("probe_steps", int, (), "explicit probe steps (instead of probe_points)",
          check=_nonnegative_integer),
    _spec("max_members", int, 64, "largest ensemble per group", check=_positive_int),
    _spec("memory_budget_gb", float, 2.0, "memory bound of a group (GiB)", check=_positive),
    _spec("max_runs", int, 20_000, "runs above which a dry run warns and a sweep is refused",
          check=_positive_int),
    _spec("max_hours", float, 24.0, "estimated hours above which a dry run warns and a sweep "
          "is refused", check=_positive),
)
# fmt: on

SETTINGS: dict[str, Setting] = {s.key: s for s in SCHEMA}
"""The schema by key (the plural key of a grid)."""

SETTINGS_BY_FIELD: dict[str, Setting] = {s.field_name: s for s in SCHEMA}
"""The schema by the field each setting fills."""

_BY_NAME: dict[str, Setting] = {s.name: s for s in SCHEMA if s.is_grid and s.name != s.key}


def setting(argument: str) -> Setting:
    """The schema row named ``argument`` (a key or a grid's singular name)."""
    found = SETTINGS.get(argument) or _BY_NAME.get(argument)
    if found is None:
        raise InputError(
            f"unknown sweep setting {argument!r}; allowed: {', '.join(sorted(known_keys()))}"
        )
    return found


def known_keys() -> set[str]:
    """Every key a spec may hold: the settings' keys and the grids' singular names."""
    return set(SETTINGS) | set(_BY_NAME)
