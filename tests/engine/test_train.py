"""Claims about the training loop: members, their multipliers and their run ids."""

from __future__ import annotations

import json

import polars as pl
import pytest

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import Member, TrainConfig, member_config, run_id, train
from toolkit.paths import DATA


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


def _config_from_record(record: dict) -> TrainConfig:
    """The :class:`TrainConfig` a stored ``config_json`` describes."""
    fields = dict(record)
    depth_rule = fields.pop("depth_rule")
    fields.pop("depth_alpha")
    depth_alpha = None
    if depth_rule.startswith("alpha="):
        depth_alpha, depth_rule = float(depth_rule.removeprefix("alpha=")), "none"
    param_fields = (
        "base_width", "base_depth", "init_sigma", "input_alpha", "output_alpha",
        "readout_zero_init", "weight_decay_scaling", "attn_alpha", "query_zero_init",
    )  # fmt: skip
    param = Parametrization(
        fields.pop("parametrization"),
        depth_rule=depth_rule,
        depth_alpha=depth_alpha,
        **{name: fields.pop(name) for name in param_fields if name in fields},
    )
    fields["betas"] = tuple(fields["betas"])
    return TrainConfig(parametrization=param, **fields)


@pytest.mark.parametrize("store", ["width_transfer", "depth_transfer", "transformer_transfer"])
def test_run_ids_of_the_shipped_stores_are_recomputed_from_their_rows(store):
    runs = pl.read_parquet(DATA / store / "runs" / "*.parquet").head(40)
    for row in runs.iter_rows(named=True):
        config = _config_from_record(json.loads(row["config_json"]))
        member = Member(lr=row["lr"], weight_decay=row["weight_decay"], seed=row["seed"])
        assert run_id(config, member) == row["run_id"]


def test_a_members_multipliers_are_part_of_its_run_id():
    config = TrainConfig(parametrization=Parametrization("mup", output_alpha=1.0))
    plain = Member(lr=1e-2, seed=3)
    assert run_id(config, plain) == run_id(config, Member(lr=1e-2, seed=3, output_alpha=1.0))
    doubled = TrainConfig(parametrization=Parametrization("mup", output_alpha=2.0))
    assert run_id(config, Member(lr=1e-2, seed=3, output_alpha=2.0)) == run_id(doubled, plain)
    assert run_id(config, Member(lr=1e-2, seed=3, output_alpha=2.0)) != run_id(config, plain)
    assert member_config(config, plain) is config
    sigma = member_config(config, Member(lr=1.0, init_sigma=0.5)).parametrization
    assert (sigma.init_sigma, sigma.output_alpha, sigma.name) == (0.5, 1.0, "mup")


_MIXED = [
    Member(lr=1e-2, seed=0),
    Member(lr=1e-2, seed=0, output_alpha=4.0),
    Member(lr=3e-3, seed=1, init_sigma=0.5, output_alpha=0.5),
    Member(lr=3e-3, seed=1, input_alpha=2.0, init_sigma=2.0),
]


def test_the_runs_frame_records_each_members_effective_multipliers(digits):
    config = TrainConfig(task="digits", parametrization=Parametrization(output_alpha=3.0),
                         width=32, depth=2, steps=2, eval_every=2)  # fmt: skip
    runs = train(config, _MIXED, task=digits).runs
    got = runs.select("init_sigma", "input_alpha", "output_alpha").rows()
    assert got == [(1.0, 1.0, 3.0), (1.0, 1.0, 4.0), (0.5, 1.0, 0.5), (2.0, 2.0, 3.0)]
    for row, member in zip(runs.iter_rows(named=True), _MIXED, strict=True):
        assert json.loads(row["config_json"])["output_alpha"] == row["output_alpha"]
        assert row["run_id"] == run_id(config, member)


def test_a_member_with_a_bad_multiplier_is_refused(digits):
    with pytest.raises(ValueError, match="output_alpha=-1"):
        train(TrainConfig(task="digits", steps=1), [Member(lr=1e-3, output_alpha=-1.0)],
              task=digits)  # fmt: skip
