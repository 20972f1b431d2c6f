"""Claims about the sharpness probe: each member's top Hessian eigenvalue, checked against
the exact Hessian of a tiny MLP, and the probe leaves training as it was."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from torch.func import functional_call

from toolkit.engine.data import load_task
from toolkit.engine.evaluation import per_member_loss
from toolkit.engine.hessian import flushing_denormals, top_eigenvalue
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.probe_runner import ProbeContext, ProbeRunner
from toolkit.engine.probes import PROBE_FUNCTIONS, sharpness_stats
from toolkit.engine.train import Member, TrainConfig, build_model, train


@pytest.fixture(scope="module")
def task():
    return load_task("mnist1d")


def _context(task, seeds=(0, 1, 2), width=8, depth=2) -> ProbeContext:
    config = TrainConfig(task="mnist1d", parametrization=Parametrization("mup", base_width=8),
                         width=width, depth=depth)  # fmt: skip
    model = build_model(config, task.d_in, task.d_out, seeds=list(seeds))
    runner = ProbeRunner([sharpness_stats], [0], model=model, task=task, batch_size=64,
                         last_step=1, run_ids=[str(s) for s in seeds])  # fmt: skip
    return runner.context


def _exact_top_eigenvalue(ctx: ProbeContext, member: int, *, lr_scaled: bool = False) -> float:
    """``lambda_max`` of the member's exact Hessian (``torch.func.hessian``, every tensor),
    or with ``lr_scaled`` of ``D**0.5 H D**0.5``, ``D`` the member's step sizes."""
    params = {n: p.detach() for n, p in ctx.model.named_parameters()}
    names = list(params)
    shapes = [params[n][member].shape for n in names]
    sizes = [math.prod(s) for s in shapes]
    flat = torch.cat([params[n][member].flatten() for n in names])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        tensors = dict(params)
        for name, piece, shape in zip(names, theta.split(sizes), shapes, strict=True):
            tensors[name] = torch.cat([params[name][:member], piece.view(1, *shape),
                                       params[name][member + 1:]])  # fmt: skip
        out = functional_call(ctx.model, tensors, (ctx.x,))
        return per_member_loss(ctx.task, out, ctx.y)[member]

    hessian = torch.func.hessian(loss)(flat).double()
    if lr_scaled:
        assert names == [spec.name for spec, _ in ctx.model.named_tensors()]
        sizes = ctx.step_sizes()
        root = torch.cat([size[member].double().sqrt().expand(shape).flatten()
                          for size, shape in zip(sizes, shapes, strict=True)])  # fmt: skip
        hessian = root[:, None] * hessian * root[None, :]
    return float(torch.linalg.eigvalsh(hessian)[-1])


def _values(rows: list[dict], stat: str) -> list[float]:
    return [r["value"] for r in sorted(rows, key=lambda r: r["member"]) if r["stat"] == stat]


def test_each_members_sharpness_is_the_top_eigenvalue_of_its_exact_hessian(task):
    ctx = _context(task)
    rows = sharpness_stats(ctx)
    assert PROBE_FUNCTIONS["sharpness"] is sharpness_stats
    assert {(r["layer"], r["role"]) for r in rows} == {("model", "model")}
    assert _values(rows, "sharpness_converged") == [1.0, 1.0, 1.0]
    sharpness = _values(rows, "sharpness")
    for member, value in enumerate(sharpness):
        assert value == pytest.approx(_exact_top_eigenvalue(ctx, member), rel=1e-3)
    assert len({round(v, 6) for v in sharpness}) == 3  # seeds give different values
    assert not any(r["stat"].startswith("precond") for r in rows)  # no optimizer to ask


def test_the_preconditioned_sharpness_is_that_of_the_exact_scaled_hessian(task):
    """Per-coordinate step sizes, as Adam's: ``D`` positive and different everywhere."""
    ctx = _context(task)
    base = torch.tensor([0.1, 0.02, 0.5])
    generator = torch.Generator().manual_seed(4)
    sizes = [base.view(-1, *([1] * (p.dim() - 1))) * torch.rand(p.shape, generator=generator)
             .add(0.1) for _, p in ctx.model.named_tensors()]  # fmt: skip
    ctx.step_sizes = lambda: sizes
    rows = sharpness_stats(ctx)
    assert _values(rows, "preconditioned_sharpness_converged") == [1.0, 1.0, 1.0]
    for member, value in enumerate(_values(rows, "preconditioned_sharpness")):
        exact = _exact_top_eigenvalue(ctx, member, lr_scaled=True)
        assert value == pytest.approx(exact, rel=1e-3)
        assert value != pytest.approx(base[member].item() * _values(rows, "sharpness")[member],
                                      rel=1e-2)  # fmt: skip


def test_lanczos_returns_the_largest_algebraic_eigenvalue_per_block():
    """Blocks with known spectra; in the second the most negative eigenvalue dominates."""
    generator = torch.Generator().manual_seed(1)
    spectra = torch.tensor([[3.0, 1.0, 0.5, -0.2] + [0.1] * 36,
                            [1.0, -5.0, 0.3, 0.0] + [-0.1] * 36], dtype=torch.float64)
    rotations = torch.linalg.qr(torch.randn(2, 40, 40, generator=generator,
                                            dtype=torch.float64)).Q  # fmt: skip
    blocks = rotations @ torch.diag_embed(spectra) @ rotations.mT
    like = [torch.zeros(2, 40, dtype=torch.float64)]
    top = top_eigenvalue(lambda v: [(blocks @ v[0].unsqueeze(-1)).squeeze(-1)], like, tol=1e-8)
    assert top.converged.tolist() == [True, True]
    assert top.eigenvalue.tolist() == pytest.approx([3.0, 1.0], rel=1e-8)
    capped = top_eigenvalue(lambda v: [(blocks @ v[0].unsqueeze(-1)).squeeze(-1)], like,
                            tol=1e-12, max_iterations=2)  # fmt: skip
    assert capped.converged.tolist() == [False, False]
    assert capped.iterations.tolist() == [2, 2]


def test_a_nan_or_frozen_member_reads_nan_and_leaves_the_others_alone(task):
    ctx = _context(task)
    clean = _values(sharpness_stats(ctx), "sharpness")
    with torch.no_grad():
        for param in ctx.model.parameters():
            param[1] = math.nan
    rows = sharpness_stats(ctx)
    values = _values(rows, "sharpness")
    assert math.isnan(values[1])
    assert _values(rows, "sharpness_converged")[1] == 0.0
    assert values[0] == pytest.approx(clean[0], rel=1e-6)
    assert values[2] == pytest.approx(clean[2], rel=1e-6)
    ctx.active = torch.tensor([True, False, False])
    values = _values(sharpness_stats(ctx), "sharpness")
    assert values[0] == pytest.approx(clean[0], rel=1e-6)
    assert math.isnan(values[1]) and math.isnan(values[2])


def test_the_probe_changes_no_tensor_and_leaves_no_gradient(task):
    ctx = _context(task)
    before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
    assert not flushing_denormals()
    sharpness_stats(ctx)
    assert not flushing_denormals()  # the probe flushes denormals and restores the setting
    for name, param in ctx.model.named_parameters():
        assert param.grad is None
        assert torch.equal(param, before[name])


def _train(task, probes):
    config = TrainConfig(task="mnist1d", parametrization=Parametrization("mup", base_width=8),
                         width=16, depth=2, steps=12, batch_size=32, eval_every=4,
                         optimizer="adam")  # fmt: skip
    members = [Member(lr=0.003, seed=0), Member(lr=0.03, seed=0), Member(lr=0.003, seed=1)]
    return train(config, members, task=task, probes=probes, probe_steps=[0, 5, 12])


def test_under_sp_with_sgd_the_preconditioned_sharpness_is_lr_times_the_sharpness(task):
    """SP gives every tensor the member's LR, so ``D`` is the LR times the identity."""
    config = TrainConfig(task="mnist1d", parametrization=Parametrization("sp"), width=16,
                         depth=2, steps=6, batch_size=32, eval_every=3,
                         optimizer="sgd")  # fmt: skip
    members = [Member(lr=0.05, seed=0), Member(lr=0.2, seed=1)]
    records = train(config, members, task=task, probes=[sharpness_stats], probe_steps=[0, 6])
    wide = records.probes.pivot(on="stat", index=["run_id", "step"], values="value")
    lrs = dict(zip(records.runs["run_id"], records.runs["lr"], strict=True))
    for row in wide.iter_rows(named=True):
        scaled = lrs[row["run_id"]] * row["sharpness"]
        assert row["preconditioned_sharpness"] == pytest.approx(scaled, rel=1e-3)


def test_training_with_the_probe_is_bit_identical_and_lrs_separate_members(task):
    plain = _train(task, [])
    probed = _train(task, [sharpness_stats])
    assert probed.curves.equals(plain.curves)
    sharp = probed.probes.filter(pl.col("stat") == "sharpness").sort("step", "run_id")
    assert sharp.height == 9 and sharp["value"].is_finite().all()
    stats = probed.probes.group_by("step").agg(pl.col("stat").unique().sort())
    names = dict(zip(stats["step"], stats["stat"].to_list(), strict=True))
    suffixes = ("", "_iters", "_converged")
    assert names[0] == sorted(f"sharpness{suffix}" for suffix in suffixes)  # Adam: no moments
    assert names[12] == sorted(f"{name}{suffix}" for name in ("sharpness",
                               "preconditioned_sharpness") for suffix in suffixes)  # fmt: skip
    ids = plain.runs["run_id"].to_list()
    at = {(row["step"], row["run_id"]): row["value"] for row in sharp.iter_rows(named=True)}
    assert at[(0, ids[0])] == pytest.approx(at[(0, ids[1])], rel=1e-3)  # same seed, same start
    assert at[(12, ids[0])] != pytest.approx(at[(12, ids[1])], rel=1e-2)  # LRs differ
    assert at[(0, ids[0])] != pytest.approx(at[(0, ids[2])], rel=1e-3)  # seeds differ


def test_sharpness_agrees_with_pyhessian(task):
    """PyHessian (Yao et al. 2020) by power iteration, on a one-member ensemble."""
    pyhessian = pytest.importorskip("pyhessian")
    ctx = _context(task, seeds=(3,), width=16)
    ours = _values(sharpness_stats(ctx), "sharpness")[0]
    model = build_model(TrainConfig(task="mnist1d", width=16, depth=2,
                                    parametrization=Parametrization("mup", base_width=8)),
                        task.d_in, task.d_out, seeds=[3])  # fmt: skip
    torch.manual_seed(0)
    reference = pyhessian.hessian(
        model, lambda out, y: per_member_loss(ctx.task, out, y).sum(), data=(ctx.x, ctx.y),
        cuda=False,
    )  # fmt: skip
    top, _ = reference.eigenvalues(maxIter=500, tol=1e-6)
    assert ours == pytest.approx(top[0], rel=1e-3)


def test_the_sharpness_of_a_transformer_is_that_of_its_explicit_attention():
    """The fused attention kernel has no second derivative; the probe's products go through
    PyTorch's math backend, the same function as the explicit product a capturing forward
    forms (which double backward always went through)."""
    chars = load_task("chars")
    config = TrainConfig(task="chars", model="transformer", width=32, depth=1,
                         parametrization=Parametrization("mup", base_width=32))  # fmt: skip
    model = build_model(config, chars.d_in, chars.d_out, seeds=[0, 1])
    runner = ProbeRunner([sharpness_stats], [0], model=model, task=chars, batch_size=2,
                         last_step=1, run_ids=["0", "1"])  # fmt: skip
    ctx = runner.context
    rows = sharpness_stats(ctx)
    assert _values(rows, "sharpness_converged") == [1.0, 1.0]
    params = [p for _, p in model.named_tensors()]
    loss = per_member_loss(chars, model(ctx.x, capture={}), ctx.y).sum()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    explicit = top_eigenvalue(
        lambda v: list(torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)),
        params,
    )
    assert explicit.converged.all()
    for probe, exact in zip(_values(rows, "sharpness"), explicit.eigenvalue.tolist(), strict=True):
        assert probe == pytest.approx(exact, rel=1e-3)
