"""Intrinsic dimension of fine-tuning: adapting a pre-trained model needs fewer directions.

Aghajanyan, Zettlemoyer, Gupta 2020 ("Intrinsic dimensionality explains the
effectiveness of language model fine-tuning"): with ``theta0`` a pre-trained
model, ``d_int`` of adapting to a second task is much lower than from a random
``theta0``. :func:`finetune_intrinsic_dim` measures both on two halves of a
classification task's classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import polars as pl
import torch

from toolkit.analysis.intrinsic import IntrinsicDimension, best_lr
from toolkit.engine.data import Task, load_task
from toolkit.engine.parametrization import Role
from toolkit.engine.train import Member, ProbeContext, TrainConfig, build_model, train
from toolkit.errors import InputError, check_positive
from toolkit.studies.intrinsic_search import Start, final_metrics, measure_intrinsic_dim
from toolkit.studies.intrinsic_settings import Measurement


def class_subtask(task: Task, classes: Sequence[int]) -> Task:
    """The examples of ``classes`` only, relabelled ``0 .. len(classes)-1`` in that order."""
    if task.kind != "classification":
        raise InputError(f"task {task.name!r} is {task.kind}: class subsets need classification")
    if len(classes) == 0 or len(set(classes)) != len(classes):
        raise InputError(f"classes={list(classes)!r} must be a non-empty list of distinct labels")
    for c in classes:
        if not isinstance(c, int) or not 0 <= c < task.d_out:
            raise InputError(f"class {c!r} is not a label of {task.name!r} (0..{task.d_out - 1})")
    relabel = torch.full((task.d_out,), -1, dtype=torch.long)
    relabel[torch.tensor(list(classes))] = torch.arange(len(classes))

    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = relabel.to(y.device)[y] >= 0
        return x[keep], relabel.to(y.device)[y[keep]]

    x_train, y_train = pick(task.x_train, task.y_train)
    x_val, y_val = pick(task.x_val, task.y_val)
    return replace(task, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)


def pretrain(
    config: TrainConfig,
    *,
    seeds: Sequence[int],
    lrs: Sequence[float],
    task: Task,
    device: str | torch.device = "cpu",
) -> dict[int, dict[str, torch.Tensor]]:
    """Full training of each seed at the best of ``lrs``; ``seed -> {name: final tensor}``.

    The trained tensors are read by a probe at the last step.
    """
    members = [Member(lr=float(lr), seed=int(s)) for s in seeds for lr in lrs]
    final: dict[str, torch.Tensor] = {}

    def keep(ctx: ProbeContext) -> list[dict]:
        final.update({s.name: p.detach().cpu().clone() for s, p in ctx.model.named_tensors()})
        return []

    runs = train(
        config, members, task=task, probes=[keep], probe_steps=[config.steps], device=device
    ).runs
    frame = final_metrics(runs, task, config).with_columns(
        key=pl.lit(0), row=pl.int_range(pl.len())
    )
    return {
        int(seed): {name: value[row] for name, value in final.items()}
        for seed, row in best_lr(frame, ["key"]).select("seed", "row").iter_rows()
    }


def fresh_readout(
    config: TrainConfig, task: Task, start: Start
) -> dict[int, dict[str, torch.Tensor]]:
    """``start`` with the readout (output-role weight and its bias) re-initialised for ``task``.

    As when a pre-trained body gets a new classification head (Aghajanyan et
    al. 2020): the new readout comes from each seed's own initialisation, so it
    may have a different number of outputs.
    """
    seeds = list(start)
    model = build_model(config, task.d_in, task.d_out, seeds)
    readout = {s.name for s in model.specs if s.role in (Role.OUTPUT, Role.FIXED)}
    fresh = {s.name: p.detach() for s, p in model.named_tensors()}
    return {
        seed: {
            name: fresh[name][i] if name in readout else value
            for name, value in start[seed].items()
        }
        for i, seed in enumerate(seeds)
    }


def finetune_intrinsic_dim(
    measurement: Measurement,
    *,
    source_classes: Sequence[int],
    target_classes: Sequence[int],
    pretrain_steps: int,
    task: Task | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, IntrinsicDimension]:
    """``d_int`` of adapting a pre-trained model to a new task, and of learning it from scratch.

    The measurement's classification task (or ``task``, loaded) is split into a
    *source* task (``source_classes``) and a *target* task (``target_classes``),
    each relabelled ``0..k-1``. Pre-training is ``pretrain_steps`` of full
    training on the source task at the best of the measurement's ``lrs``; its
    readout is then replaced by a fresh one (:func:`fresh_readout`). ``d_int`` on
    the target task is measured twice with the measurement's budget: from the
    pre-trained weights (baseline: full fine-tuning from them) and from the
    seeded initialisation (baseline: full training from scratch).

    Returns:
        ``{"pretrained": ..., "scratch": ...}``.
    """
    check_positive("pretrain_steps", pretrain_steps, integer=True)
    task = task or load_task(measurement.task)
    source = class_subtask(task, source_classes)
    target = class_subtask(task, target_classes)
    config = measurement.config()
    pre_config = replace(config, steps=pretrain_steps, eval_every=pretrain_steps)
    seeds = range(measurement.seeds)
    start = pretrain(pre_config, seeds=seeds, lrs=measurement.lrs, task=source, device=device)
    start = fresh_readout(config, target, start)
    return {
        name: measure_intrinsic_dim(measurement, task=target, start=begin, device=device)
        for name, begin in (("pretrained", start), ("scratch", None))
    }
