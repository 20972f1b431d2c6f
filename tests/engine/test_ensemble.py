"""Claims about the engine: parametrizations, ensembles, divergence handling."""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl
import pytest
import torch

from toolkit.engine.catalogue import OPTIMIZERS
from toolkit.engine.models import MLP
from toolkit.engine.parametrization import (
    OPTIMIZER_FAMILIES,
    WIDTH_RULES,
    Parametrization,
    Role,
    describe,
)
from toolkit.engine.probes import activation_stats
from toolkit.engine.train import Member, TrainConfig, member_config, train


@pytest.mark.parametrize("model", ["mlp", "resmlp"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mup_equals_sp_bit_for_bit_at_base_width(digits, model, optimizer, final_state):
    members = [
        Member(lr=0.05 if optimizer == "sgd" else 3e-3, weight_decay=1e-3, seed=s) for s in (0, 1)
    ]
    sp = TrainConfig(
        model=model,
        task="digits",
        parametrization=Parametrization("sp", base_width=64),
        optimizer=optimizer,
        width=64,
        depth=3,
        steps=20,
        eval_every=10,
    )
    # muP with a depth rule too: at base width and base depth both rules are neutral.
    mup = replace(
        sp,
        parametrization=Parametrization("mup", base_width=64, depth_rule="completep", base_depth=3),
    )
    sp_records, sp_state = final_state(sp, members, digits)
    mup_records, mup_state = final_state(mup, members, digits)
    for name, value in sp_state.items():
        assert torch.equal(value, mup_state[name]), name
    assert sp_records.curves["value"].to_list() == mup_records.curves["value"].to_list()


def test_mup_differs_from_sp_away_from_base_width(digits):
    """The bit-for-bit test above would be vacuous if the rules never did anything."""
    config = TrainConfig(
        task="digits", parametrization=Parametrization("sp", base_width=64), width=256, steps=5
    )
    mup = replace(config, parametrization=Parametrization("mup", base_width=64))
    a = train(config, [Member(lr=1e-2)], task=digits).curves["value"].to_list()
    b = train(mup, [Member(lr=1e-2)], task=digits).curves["value"].to_list()
    assert a != b


@pytest.mark.parametrize(
    ("optimizer", "width"),
    [(name, 64) for name in sorted(OPTIMIZERS)] + [("adam", 256), ("adamw", 256)],  # fused
)
def test_members_trained_together_match_members_trained_alone(digits, optimizer, width):
    lrs = {
        "sgd": (0.02, 0.1),
        "adam": (1e-3, 1e-2),
        "adamw": (1e-3, 1e-2),
        "adam-atan2": (1e-3, 1e-2),
        "muon": (1e-3, 1e-2),
    }
    members = [
        Member(lr=lrs[optimizer][0], weight_decay=0.0, seed=0),
        Member(lr=lrs[optimizer][1], weight_decay=1e-2, seed=1),
        Member(lr=lrs[optimizer][0], weight_decay=1e-3, seed=2),
    ]
    config = TrainConfig(
        model="resmlp",
        task="digits",
        parametrization=Parametrization("mup", base_width=32, depth_rule="depth-mup"),
        optimizer=optimizer,
        width=width,
        depth=2,
        steps=30,
        eval_every=10,
    )
    together = train(config, members, task=digits).curves
    for member in members:
        _assert_same_curves(train(config, [member], task=digits).curves, together)


def _assert_same_curves(alone: pl.DataFrame, together: pl.DataFrame) -> None:
    """Every curve value of the lone run equals its value in the ensemble (float32 rounding)."""
    joined = alone.join(together, on=["run_id", "step", "split", "metric"], suffix="_together")
    assert joined.height == alone.height > 0
    torch.testing.assert_close(
        torch.tensor(joined["value"].to_numpy()),
        torch.tensor(joined["value_together"].to_numpy()),
        rtol=1e-4,
        atol=1e-5,
    )


_MIXED = [
    Member(lr=1e-2, seed=0),
    Member(lr=1e-2, seed=0, output_alpha=4.0),
    Member(lr=3e-3, seed=1, init_sigma=0.5, output_alpha=0.5),
    Member(lr=3e-3, seed=1, input_alpha=2.0, init_sigma=2.0),
]


@pytest.mark.parametrize("model", ["mlp", "resmlp"])
def test_members_with_their_own_multipliers_train_together_as_they_would_alone(digits, model):
    """Members differing in init_sigma, input_alpha, output_alpha share one ensemble."""
    config = TrainConfig(
        model=model,
        task="digits",
        parametrization=Parametrization("mup", base_width=32),
        optimizer="adam",
        width=64,
        depth=2,
        steps=20,
        eval_every=10,
    )
    together = train(config, _MIXED, task=digits)
    assert together.runs["group_size"].unique().to_list() == [len(_MIXED)]
    for member in _MIXED:
        lone = train(member_config(config, member), [Member(member.lr, seed=member.seed)],
                     task=digits)  # fmt: skip
        _assert_same_curves(lone.curves, together.curves)


def test_the_initial_evaluation_of_shared_seeds_is_each_members_own(digits):
    """Step 0 is evaluated once per seed and handed to every member of that seed."""
    config = TrainConfig(task="digits", width=32, depth=2, steps=2, eval_every=2)
    members = [Member(lr=1e-3, seed=0), Member(lr=1e-2, seed=3), Member(lr=1e-1, seed=0)]
    step0 = pl.col("step") == 0
    together = train(config, members, task=digits)
    together = together.curves.filter(step0).join(together.runs.select("run_id", "seed", "lr"),
                                                  on="run_id")  # fmt: skip
    for member in members:
        alone = train(config, [member], task=digits).curves.filter(step0).sort("split", "metric")
        mine = together.filter(pl.col("lr") == member.lr).sort("split", "metric")
        assert mine["value"].to_list() == pytest.approx(alone["value"].to_list(), rel=1e-6)
    by_seed = together.filter(pl.col("metric") == "loss").group_by("seed", "split")
    assert (by_seed.agg(pl.col("value").n_unique())["value"] == 1).all()
    loss = together.filter(pl.col("metric") == "loss", pl.col("split") == "train")
    first = dict(loss.select("seed", "value").iter_rows())
    assert first[0] != first[3]


@pytest.mark.parametrize("width", [64, 256])  # Adam's multi-tensor and fused updates
def test_a_diverging_member_leaves_its_siblings_bit_identical(digits, width):
    """Member 1 explodes at LR 1e4; with a benign member 1 instead, the siblings are identical.

    Both runs have the same number of members, so every batched kernel sees the
    same shapes and bit-identity is the right bar.
    """
    config = TrainConfig(task="digits", optimizer="adam", width=width, steps=25, eval_every=5)
    siblings = [Member(lr=1e-2, seed=0), Member(lr=3e-3, seed=2)]
    exploding = train(config, [siblings[0], Member(lr=1e4, seed=1), siblings[1]], task=digits)
    benign = train(config, [siblings[0], Member(lr=1e-3, seed=1), siblings[1]], task=digits)

    status = exploding.runs.sort("lr")["status"].to_list()
    assert status == ["ok", "ok", "diverged"]
    bad = exploding.runs.filter(pl.col("status") == "diverged")
    assert bad["final_train_loss"].is_null().all()
    assert bad["diverged_at_step"].item() < config.steps

    sibling_ids = exploding.runs.filter(pl.col("status") == "ok")["run_id"]
    a = exploding.curves.filter(pl.col("run_id").is_in(sibling_ids.implode())).sort(pl.all())
    b = benign.curves.filter(pl.col("run_id").is_in(sibling_ids.implode())).sort(pl.all())
    assert a.height > 0
    assert a.equals(b)
    assert all(math.isfinite(v) for v in a["value"])


def test_diverged_member_rows_stop_at_divergence(digits):
    config = TrainConfig(task="digits", optimizer="sgd", width=64, steps=20, eval_every=5)
    records = train(config, [Member(lr=1e3, seed=0)], task=digits)
    step = records.runs["diverged_at_step"].item()
    assert records.runs["status"].item() == "diverged"
    assert records.curves["step"].max() <= step


def test_optimizer_names_agree_with_parametrization_families():
    assert set(OPTIMIZERS) == set(OPTIMIZER_FAMILIES)


def test_every_parametrization_has_a_rule_for_every_role():
    for rules in WIDTH_RULES.values():
        assert set(rules) == set(Role)


def test_describe_shows_what_the_model_applies():
    param = Parametrization("mup", base_width=64, readout_zero_init=True, output_alpha=2.0)
    model = MLP(d_in=40, d_out=10, width=256, depth=3, parametrization=param, seeds=[0, 1])
    table = describe(model, optimizer="adamw", lr=1e-2, weight_decay=0.1).to_dicts()
    by_name = {row["name"]: row for row in table}
    # Stored tensors have the documented std; readout is zero, its multiplier alpha/m.
    for spec, value in model.named_tensors():
        assert value.std().item() == pytest.approx(
            by_name[spec.name]["init_std"], rel=0.05, abs=1e-12
        )
    assert by_name["readout.weight"]["forward_mult"] == pytest.approx(2.0 / 4)
    assert by_name["hidden1.weight"]["lr"] == pytest.approx(1e-2 / 4)
    assert by_name["hidden1.weight"]["weight_decay"] == pytest.approx(
        0.1 * 4
    )  # coupled: lr*wd fixed
    assert by_name["hidden1.weight"]["eps"] == pytest.approx(1e-8 / 4)
    assert by_name["input.weight"]["lr"] == pytest.approx(1e-2)


def test_weight_decay_scalings():
    model_at = {}
    for scaling in ("none", "coupled", "sqrt_width"):
        param = Parametrization("mup", base_width=64, weight_decay_scaling=scaling)
        model = MLP(d_in=8, d_out=2, width=1024, depth=2, parametrization=param, seeds=[0])
        rows = describe(model, optimizer="adamw", lr=1.0, weight_decay=1.0)
        model_at[scaling] = dict(zip(rows["name"], rows["weight_decay"], strict=True))
    assert model_at["none"]["hidden1.weight"] == 1.0
    assert model_at["coupled"]["hidden1.weight"] == pytest.approx(16.0)
    assert model_at["sqrt_width"]["hidden1.weight"] == pytest.approx(4.0)  # Fan et al. 2025
    assert model_at["sqrt_width"]["input.weight"] == 1.0


def test_depth_rules_scale_block_learning_rates_and_branches():
    from toolkit.engine.models import ResidualMLP

    rows = {}
    for rule in ("none", "depth-mup", "completep"):
        param = Parametrization("mup", base_width=64, depth_rule=rule, base_depth=2)
        model = ResidualMLP(d_in=8, d_out=2, width=64, depth=8, parametrization=param, seeds=[0])
        rows[rule] = {r["name"]: r for r in describe(model, optimizer="adam", lr=1.0).to_dicts()}
    # mL = 4: depth-muP halves the branch and block Adam LR, CompleteP quarters the branch only.
    assert rows["depth-mup"]["block3.fc1.weight"]["branch_mult"] == pytest.approx(0.5)
    assert rows["depth-mup"]["block3.fc1.weight"]["lr"] == pytest.approx(0.5)
    assert rows["completep"]["block3.fc1.weight"]["branch_mult"] == pytest.approx(0.25)
    assert rows["completep"]["block3.fc1.weight"]["lr"] == pytest.approx(1.0)
    assert rows["completep"]["block3.fc1.weight"]["eps"] == pytest.approx(1e-8 / 4)
    # Embedding and readout do not change with depth.
    for rule in rows:
        assert rows[rule]["embed.weight"]["lr"] == 1.0
        assert rows[rule]["readout.weight"]["branch_mult"] == 1.0


def _final_stream_rms(task, depth_rule, depth):
    config = TrainConfig(
        model="resmlp",
        task="digits",
        parametrization=Parametrization("mup", base_width=64, depth_rule=depth_rule, base_depth=2),
        optimizer="adam",
        width=64,
        depth=depth,
        steps=3,
        eval_every=3,
    )
    records = train(
        config,
        [Member(lr=0.05, seed=s) for s in (0, 1)],
        task=task,
        probes=[activation_stats],
        probe_steps=[3],
    )
    rows = records.probes.filter(pl.col("layer") == f"block{depth}", pl.col("stat") == "rms")
    return rows["value"].mean()


@pytest.mark.slow
def test_depth_scaling_keeps_the_residual_stream_flat(digits):
    """Without depth scaling the final residual stream grows about in proportion to the number of
    blocks after three large-LR Adam steps; with alpha = 1/2 or 1 it stays within 2x over 2..32."""
    depths = (2, 8, 32)
    unscaled = [_final_stream_rms(digits, "none", d) for d in depths]
    growth = unscaled[-1] / unscaled[0]
    assert 16 / 2 <= growth <= 16 * 2, unscaled  # 16x more blocks
    for rule in ("depth-mup", "completep"):
        sizes = [_final_stream_rms(digits, rule, d) for d in depths]
        assert max(sizes) / min(sizes) <= 2.0, (rule, sizes)
