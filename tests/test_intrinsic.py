"""Random projections, subspace training and intrinsic-dimension estimates."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from torch import nn

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.projections import (
    PROJECTIONS,
    FastfoodProjection,
    make_projection,
    walsh_hadamard,
)
from toolkit.engine.subspace import (
    SubspaceMember,
    parameter_count,
    train_module_subspace,
    train_subspace,
)
from toolkit.engine.train import Member, TrainConfig, build_model, train
from toolkit.studies.intrinsic import (
    class_subtask,
    estimate_intrinsic_dim,
    finetune_intrinsic_dim,
    intrinsic_dim_records,
    log_grid,
    measure_intrinsic_dim,
    sweep_intrinsic_dim,
    threshold_key,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: on a shared machine a second thread costs more than it gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits")


def columns(name: str, D: int, d: int, seed: int = 0) -> torch.Tensor:
    """All ``d`` columns of one projection, ``(d, D)``: project the identity, one member per row."""
    projection = make_projection(name, D, [d] * d, [seed] * d)
    with torch.no_grad():
        return projection.project(torch.eye(d))


# --------------------------------------------------------------------------- projections


@pytest.mark.parametrize("length", [1, 2, 8, 64, 2048])
def test_walsh_hadamard_matches_the_hadamard_matrix(length):
    x = torch.randn(3, length, dtype=torch.float64)
    h = torch.ones(1, 1, dtype=torch.float64)  # Sylvester: H_2n = [[H, H], [H, -H]]
    while h.shape[0] < length:
        h = torch.kron(torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64), h)
    torch.testing.assert_close(walsh_hadamard(x), x @ h)
    torch.testing.assert_close(walsh_hadamard(walsh_hadamard(x)), length * x)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_columns_have_unit_norm_and_are_nearly_orthogonal(name):
    D, d = 3000, 64
    cols = columns(name, D, d)
    norms = cols.norm(dim=1)
    # Dense and sparse columns are normalised exactly; Fastfood's are exactly unit
    # length before keeping D of its L = 4096 rows, which leaves O(1/sqrt(D)) noise.
    tolerance = 4 / math.sqrt(D) if name == "fastfood" else 1e-5
    assert (norms - 1).abs().max() < tolerance
    cosines = (cols @ cols.T) / (norms[:, None] * norms[None, :])
    off_diagonal = cosines - torch.diag(torch.diag(cosines))
    # |cos| between random unit vectors is about N(0, 1/D): the largest of the
    # 2016 pairs stays within a few standard deviations.
    assert off_diagonal.abs().max() < 6 / math.sqrt(D)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_batched_members_match_their_own_projection_and_gradient(name):
    D = 500
    dims, seeds = [40, 20, 40, 7], [1, 1, 2, 3]
    projection = make_projection(name, D, dims, seeds)
    theta_d = torch.randn(4, 40, requires_grad=True)
    out = projection.project(theta_d)
    weights = torch.randn(4, D)
    (out * weights).sum().backward()
    for member, (d, seed) in enumerate(zip(dims, seeds, strict=True)):
        p = columns(name, D, d, seed)  # (d, D): a member of d columns alone
        torch.testing.assert_close(out[member], theta_d[member, :d].detach() @ p)
        torch.testing.assert_close(theta_d.grad[member, :d], p @ weights[member])
        assert not theta_d.grad[member, d:].any()  # padding never moves
    # nested subspaces: a seed's first 20 columns do not depend on its d
    torch.testing.assert_close(columns(name, D, 20, 1), columns(name, D, 40, 1)[:20])


def test_fastfood_at_a_million_parameters_holds_order_L_numbers():
    D, d = 1_000_000, 2_000
    projection = FastfoodProjection(D, [d], [0])
    L = 2**20
    assert projection.L == L
    held = sum(b.numel() for b in projection.buffers())
    assert held <= 3 * L  # s signs + L gather indices + L Gaussians; no D x d matrix
    theta_d = torch.randn(d)
    with torch.no_grad():
        out = projection.project(theta_d)
    assert out.shape == (D,)
    assert torch.isfinite(out).all()
    # nearly orthonormal columns preserve length
    assert abs(out.norm() / theta_d.norm() - 1) < 0.05


def test_fastfood_stacks_blocks_when_d_exceeds_L():
    D, d = 100, 300  # L = 128: three independent blocks
    projection = FastfoodProjection(D, [d], [0])
    assert projection.blocks == 3
    cols = columns("fastfood", D, d)
    assert torch.linalg.matrix_rank(cols.double()) == D  # 300 columns span R^100


# --------------------------------------------------------------------------- the toy problem


class ConstraintToy(nn.Module):
    """Li et al.'s toy: D = 1000 parameters in 10 groups of 100; group g must sum to g + 1.

    The groups are a fixed random assignment of the parameters, so that the
    constraints do not line up with the Walsh-Hadamard structure of Fastfood
    (see :class:`toolkit.engine.projections.FastfoodProjection`).
    """

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.theta = nn.Parameter(0.1 * torch.randn(1000, generator=generator))
        groups = torch.randperm(1000, generator=generator) % 10
        self.register_buffer("assign", nn.functional.one_hot(groups, 10).float())

    def forward(self) -> torch.Tensor:
        return self.theta @ self.assign  # (10,) group sums


TARGETS = torch.arange(1.0, 11.0)


def toy_loss(call) -> torch.Tensor:
    return (call() - TARGETS).pow(2).sum(-1)


def constraints_met(call) -> torch.Tensor:
    """Fraction of the 10 constraints met to within 0.1: jumps from ~0 to ~1 at d = 10."""
    return ((call() - TARGETS).abs() < 0.1).float().mean(-1)


TOY = {"steps": 600, "lr": 0.3, "optimizer": "sgd", "score": constraints_met}


@pytest.mark.parametrize(
    "projection", ["dense", "fastfood", pytest.param("sparse", marks=pytest.mark.slow)]
)
def test_toy_problem_has_intrinsic_dimension_exactly_ten(projection):
    toy = ConstraintToy()
    # Full training moves every group sum 100x faster: it needs a smaller step.
    baseline = train_module_subspace(toy, toy_loss, dims=None, **{**TOY, "lr": 0.003})
    assert baseline["metric"].to_list() == [1.0]
    assert baseline["loss"][0] < 1e-8  # full training solves it
    seeds = list(range(16))

    def measure(ds):
        dims = [d for d in ds for _ in seeds]
        frame = train_module_subspace(
            toy, toy_loss, dims=dims, seeds=seeds * len(ds), projection=projection, **TOY
        )
        return frame

    # With d < 10 no solution exists: the least-squares residual leaves nearly
    # every constraint off by more than the tolerance. With d = 10 the 10 x 10
    # system is square, and square random matrices are often badly conditioned
    # (Edelman 1988): 600 steps solve it on most seeds but not all (~60% for
    # Fastfood, ~75% dense, ~95% sparse). Any threshold between the two plateaus
    # identifies d_int = 10; 0.3 leaves room on both sides.
    result = sweep_intrinsic_dim(measure, baseline, D=1000, grid=[6, 9, 10], threshold=0.3)
    means = dict(result.frame.group_by("d").agg(pl.col("metric").mean()).rows())
    assert result.estimate == 10
    assert means[9] < 0.15 and means[10] > 0.45
    assert toy.theta.grad is None  # theta0 stays frozen


# --------------------------------------------------------------------------- plain modules


def test_subspace_training_of_a_plain_module_decreases_the_loss():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    before = [p.detach().clone() for p in module.parameters()]
    x = torch.randn(256, 8)
    y = torch.sin(x[:, :1]) + x[:, 1:2]

    def loss(call):
        return (call(x) - y).pow(2).mean((1, 2))  # call(x): (members, 256, 1)

    frame = train_module_subspace(
        module, loss, dims=[8, 64], seeds=[0, 0], projection="fastfood", steps=150, lr=0.05
    )
    assert (frame["status"] == "ok").all()
    fraction_removed = frame.sort("d")["metric"].to_list()
    assert fraction_removed[0] > 0.3 and fraction_removed[1] > 0.6
    for p, q in zip(module.parameters(), before, strict=True):
        assert torch.equal(p, q)  # the module itself is untouched


# --------------------------------------------------------------------------- toolkit models


def test_a_member_trains_the_same_alone_or_batched_with_others(digits):
    config = TrainConfig(task="digits", width=8, depth=1, steps=15, batch_size=32, eval_every=15)
    me = SubspaceMember(d=16, lr=0.1, seed=0)
    others = [SubspaceMember(64, 0.3, 1), me, SubspaceMember(32, 0.1, 0)]
    for projection in ("dense", "fastfood"):
        alone = train_subspace(config, [me], projection=projection, task=digits)
        batched = train_subspace(config, others, projection=projection, task=digits)
        assert alone["val_loss"][0] == pytest.approx(batched["val_loss"][1], rel=1e-4)


@pytest.mark.parametrize("parametrization", ["sp", "mup"])
def test_subspace_training_learns_under_each_parametrization(digits, parametrization):
    config = TrainConfig(
        task="digits",
        parametrization=Parametrization(parametrization, base_width=8, readout_zero_init=True),
        width=32,
        depth=2,
        steps=60,
        batch_size=64,
        eval_every=60,
    )
    frame = train_subspace(config, [SubspaceMember(64, 0.1, 0)], task=digits)
    assert frame["D"][0] == parameter_count(config, digits)
    assert frame["val_accuracy"][0] > 0.3  # chance is 0.1


def test_start_replaces_the_seeded_initialisation(digits):
    config = TrainConfig(task="digits", width=8, depth=1, steps=5, batch_size=32, eval_every=5)
    members = [Member(lr=1e-2, seed=3)]
    plain = train(config, members, task=digits).runs
    model = build_model(config, digits.d_in, digits.d_out, [3])
    own_init = {s.name: p.detach().clone() for s, p in model.named_tensors()}
    started = train(config, members, task=digits, init=own_init).runs
    assert started["final_val_loss"][0] == pytest.approx(plain["final_val_loss"][0], rel=1e-6)
    with pytest.raises(ValueError, match="init has tensors"):
        train(config, members, task=digits, init={"input.weight": own_init["input.weight"]})


# --------------------------------------------------------------------------- d_int


def synthetic_measure(scale: float, seeds=(0, 1, 2, 3)):
    """Performance ``min(1, d / scale)`` plus a fixed per-seed offset (mean zero)."""
    offsets = [0.01, -0.01, 0.02, -0.02]

    def measure(ds):
        rows = [
            {"d": d, "seed": s, "metric": min(1.0, d / scale) + offsets[s]}
            for d in ds
            for s in seeds
        ]
        return pl.DataFrame(rows)

    return measure


def test_sweep_refines_to_the_exact_crossing():
    baseline = pl.DataFrame({"seed": [0, 1, 2, 3], "metric": [1.0] * 4})
    result = sweep_intrinsic_dim(
        synthetic_measure(370.0), baseline, D=5000, grid=log_grid(5000), threshold=0.8, rounds=6
    )
    assert result.estimate == 296  # smallest d with d / 370 >= 0.8
    assert result.key == "d_int80"
    assert result.lo <= result.estimate <= result.hi
    evaluated = result.frame["d"].unique().to_list()
    assert len(evaluated) < 30  # refinement, not an exhaustive scan
    assert result.frame.height == 4 * len(evaluated)


def test_bootstrap_interval_widens_with_seed_noise():
    frame = pl.DataFrame(
        {
            "d": [8, 8, 16, 16, 32, 32] * 2,
            "seed": [0, 1] * 6,
            "metric": [0.1, 0.2, 0.5, 0.95, 0.9, 1.0] + [0.1, 0.2, 0.5, 0.95, 0.9, 1.0],
        }
    ).with_columns(seed=pl.col("seed") + 2 * (pl.int_range(pl.len()) >= 6))
    baseline = pl.DataFrame({"seed": [0, 1, 2, 3], "metric": [1.0] * 4})
    result = estimate_intrinsic_dim(frame, baseline, D=100, threshold=0.7)
    assert result.estimate == 16  # mean 0.725 at d = 16
    assert (result.lo, result.hi) == (16, 32)
    unreachable = estimate_intrinsic_dim(frame, baseline, D=100, threshold=1.0)
    assert unreachable.estimate == math.inf


@pytest.mark.slow
def test_projections_agree_on_d_int90_of_a_small_model():
    task = load_task("teacher")
    config = TrainConfig(
        task="teacher", width=16, depth=1, steps=200, batch_size=64, eval_every=200
    )
    D = parameter_count(config, task)
    estimates = {}
    for projection in sorted(PROJECTIONS):
        result = measure_intrinsic_dim(
            config,
            projection=projection,
            seeds=[0, 1, 2],
            lrs=[2**-7, 2**-5, 2**-3],
            subspace_lrs=[2**-8, 2**-6, 2**-4],
            grid=log_grid(D, start=8),
            rounds=2,
            task=task,
            resamples=500,
        )
        estimates[projection] = result.estimate
    assert max(estimates.values()) <= 1.5 * min(estimates.values()), estimates


def test_records_for_the_command_line(digits):
    records = intrinsic_dim_records(
        "mlp",
        "digits",
        "mup",
        widths=[8],
        depths=[1],
        projection="fastfood",
        threshold=0.8,
        seeds=2,
        steps=40,
        batch_size=64,
        lrs=[2**-4],
        subspace_lrs=[2**-6],
        grid=[16, 128],
        rounds=1,
        resamples=200,
    )
    (record,) = records
    assert set(record) == {
        "width",
        "depth",
        "parametrization",
        "projection",
        "D",
        "baseline",
        "d_int80",
        "d_int80_lo",
        "d_int80_hi",
    }
    assert record["D"] == 64 * 8 + 8 + 8 * 10 + 10
    assert 0.5 < record["baseline"] <= 1.0
    assert 16 < record["d_int80"] <= 128 or record["d_int80"] == math.inf
    assert threshold_key(0.9) == "d_int90" and threshold_key(0.875) == "d_int87.5"


def test_fine_tuning_measures_both_starts(digits):
    config = TrainConfig(task="digits", width=8, depth=1, steps=30, batch_size=64, eval_every=30)
    results = finetune_intrinsic_dim(
        config,
        source_classes=[0, 1, 2, 3, 4, 5],
        target_classes=[6, 7, 8, 9],  # a new readout: the class counts may differ
        pretrain_steps=50,
        seeds=[0, 1],
        lrs=[2**-4],
        subspace_lrs=[2**-6],
        grid=[8, 64, 128],
        rounds=0,
        task=digits,
    )
    assert set(results) == {"pretrained", "scratch"}
    for result in results.values():
        assert result.D == 64 * 8 + 8 + 8 * 4 + 4
        assert result.frame["d"].unique().sort().to_list() == [8, 64, 128]


@pytest.mark.slow
def test_pretraining_lowers_the_intrinsic_dimension_of_a_new_task():
    task = load_task("mnist1d")  # digits is too easy: random features already suffice
    config = TrainConfig(task="mnist1d", width=64, depth=2, steps=150, batch_size=64)
    grid = [16, 64, 256, 1024, 4096]
    results = finetune_intrinsic_dim(
        config,
        source_classes=[0, 1, 2, 3, 4],
        target_classes=[5, 6, 7, 8, 9],
        pretrain_steps=600,
        seeds=[0, 1],
        lrs=[2**-7, 2**-5],
        subspace_lrs=[2**-8, 2**-6, 2**-4],
        grid=grid,
        rounds=1,
        task=task,
    )
    pretrained, scratch = results["pretrained"], results["scratch"]
    assert pretrained.baseline > scratch.baseline
    assert pretrained.estimate <= scratch.estimate

    def means(result):
        frame = result.frame.filter(pl.col("d").is_in(grid))
        return frame.group_by("d").agg(pl.col("metric").mean()).sort("d")["metric"].to_list()

    better = [p > s for p, s in zip(means(pretrained), means(scratch), strict=True)]
    assert sum(better) >= 4, better


def test_class_subtask_relabels(digits):
    sub = class_subtask(digits, [7, 2])
    assert set(sub.y_train.unique().tolist()) == {0, 1}
    assert sub.n_train == int(((digits.y_train == 7) | (digits.y_train == 2)).sum())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: make_projection("gaussian", 100, [4], [0]), "projection='gaussian'"),
        (lambda: make_projection("dense", 100, [0], [0]), "d=0"),
        (lambda: make_projection("fastfood", 100, [-3], [0]), "d=-3"),
        (lambda: make_projection("sparse", 0, [4], [0]), "D=0"),
        (lambda: make_projection("dense", 100, [4], [-1]), "seed=-1"),
        (
            lambda: train_subspace(TrainConfig(), [SubspaceMember(0, 0.1)]),
            "d=0",
        ),
        (
            lambda: train_subspace(TrainConfig(), [SubspaceMember(8, 0.1)], projection="pca"),
            "projection='pca'",
        ),
        (
            lambda: intrinsic_dim_records("mlp", "digits", "sp", [8], [1], threshold=1.5),
            "threshold=1.5",
        ),
        (
            lambda: intrinsic_dim_records("mlp", "digits", "sp", [8], [1], threshold=0),
            "threshold=0",
        ),
        (
            lambda: intrinsic_dim_records("mlp", "digits", "sp", [8], [1], projection="fft"),
            "projection='fft'",
        ),
        (
            lambda: sweep_intrinsic_dim(
                synthetic_measure(10.0),
                pl.DataFrame({"seed": [0], "metric": [1.0]}),
                D=9,
                grid=[4, -2],
            ),
            "d=-2",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(make, needle):
    with pytest.raises(ValueError) as error:
        make()
    assert needle in str(error.value)
