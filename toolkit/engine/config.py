"""What a training run is: the group's settings, its members, their run ids, the schedule.

A *group* is models of one shape (:class:`TrainConfig`) trained together; its
:class:`Member` s differ in learning rate, weight decay, seed and the multipliers
``init_sigma``, ``input_alpha`` and ``output_alpha``. A run's identity is
:func:`run_id`, a hash of every setting that changes its numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from toolkit.engine.catalogue import LANGUAGE_TASKS, MODELS, OPTIMIZERS, SCHEDULES
from toolkit.engine.parametrization import MUON_SCALINGS, Parametrization, check_optimizer
from toolkit.errors import InputError, check_choice, check_positive

MOMENTUM_DEFAULTS = {"muon": 0.95}
"""Momentum of an optimizer when none is given (every other optimizer: 0.9)."""

DECOUPLED_DECAY = ("adamw", "adam-atan2", "muon")
"""Optimizers whose weight decay shrinks the weight directly (and so can be LR-independent)."""

OPTIMIZER_SETTINGS: dict[str, tuple[str, ...]] = {
    "nesterov": ("muon",),
    "muon_scaling": ("muon",),
    "adam_lr": ("muon",),
    "adam_lr_ratio": ("muon",),
}
"""Settings recorded only for the optimizers that use them."""

RECORDED_WHEN_SET: dict[str, object] = {
    "nesterov": True,
    "muon_scaling": "fan_ratio",
    "adam_lr": None,
    "adam_lr_ratio": None,
    "heads": None,
    "base_head_dim": None,
    "weight_decay_exclude": "none",
    "independent_weight_decay": False,
    "eps_rule": "gradient",
    "alignment": "full",
    "lr_input": 1.0,
    "lr_hidden": 1.0,
    "lr_output": 1.0,
    "lr_vector": 1.0,
}
"""Settings recorded only when they differ from these values (their defaults)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything shared by the members of one group.

    Args:
        model: ``mlp``, ``resmlp`` or ``transformer`` (:data:`toolkit.engine.catalogue.MODELS`).
        task: a task name of :mod:`toolkit.engine.data`; default ``chars`` for a model that
            reads tokens (the transformer), else ``mnist1d``.
        parametrization: width/depth rules, base shape and multipliers.
        optimizer: ``sgd``, ``adam``, ``adamw``, ``adam-atan2`` or ``muon``.
        width: hidden width ``n`` (``d_model`` of the transformer).
        depth: hidden layers (``mlp``) or residual blocks (``resmlp``, ``transformer``).
        steps: optimizer steps.
        batch_size: examples per step per member.
        schedule: ``constant``, or ``cosine`` / ``linear`` decay to zero after
            ``warmup_steps`` of linear warmup.
        eval_every: evaluate train/val loss every this many steps (and at the end).
        eval_examples: examples of each split used for evaluation (a fixed subset); for
            a language task an example is one predicted token, rounded up to whole
            sequences.
        momentum, betas, eps: optimizer hyperparameters at base shape (``momentum`` is
            SGD's and Muon's, default 0.9 for SGD and 0.95 for Muon (Jordan et al. 2024);
            ``betas`` and ``eps`` Adam's and Muon's AdamW part's).
        nesterov, muon_scaling: Muon's Nesterov look-ahead and update scale
            (:data:`toolkit.engine.rules.MUON_SCALINGS`).
        adam_lr, adam_lr_ratio: the LR of Muon's AdamW part (embeddings, readout,
            vectors): ``adam_lr`` for every member, or ``adam_lr_ratio`` times each
            member's LR (default: the member's LR); at most one is set.
        head_dim, tie_embeddings: the transformer's head dimension and whether its readout
            is the token embedding (recorded for the transformer only).
        heads, base_head_dim: the transformer's fixed number of heads (``d_head`` then grows
            with width) and the base head dimension of its logit scale
            (:mod:`toolkit.engine.transformer`).
        divergence_factor: a loss above this times the member's first loss is divergence.
        study: a label stored with every run.
    """

    model: str = "mlp"
    task: str | None = None
    parametrization: Parametrization = field(default_factory=Parametrization)
    optimizer: str = "adam"
    width: int = 128
    depth: int = 3
    steps: int = 500
    batch_size: int = 128
    schedule: str = "constant"
    warmup_steps: int = 0
    eval_every: int = 100
    eval_examples: int = 2048
    activation: str = "relu"
    bias: bool = True
    prenorm: bool = True
    momentum: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    divergence_factor: float = 100.0
    study: str = ""
    head_dim: int = 16
    tie_embeddings: bool = False
    heads: int | None = None
    base_head_dim: int | None = None
    nesterov: bool = True
    muon_scaling: str = "fan_ratio"
    adam_lr: float | None = None
    adam_lr_ratio: float | None = None

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        tokens = MODELS[self.model].reads_tokens
        if self.task is None:
            object.__setattr__(self, "task", LANGUAGE_TASKS[0] if tokens else "mnist1d")
        if tokens != (self.task in LANGUAGE_TASKS):
            names = ", ".join(repr(name) for name in LANGUAGE_TASKS)
            allowed = names if tokens else f"any task but {names}"
            raise InputError(
                f"task={self.task!r} does not fit model={self.model!r}, which reads "
                f"{'token sequences' if tokens else 'feature vectors'}; allowed: {allowed}"
            )
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_optimizer(self.parametrization, self.optimizer)
        check_choice("schedule", self.schedule, SCHEDULES)
        for argument in (
            "width", "depth", "steps", "batch_size", "eval_every", "eval_examples", "head_dim"
        ):  # fmt: skip
            check_positive(argument, getattr(self, argument), integer=True)
        if not (isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps <= self.steps):
            raise InputError(f"warmup_steps={self.warmup_steps!r} must be an integer in [0, steps]")
        check_positive("eps", self.eps)
        check_positive("divergence_factor", self.divergence_factor)
        if self.momentum is None:
            object.__setattr__(self, "momentum", MOMENTUM_DEFAULTS.get(self.optimizer, 0.9))
        if not 0.0 <= self.momentum < 1.0:
            raise InputError(f"momentum={self.momentum!r} must be in [0, 1)")
        check_choice("muon_scaling", self.muon_scaling, MUON_SCALINGS)
        for argument in ("adam_lr", "adam_lr_ratio", "heads", "base_head_dim"):
            if getattr(self, argument) is not None:
                integer = argument in ("heads", "base_head_dim")
                check_positive(argument, getattr(self, argument), integer=integer)
        if self.adam_lr is not None and self.adam_lr_ratio is not None:
            raise InputError(
                f"adam_lr={self.adam_lr!r} and adam_lr_ratio={self.adam_lr_ratio!r} are both "
                "set: give Muon's AdamW part one LR or one ratio to the Muon LR, not both"
            )
        independent = self.parametrization.independent_weight_decay
        if independent and self.optimizer not in DECOUPLED_DECAY:
            raise InputError(
                f"independent_weight_decay=True needs decoupled decay; optimizer="
                f"{self.optimizer!r} adds wd * p to the gradient; allowed: "
                f"{', '.join(DECOUPLED_DECAY)}"
            )

    def model_options(self) -> object:
        """The model's options (its class's ``options`` dataclass) from this config's fields."""
        options = MODELS[self.model].options
        return options(**{f.name: getattr(self, f.name) for f in fields(options)})

    def model_kwargs(self) -> dict:
        """Keyword arguments of the model's constructor beyond shapes and parametrization."""
        return asdict(self.model_options())

    def optimizer_kwargs(self) -> dict:
        if self.optimizer == "sgd":
            return {"momentum": self.momentum}
        if self.optimizer == "muon":
            ratio = 1.0 if self.adam_lr_ratio is None else self.adam_lr_ratio
            return {"momentum": self.momentum, "betas": self.betas, "eps": self.eps,
                    "nesterov": self.nesterov, "scaling": self.muon_scaling,
                    "adam_lr": self.adam_lr, "adam_lr_ratio": ratio}  # fmt: skip
        return {"betas": self.betas, "eps": self.eps}

    def record(self) -> dict:
        """Flat, JSON-friendly description (the parametrization's fields prefixed).

        Settings added after stores were shipped (:data:`RECORDED_WHEN_SET`) appear only
        when they differ from their default, and an optimizer's own settings
        (:data:`OPTIMIZER_SETTINGS`) only for that optimizer, so earlier run ids stay valid.

        Settings that only some models have (a model's ``own_settings`` in the catalogue: the
        transformer's head dimension, tied embeddings, attention multiplier and query
        initialisation) appear for those models only, so the run ids of other models do not
        depend on them.
        """
        # Every field but the parametrization holds a plain value (a new field holding a
        # dataclass or a mutable container would need converting here); ``dataclasses.asdict``
        # deep-copied the parametrization only to drop it, about 0.4 ms a call, two a run.
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "parametrization"}
        out["betas"] = list(self.betas)
        p = self.parametrization
        out.update(
            parametrization=p.name,
            base_width=p.base_width,
            base_depth=p.base_depth,
            depth_rule=p.depth_rule if p.depth_alpha is None else f"alpha={p.depth_alpha:g}",
            depth_alpha=p.alpha,
            init_sigma=p.init_sigma,
            input_alpha=p.input_alpha,
            output_alpha=p.output_alpha,
            readout_zero_init=p.readout_zero_init,
            weight_decay_scaling=p.weight_decay_scaling,
            attn_alpha=p.attn_alpha,
            query_zero_init=p.query_zero_init,
            weight_decay_exclude=p.weight_decay_exclude,
            independent_weight_decay=p.independent_weight_decay,
            eps_rule=p.eps_rule,
            alignment=p.alignment,
            lr_input=p.lr_input,
            lr_hidden=p.lr_hidden,
            lr_output=p.lr_output,
            lr_vector=p.lr_vector,
        )
        own = MODELS[self.model].own_settings
        others = {name for model in MODELS.values() for name in model.own_settings} - set(own)
        others |= {
            name for name, users in OPTIMIZER_SETTINGS.items() if self.optimizer not in users
        }
        return {
            k: v
            for k, v in out.items()
            if k not in others and not (k in RECORDED_WHEN_SET and v == RECORDED_WHEN_SET[k])
        }


MEMBER_MULTIPLIERS = ("init_sigma", "input_alpha", "output_alpha")
"""Parametrization fields a :class:`Member` may override."""


@dataclass(frozen=True)
class Member:
    """What distinguishes one member of a group.

    ``lr`` and ``weight_decay`` are base values (the parametrization scales them per
    tensor); ``seed`` fixes the initialisation and the order of the data. ``init_sigma``,
    ``input_alpha`` and ``output_alpha`` override the group's
    :class:`~toolkit.engine.parametrization.Parametrization` for this member (``None``: the
    group's value); they change neither tensor shapes nor optimizer multipliers, so members
    that differ in them still train as one ensemble.
    """

    lr: float
    weight_decay: float = 0.0
    seed: int = 0
    init_sigma: float | None = None
    input_alpha: float | None = None
    output_alpha: float | None = None

    def multipliers(self) -> dict[str, float]:
        """The parametrization fields this member overrides, by name."""
        return {
            name: value for name in MEMBER_MULTIPLIERS if (value := getattr(self, name)) is not None
        }


def member_config(config: TrainConfig, member: Member) -> TrainConfig:
    """``config`` with ``member``'s multipliers applied to its parametrization."""
    overrides = member.multipliers()
    if not overrides:
        return config
    return replace(config, parametrization=config.parametrization.with_(**overrides))


def run_id(config: TrainConfig, member: Member) -> str:
    """Stable id of one run: a hash of every setting that changes its numbers.

    A member's multipliers enter through :func:`member_config`, so a member with
    ``output_alpha=2`` has the id of a lone member of a group whose parametrization has
    ``output_alpha=2``.
    """
    settings = member_config(config, member).record()
    settings.pop("study")
    settings.pop("eval_every")
    settings.update(lr=member.lr, weight_decay=member.weight_decay, seed=member.seed)
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def lr_factor(step: int, *, steps: int, schedule: str, warmup_steps: int = 0) -> float:
    """Schedule factor at ``step`` (0-based update index) of ``steps``: ``warmup_steps`` of
    linear warmup, then ``constant``, or ``cosine`` / ``linear`` decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(steps - warmup_steps, 1)
    progress = (step - warmup_steps) / span
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def check_members(members: Sequence[Member]) -> None:
    """Refuse an empty group and any member setting out of range (:class:`InputError`)."""
    if len(members) == 0:
        raise InputError("members=[] is empty: give at least one Member(lr, weight_decay, seed)")
    for member in members:
        check_positive("lr", member.lr)
        if not (math.isfinite(member.weight_decay) and member.weight_decay >= 0):
            raise InputError(f"weight_decay={member.weight_decay!r} must be a finite number >= 0")
        if not isinstance(member.seed, int) or member.seed < 0:
            raise InputError(f"seed={member.seed!r} must be a non-negative integer")
        for name, value in member.multipliers().items():
            check_positive(name, value)
