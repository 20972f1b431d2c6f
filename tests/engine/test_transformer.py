"""Claims about the batched Transformer and its character corpus."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import polars as pl
import pytest
import torch

from toolkit.analysis.coord_check import width_ratios
from toolkit.engine import text
from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization, describe
from toolkit.engine.train import Member, TrainConfig, train
from toolkit.engine.transformer import Transformer
from toolkit.studies.coord_check import coord_check
from toolkit.studies.sweep import SweepSpec, plan


@pytest.fixture(scope="module")
def chars():
    return load_task("chars")


def test_chars_task_is_next_character_prediction_on_the_committed_corpus(chars):
    assert chars.kind == "language"
    assert (chars.d_in, chars.d_out) == (text.CONTEXT, 94)
    assert chars.x_train.dtype == chars.y_train.dtype == torch.int64
    assert chars.x_train.shape == chars.y_train.shape == (chars.n_train, text.CONTEXT)
    assert chars.n_train > 8 * chars.n_val > 0
    vocab = text.vocabulary(text.read_corpus())
    row = chars.x_train[7]
    assert text.decode(chars.y_train[7, :-1], vocab) == text.decode(row[1:], vocab)
    assert text.decode(chars.x_train[0, :22], vocab) == 'The "assert" statement'


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="corpus assembled from Python 3.11")
def test_committed_corpus_is_what_the_generator_builds():
    assert text.build_corpus() == text.read_corpus()


@pytest.mark.parametrize(("optimizer", "tie"), [("adam", False), ("muon", True)])
def test_mup_equals_sp_bit_for_bit_at_base_shape(chars, optimizer, tie, final_state):
    members = [Member(lr=3e-3, weight_decay=1e-2, seed=s) for s in (0, 1)]
    sp = TrainConfig(
        model="transformer",
        parametrization=Parametrization("sp", base_width=32, base_depth=2, query_zero_init=True),
        optimizer=optimizer,
        width=32,
        depth=2,
        steps=4,
        batch_size=4,
        eval_every=2,
        eval_examples=256,
        tie_embeddings=tie,
    )
    mup_param = replace(sp.parametrization, name="mup", depth_rule="completep")
    mup = replace(sp, parametrization=mup_param)
    sp_records, sp_state = final_state(sp, members, chars)
    mup_records, mup_state = final_state(mup, members, chars)
    for name, value in sp_state.items():
        assert torch.equal(value, mup_state[name]), name
    assert sp_records.curves["value"].to_list() == mup_records.curves["value"].to_list()
    wider = replace(mup, width=64)
    assert train(wider, members[:1], task=chars).curves["value"].to_list() != (
        train(replace(sp, width=64), members[:1], task=chars).curves["value"].to_list()
    )


def test_every_tensor_has_the_role_of_its_job():
    param = Parametrization("mup", base_width=32, query_zero_init=True)
    model = Transformer(d_in=8, d_out=10, width=64, depth=2, parametrization=param, seeds=[0])
    rows = {r["name"]: r for r in describe(model, optimizer="adam", lr=1.0).to_dicts()}
    roles = {
        "embed.token": "input",
        "embed.position": "input",
        "block2.attn.query.weight": "hidden",
        "block2.attn.key.weight": "hidden",
        "block2.attn.value.weight": "hidden",
        "block2.attn.out.weight": "hidden",
        "block1.mlp.fc1.weight": "hidden",
        "block1.mlp.fc2.weight": "hidden",
        "block1.attn.query.bias": "vector",
        "block1.attn_norm.gain": "vector",
        "final_norm.bias": "vector",
        "readout.weight": "output",
        "readout.bias": "fixed",
    }
    assert {name: rows[name]["role"] for name in roles} == roles
    assert rows["block1.mlp.fc1.weight"]["in_block"] and not rows["final_norm.gain"]["in_block"]
    # Embedding rows start at std sigma (a lookup's fan-in is 1); queries at zero; the MLP's
    # second matrix at 1/sqrt(4 n0) * m**-1/2; hidden Adam LR 1/m, readout multiplier 1/m.
    assert rows["embed.token"]["init_std"] == 1.0
    assert rows["block1.attn.query.weight"]["init_std"] == 0.0
    assert rows["block1.mlp.fc2.weight"]["init_std"] == pytest.approx(1 / math.sqrt(4 * 64))
    assert rows["block1.attn.key.weight"]["lr"] == pytest.approx(0.5)
    assert rows["readout.weight"]["forward_mult"] == pytest.approx(0.5)
    assert model.heads == 4 and model.attn_scale == pytest.approx(0.25)  # d_head 16


def test_a_position_never_sees_the_future():
    param = Parametrization("sp", base_width=32)
    model = Transformer(d_in=16, d_out=10, width=32, depth=2, parametrization=param, seeds=[0, 1])
    x = torch.randint(0, 10, (2, 3, 16), generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[:, :, 9:] = (changed[:, :, 9:] + 1) % 10
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert a.shape == (2, 3, 16, 10)
    assert torch.equal(a[:, :, :9], b[:, :, :9])
    assert not torch.equal(a[:, :, 9:], b[:, :, 9:])


@pytest.mark.parametrize("name", ["sp", "mup"])
def test_fused_attention_computes_what_the_captured_logits_describe(name):
    """Training runs attention through PyTorch's fused kernel; a capturing forward forms
    ``s q k^T`` explicitly (to record it). Both are the same function up to rounding, also
    where muP's logit scale (1/8 here) is not the kernel's default 1/sqrt(d_head)."""
    param = Parametrization(name, base_width=32)
    model = Transformer(d_in=16, d_out=10, width=64, depth=2, parametrization=param,
                        seeds=[0, 1, 2], heads=2)  # fmt: skip
    with torch.no_grad():  # larger queries than at init, so that the softmax is far from flat
        for block in model.blocks:
            block.attn.query.weight.mul_(8.0)
    x = torch.randint(0, 10, (3, 4, 16), generator=torch.Generator().manual_seed(0))
    capture: dict = {}
    with torch.no_grad():
        fused, explicit = model(x), model(x, capture=capture)
    assert capture["block1.attn.logits"].abs().max() > 1.0
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("record", [False, True])
def test_a_member_of_nan_and_inf_weights_leaves_its_siblings_outputs_bit_identical(record):
    """Fused or explicit, attention mixes positions of one member's sequence only."""
    model = Transformer(d_in=16, d_out=10, width=64, depth=2, seeds=[0, 1, 2],
                        parametrization=Parametrization("mup", base_width=32))  # fmt: skip
    x = torch.randint(0, 10, (3, 4, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x, capture={} if record else None)
        model.block1.attn.query.weight[1] = math.nan
        model.block1.attn.key.weight[1] = math.inf
        after = model(x, capture={} if record else None)
    assert after[1].isnan().all()
    assert torch.equal(before[[0, 2]], after[[0, 2]])


def test_zero_readout_starts_at_the_uniform_per_token_loss(chars):
    config = TrainConfig(
        model="transformer",
        parametrization=Parametrization("mup", base_width=32, readout_zero_init=True),
        width=32,
        depth=1,
        steps=1,
        batch_size=4,
        eval_examples=640,
    )
    curves = train(config, [Member(lr=1e-3)], task=chars).curves
    first = curves.filter(pl.col("step") == 0, pl.col("metric") == "loss")
    assert first["value"].to_list() == pytest.approx([math.log(94)] * first.height, rel=1e-6)
    assert set(first["split"]) == {"batch", "train", "val"}


def _ratios(task, name, widths, depth=2):
    config = TrainConfig(
        model="transformer",
        parametrization=Parametrization(name, base_width=widths[0], readout_zero_init=True),
        optimizer="adam",
        depth=depth,
        steps=3,
        batch_size=16,
    )
    frame = coord_check(config, widths, lr=0.01, seeds=range(2), task=task)
    return width_ratios(frame).filter(
        pl.col("role") == "hidden", pl.col("width") == widths[1], pl.col("step") >= 1
    )


def test_under_mup_every_hidden_layer_and_the_attention_logits_stay_put(chars):
    ratios = _ratios(chars, "mup", (64, 256))
    layers = set(ratios["layer"])
    assert {"block1.attn.logits", "block2.attn.logits", "block2.mlp.fc2", "block2"} <= layers
    assert ratios.height == 5 * 2 * 3  # five hidden layers per block, two blocks, t = 1..3
    assert ratios["ratio"].is_between(1 / 1.2, 1.2).all(), ratios


def test_under_sp_with_adam_the_residual_stream_grows_with_width(chars):
    ratios = _ratios(chars, "sp", (32, 128)).filter(
        pl.col("layer").is_in(["block1", "block2"]), pl.col("step") >= 2
    )
    assert (ratios["ratio"] >= 1.5).all(), ratios


def test_cli_coord_check_prints_the_records_of_the_python_function(chars):
    argv = [
        "coord-check", "--model", "transformer", "--task", "chars", "--parametrization", "mup",
        "--widths", "32,64", "--depth", "1", "--steps", "1", "--batch-size", "4", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", *argv], capture_output=True, text=True, check=True
    )
    got = pl.DataFrame(json.loads(result.stdout)).sort("width", "layer", "step", "stat")
    assert set(got["layer"]) >= {"embed", "block1.attn.logits", "block1.mlp.fc1", "readout"}
    assert set(got.filter(pl.col("layer") == "block1.attn.logits")["role"]) == {"hidden"}
    config = TrainConfig(
        model="transformer",
        parametrization=Parametrization("mup", base_width=32, base_depth=1),
        depth=1,
        steps=1,
        batch_size=4,
    )
    expected = coord_check(config, [32, 64], lr=0.01, task=chars)
    assert got["value"].to_list() == pytest.approx(
        expected.sort("width", "layer", "step", "stat")["value"].to_list()
    )


def test_transformer_runs_default_to_the_corpus_and_keep_mlp_run_ids():
    assert TrainConfig(model="transformer").task == "chars"
    assert TrainConfig().task == "mnist1d"
    record = TrainConfig(model="transformer").record()
    assert {"head_dim", "tie_embeddings", "attn_alpha", "query_zero_init"} <= set(record)
    assert not {"head_dim", "tie_embeddings", "attn_alpha"} & set(TrainConfig().record())


def test_a_sweep_plans_transformer_groups():
    spec = SweepSpec(model="transformer", task="chars", widths=(32, 64), depths=(1,),
                     optimizers=("adam", "muon"), lrs=(1e-3, 1e-2), steps=(10,))  # fmt: skip
    work = plan(spec)
    assert work.runs == 8 and len(work.groups) == 4


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: TrainConfig(model="transformer", task="digits"), "task='digits'"),
        (lambda: TrainConfig(model="mlp", task="chars"), "task='chars'"),
        (
            lambda: Transformer(
                d_in=8, d_out=10, width=40, depth=1, seeds=[0], parametrization=Parametrization()
            ),
            "width=40",
        ),
        (lambda: TrainConfig(model="transformer", head_dim=0), "head_dim=0"),
        (lambda: Parametrization(attn_alpha=-1.0), "attn_alpha=-1.0"),
        (
            lambda: Transformer(
                d_in=8,
                d_out=10,
                width=32,
                depth=1,
                seeds=[0],
                tie_embeddings=True,
                parametrization=Parametrization(readout_zero_init=True),
            ),  # fmt: skip
            "tie_embeddings=True",
        ),
    ],
)
def test_bad_transformer_settings_raise_value_errors_naming_them(make, needle):
    with pytest.raises(ValueError) as error:
        make()
    assert needle in str(error.value)


def _fixed_heads(name: str, width: int, **kw) -> Transformer:
    param = Parametrization(name, base_width=32)
    return Transformer(d_in=16, d_out=12, width=width, depth=1, seeds=[0],
                       parametrization=param, heads=2, **kw)  # fmt: skip


def test_with_fixed_heads_mup_scales_logits_by_one_over_d_head_and_sp_by_its_root():
    """Growing d_head 4x (fixed heads): muP's logit scale falls 4x (1/d_head, Tensor
    Programs V), SP's 2x; at the base shape both are 1/sqrt(d_head0)."""
    base_mup, base_sp = _fixed_heads("mup", 32), _fixed_heads("sp", 32)
    assert base_mup.attn_scale == base_sp.attn_scale == 1 / math.sqrt(16)
    assert base_mup.base_head_dim == 16
    assert _fixed_heads("mup", 128).attn_scale == pytest.approx(base_mup.attn_scale / 4)
    assert _fixed_heads("sp", 128).attn_scale == pytest.approx(base_sp.attn_scale / 2)


def test_with_fixed_heads_mup_equals_sp_bit_for_bit_at_the_base_shape():
    x = torch.randint(0, 12, (1, 3, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(_fixed_heads("mup", 32)(x), _fixed_heads("sp", 32)(x))


def test_a_base_head_dim_sets_mups_logit_scale_when_head_dim_is_given_per_width():
    param = Parametrization("mup", base_width=32)
    model = Transformer(d_in=16, d_out=12, width=64, depth=1, seeds=[0], parametrization=param,
                        head_dim=32, base_head_dim=16)  # fmt: skip
    assert model.attn_scale == pytest.approx(math.sqrt(16) / 32)
