"""Random projections and subspace training (theta = theta0 + P theta_d)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

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

pytestmark = pytest.mark.usefixtures("one_thread")


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
    ],
)
def test_bad_input_raises_value_error_naming_the_value(make, needle):
    with pytest.raises(ValueError) as error:
        make()
    assert needle in str(error.value)
