"""The search for d_int: refinement, the measurement of toolkit models, and fine-tuning."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from torch import nn

from toolkit.analysis.intrinsic import d_int_records, d_int_table, load_measurements
from toolkit.engine.data import load_task
from toolkit.engine.subspace import parameter_count, train_module_subspace
from toolkit.studies.intrinsic import run_study
from toolkit.studies.intrinsic_finetune import class_subtask, finetune_intrinsic_dim
from toolkit.studies.intrinsic_search import measure_intrinsic_dim, sweep_intrinsic_dim
from toolkit.studies.intrinsic_settings import DSearch, Measurement, log_grid

pytestmark = pytest.mark.usefixtures("one_thread")


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
    search = DSearch(grid=(6, 9, 10), threshold=0.3)
    result = sweep_intrinsic_dim(measure, baseline, D=1000, search=search)
    means = dict(result.frame.group_by("d").agg(pl.col("metric").mean()).rows())
    assert result.estimate == 10
    assert means[9] < 0.15 and means[10] > 0.45
    assert toy.theta.grad is None  # theta0 stays frozen


# --------------------------------------------------------------------------- refinement


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
    search = DSearch(grid=tuple(log_grid(5000)), threshold=0.8, rounds=6)
    result = sweep_intrinsic_dim(synthetic_measure(370.0), baseline, D=5000, search=search)
    assert result.estimate == 296  # smallest d with d / 370 >= 0.8
    assert result.key == "d_int80"
    assert result.lo <= result.estimate <= result.hi
    evaluated = result.frame["d"].unique().to_list()
    assert len(evaluated) < 30  # refinement, not an exhaustive scan
    assert result.frame.height == 4 * len(evaluated)


def test_the_default_first_grid_doubles_up_to_the_parameter_count_or_2_to_the_14():
    assert DSearch().first_grid(100) == [4, 8, 16, 32, 64, 100]
    assert DSearch().first_grid(10**6)[-2:] == [2**13, 2**14]
    assert DSearch(grid=(64, 8, 8)).first_grid(10**6) == [8, 64]


# --------------------------------------------------------------------------- toolkit models


@pytest.mark.slow
def test_projections_agree_on_d_int90_of_a_small_model():
    task = load_task("teacher")
    base = Measurement(task="teacher", width=16, depth=1, steps=200, batch_size=64,
                       lrs=(2**-7, 2**-5, 2**-3), subspace_lrs=(2**-8, 2**-6, 2**-4))  # fmt: skip
    D = parameter_count(base.config(), task)
    search = DSearch(
        grid=tuple(log_grid(D, start=8)),
        rounds=2,
    )
    estimates = {}
    for projection in ("dense", "fastfood", "sparse"):
        measurement = Measurement(**{**base.settings(), "projection": projection}, lrs=base.lrs,
                                  subspace_lrs=base.subspace_lrs, search=search)  # fmt: skip
        estimates[projection] = measure_intrinsic_dim(measurement, task=task).estimate
    assert max(estimates.values()) <= 1.5 * min(estimates.values()), estimates


def test_records_for_the_command_line(tmp_path):
    measurement = Measurement(
        task="digits",
        parametrization="mup",
        width=8,
        depth=1,
        seeds=2,
        steps=40,
        batch_size=64,
        lrs=(2**-4,),
        subspace_lrs=(2**-6,),
        search=DSearch(grid=(16, 128), threshold=0.8, rounds=1),
    )
    run_study([measurement], tmp_path / "store", quiet=True)
    table = d_int_table(load_measurements(tmp_path / "store"), threshold=0.8)
    (record,) = d_int_records(table)
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


# --------------------------------------------------------------------------- fine-tuning


def test_fine_tuning_measures_both_starts(digits):
    measurement = Measurement(task="digits", width=8, depth=1, steps=30, batch_size=64, seeds=2,
                              lrs=(2**-4,), subspace_lrs=(2**-6,),
                              search=DSearch(grid=(8, 64, 128), rounds=0))  # fmt: skip
    results = finetune_intrinsic_dim(
        measurement,
        source_classes=[0, 1, 2, 3, 4, 5],
        target_classes=[6, 7, 8, 9],  # a new readout: the class counts may differ
        pretrain_steps=50,
        task=digits,
    )
    assert set(results) == {"pretrained", "scratch"}
    for result in results.values():
        assert result.D == 64 * 8 + 8 + 8 * 4 + 4
        assert result.frame["d"].unique().sort().to_list() == [8, 64, 128]


@pytest.mark.slow
def test_pretraining_lowers_the_intrinsic_dimension_of_a_new_task():
    task = load_task("mnist1d")  # digits is too easy: random features already suffice
    grid = (16, 64, 256, 1024, 4096)
    measurement = Measurement(task="mnist1d", width=64, depth=2, steps=150, batch_size=64,
                              seeds=2, lrs=(2**-7, 2**-5), subspace_lrs=(2**-8, 2**-6, 2**-4),
                              search=DSearch(grid=grid, rounds=1))  # fmt: skip
    results = finetune_intrinsic_dim(
        measurement,
        source_classes=[0, 1, 2, 3, 4],
        target_classes=[5, 6, 7, 8, 9],
        pretrain_steps=600,
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
        (lambda: Measurement(width=8, depth=1, search=DSearch(threshold=1.5)), "threshold=1.5"),
        (lambda: DSearch(threshold=0), "threshold=0"),
        (lambda: Measurement(width=8, depth=1, projection="fft"), "projection='fft'"),
        (lambda: DSearch(grid=(4, -2)), "d=-2"),
        (lambda: DSearch(rounds=-1), "rounds=-1"),
        (lambda: Measurement(lrs=()), "lrs=() must be a non-empty list"),
        (lambda: Measurement(seeds=0), "seeds=0"),
        (lambda: Measurement(parametrization="ntp"), "parametrization='ntp'"),
        (lambda: Measurement(task="chars"), "task='chars' does not fit model='mlp'"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_value(make, needle):
    with pytest.raises(ValueError) as error:
        make()
    assert needle in str(error.value)


def test_settings_are_frozen_and_their_id_names_every_grid():
    one = Measurement(width=8, depth=1)
    assert one.base_width == 8 and one.lrs == (2.0**-9, 2.0**-7, 2.0**-5)
    with pytest.raises(AttributeError):
        one.width = 16
    assert Measurement(width=8, depth=1, lrs=[2.0**-9, 2.0**-7, 2.0**-5]).id == one.id
    for changed in ({"lrs": (0.01,)}, {"subspace_lrs": (0.01,)}, {"search": DSearch(rounds=1)}):
        assert Measurement(width=8, depth=1, **changed).id != one.id
    same = {"search": DSearch(confidence=0.8), "max_members": 8}  # do not change the runs
    assert Measurement(width=8, depth=1, **same).id == one.id
