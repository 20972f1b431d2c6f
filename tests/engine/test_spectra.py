"""Layer spectra: singular values and derived statistics agree with numpy and with
WeightWatcher, the power-law fit recovers known exponents, the spectral probe reports
the effective weights' statistics, and the spectral condition separates muP from SP."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.probes import PROBE_FUNCTIONS, log_spaced_steps, spectral_stats, sv_stat
from toolkit.engine.spectra import (
    MAX_ALPHA,
    fit_power_law,
    log_spaced_ranks,
    singular_values,
    spectral_norm,
    stable_rank,
)
from toolkit.engine.train import Member, ProbeContext, TrainConfig, build_model, train


def _matrices() -> list[np.ndarray]:
    """Matrices with light and heavy-tailed spectra, wide and tall."""
    rng = np.random.default_rng(0)
    return [
        rng.standard_t(3, size=(400, 200)),
        rng.standard_normal((300, 300)),
        rng.standard_t(2.5, size=(256, 512)),
        rng.standard_normal((300, 120)) * rng.pareto(2.0, size=(1, 120)),
    ]


@pytest.mark.parametrize("shape", [(5, 7), (64, 16), (3, 40, 40), (2, 2, 30, 9)])
def test_singular_values_match_numpy_svd(shape):
    matrices = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = np.linalg.svd(matrices.numpy(), compute_uv=False)
    np.testing.assert_allclose(singular_values(matrices).numpy(), expected, rtol=1e-10)


def test_large_matrices_get_accurate_top_singular_values():
    generator = torch.Generator().manual_seed(2)
    matrices = torch.randn(2, 300, 200, generator=generator, dtype=torch.float64)
    expected = np.linalg.svd(matrices.numpy(), compute_uv=False)[:, :16]
    top = singular_values(matrices, full_up_to=100, top_k=16)
    assert top.shape == (2, 16)
    np.testing.assert_allclose(top[:, 0].numpy(), expected[:, 0], rtol=1e-4)
    np.testing.assert_allclose(top.numpy(), expected, rtol=2e-2)
    assert torch.equal(top, singular_values(matrices, full_up_to=100, top_k=16))


def test_krylov_spectral_norm_matches_numpy_on_hard_and_easy_matrices():
    generator = torch.Generator().manual_seed(7)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    gaussian = randn(4, 160, 130)  # no gap below sigma_max: the slowest case
    low_rank = randn(4, 200, 3) @ randn(4, 3, 150)  # the Krylov space runs out
    spike = 0.01 * randn(4, 150, 150) + randn(4, 150, 1) @ randn(4, 1, 150) / 150
    for matrices in (gaussian, low_rank, spike, gaussian.mT, gaussian[:, :5, :7]):
        expected = np.linalg.norm(matrices.numpy(), 2, axis=(-2, -1))
        np.testing.assert_allclose(spectral_norm(matrices).numpy(), expected, rtol=1e-5)
    assert spectral_norm(torch.zeros(2, 3, 200, 200)).shape == (2, 3)
    assert (spectral_norm(torch.zeros(2, 200, 200)) == 0).all()
    with pytest.raises(ValueError, match="max_steps=0"):
        spectral_norm(gaussian, max_steps=0)


def test_norms_and_stable_rank_match_numpy():
    for matrix in _matrices():
        sigma = np.linalg.svd(matrix, compute_uv=False)
        values = singular_values(torch.from_numpy(matrix))
        fro = torch.from_numpy(matrix).norm()
        assert float(values[0]) == pytest.approx(np.linalg.norm(matrix, 2), rel=1e-10)
        assert float(fro) == pytest.approx(np.linalg.norm(matrix, "fro"), rel=1e-10)
        expected = (sigma**2).sum() / sigma[0] ** 2
        assert float(stable_rank(fro, values[0])) == pytest.approx(expected, rel=1e-10)


def test_spectral_norm_stable_rank_and_alpha_agree_with_weightwatcher():
    ww = pytest.importorskip("weightwatcher")
    matrices = _matrices()
    layers = [torch.nn.Linear(m.shape[0], m.shape[1], bias=False) for m in matrices]
    with torch.no_grad():
        for layer, matrix in zip(layers, matrices, strict=True):
            layer.weight.copy_(torch.from_numpy(matrix.T))  # nn.Linear stores (out, in)
    details = ww.WeightWatcher(model=torch.nn.Sequential(*layers)).analyze()
    assert len(details) == len(matrices)
    for matrix, (_, row) in zip(matrices, details.iterrows(), strict=True):
        values = singular_values(torch.from_numpy(matrix))
        fro = torch.from_numpy(matrix).norm()
        fit = fit_power_law(values.numpy() ** 2)
        # WeightWatcher's "spectral_norm" is the largest eigenvalue of W^T W, sigma_max**2.
        assert float(values[0]) ** 2 == pytest.approx(row["spectral_norm"], rel=1e-4)
        assert float(stable_rank(fro, values[0])) == pytest.approx(row["stable_rank"], rel=1e-4)
        assert fit.alpha == pytest.approx(row["alpha"], rel=1e-3)
        assert fit.lambda_min == pytest.approx(row["xmin"], rel=1e-3)
        assert fit.tail == row["num_pl_spikes"]


@pytest.mark.parametrize("alpha", [2.5, 4.0])
def test_power_law_fit_recovers_the_exponent_of_a_pareto_sample(alpha):
    u = np.random.default_rng(3).random(4000)
    sample = 0.5 * (1 - u) ** (-1 / (alpha - 1))  # continuous power law above 0.5
    fit = fit_power_law(sample)
    assert fit.alpha == pytest.approx(alpha, abs=0.15)
    assert fit.reliable and fit.tail >= 1000


def test_power_law_fits_over_few_eigenvalues_or_with_large_alpha_are_unreliable():
    u = np.random.default_rng(4).random(40)
    small = fit_power_law(0.5 * (1 - u) ** (-1 / 1.5))
    assert small.tail < 50 and not small.reliable
    steep = fit_power_law(0.5 * (1 - np.random.default_rng(5).random(500)) ** (-1 / 11.0))
    assert steep.alpha > MAX_ALPHA and not steep.reliable
    assert np.isnan(fit_power_law(np.array([1.0])).alpha)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="eigenvalues"):
        fit_power_law(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="matrices"):
        singular_values(torch.ones(3))
    with pytest.raises(ValueError, match="top_k=0"):
        singular_values(torch.ones(3, 3), top_k=0)
    with pytest.raises(ValueError, match="steps=0"):
        log_spaced_steps(0)
    with pytest.raises(ValueError, match="points=0"):
        log_spaced_ranks(10, 0)


def test_schedules_are_log_spaced_with_both_ends():
    assert log_spaced_steps(500) == [0, 1, 3, 8, 22, 63, 177, 500]
    assert log_spaced_steps(3, 8) == [0, 1, 2, 3]
    assert log_spaced_steps(10, 1) == [10]
    ranks = log_spaced_ranks(256, 32)
    assert ranks[0] == 1 and ranks[-1] == 256 and len(ranks) <= 32
    assert ranks == sorted(set(ranks))
    assert log_spaced_ranks(10, 32) == list(range(1, 11))


def _context(step: int) -> ProbeContext:
    """A muP model (readout multiplier 1/4 at width 64) whose weights moved twice."""
    config = TrainConfig(task="digits", parametrization=Parametrization("mup", base_width=16),
                         width=64, depth=2)  # fmt: skip
    model = build_model(config, 64, 10, seeds=[0, 1])
    generator = torch.Generator().manual_seed(6)
    initial = {s.name: p.detach().clone() for s, p in model.named_tensors()}
    with torch.no_grad():
        for _, param in model.named_tensors():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    previous = {s.name: p.detach().clone() for s, p in model.named_tensors()}
    with torch.no_grad():
        for _, param in model.named_tensors():
            param.add_(0.01 * torch.randn(param.shape, generator=generator))
    x = torch.randn(2, 32, 64, generator=generator)
    return ProbeContext(model, step, x, initial, previous)


def test_spectral_probe_reports_the_effective_weights_statistics():
    ctx = _context(step=5)
    frame = pl.DataFrame(spectral_stats(ctx, sv_points=8))
    activations = ctx.activations()
    params = dict(ctx.model.named_parameters())
    for spec, _ in ctx.model.named_tensors():
        if spec.kind.value != "weight":
            continue
        layer, mult = spec.name.removesuffix(".weight"), ctx.model.forward_mults[spec.name]
        scale = np.sqrt(spec.fan_out / spec.fan_in)
        for member in range(2):
            w = params[spec.name][member].detach().double().numpy() * mult
            w0 = ctx.initial[spec.name][member].double().numpy() * mult
            w1 = ctx.previous[spec.name][member].double().numpy() * mult
            sigma = np.linalg.svd(w, compute_uv=False)
            h = activations[layer][member].double().numpy()
            expected = {
                "sigma_max": sigma[0],
                "fro_norm": np.linalg.norm(w),
                "stable_rank": (sigma**2).sum() / sigma[0] ** 2,
                "cond_ratio": sigma[0] / scale,
                "delta_cond_ratio": np.linalg.norm(w - w0, 2) / scale,
                "update_cond_ratio": np.linalg.norm(w - w1, 2) / scale,
                "update_ratio": np.linalg.norm(w - w1) / np.linalg.norm(w1),
                "act_rms": np.sqrt((h**2).mean()),
                sv_stat(1): sigma[0],
                sv_stat(len(sigma)): sigma[-1],
            }
            got = frame.filter(pl.col("layer") == layer, pl.col("member") == member)
            assert set(got["role"]) == {spec.role.value}
            values = dict(zip(got["stat"], got["value"], strict=True))
            for stat, value in expected.items():
                assert values[stat] == pytest.approx(value, rel=1e-4), (layer, stat)
            ranks = [int(s.removeprefix("sv_")) for s in values if s.startswith("sv_")]
            assert ranks == log_spaced_ranks(len(sigma), 8)
    assert PROBE_FUNCTIONS["spectra"] is spectral_stats


def test_update_statistics_start_at_step_one_and_alpha_only_where_reliable():
    rows = pl.DataFrame(spectral_stats(_context(step=0)))
    assert not rows.filter(pl.col("stat").str.starts_with("update")).height
    assert (rows.filter(pl.col("stat") == "delta_cond_ratio")["value"] == 0).all()
    # 64 x 64 hidden matrices: a tail of 50+ eigenvalues is rare, so alpha rows are too;
    # the readout (10 singular values) never has one.
    assert not rows.filter(pl.col("stat") == "alpha", pl.col("layer") == "readout").height


@pytest.fixture(scope="module")
def mnist1d():
    return load_task("mnist1d")


@pytest.fixture(scope="module")
def hidden_ratios(mnist1d) -> dict[tuple[str, str], pl.Series]:
    """Per parametrization and stat: each hidden matrix's seed-mean value at width 256
    over its value at width 64, after 10 Adam steps at LR 0.01. At the base width 64
    SP and muP are the same model, trained once."""

    def hidden_means(parametrization: str, width: int) -> pl.DataFrame:
        config = TrainConfig(task="mnist1d", parametrization=Parametrization(
                             parametrization, base_width=64), width=width, depth=3, steps=10,
                             eval_every=10, eval_examples=256)  # fmt: skip
        records = train(config, [Member(lr=0.01, seed=s) for s in range(2)], task=mnist1d,
                        probes=[spectral_stats], probe_steps=[10])  # fmt: skip
        return (
            records.probes.filter(pl.col("role") == "hidden")
            .group_by("layer", "stat")
            .agg(pl.col("value").mean())
        )

    base = hidden_means("mup", 64)
    out = {}
    for parametrization in ("sp", "mup"):
        ratio = hidden_means(parametrization, 256).join(base, on=["layer", "stat"])
        for stat in ("cond_ratio", "update_cond_ratio"):
            rows = ratio.filter(pl.col("stat") == stat).sort("layer")
            out[parametrization, stat] = rows["value"] / rows["value_right"]
    return out


@pytest.mark.parametrize("stat", ["cond_ratio", "update_cond_ratio"])
def test_spectral_condition_is_flatter_across_widths_under_mup_than_sp(hidden_ratios, stat):
    """Yang, Simon & Bernstein (2023): under muP a hidden layer's ||W||_2 and ||dW||_2 scale
    like sqrt(fan_out / fan_in), so their ratio to it stays put from width 64 to 256;
    under SP with Adam the updates, and with them the weights, grow with width."""
    mup, sp = hidden_ratios["mup", stat], hidden_ratios["sp", stat]
    assert mup.len() == sp.len() == 2  # two hidden matrices
    assert mup.is_between(1 / 1.25, 1.25).all(), mup
    assert (sp > 1.5).all(), sp
    assert (np.abs(np.log(sp.to_numpy())) > 2 * np.abs(np.log(mup.to_numpy()))).all()


def test_large_matrices_get_top_singular_values_and_exact_norms_but_no_alpha():
    config = TrainConfig(task="digits", parametrization=Parametrization("sp", base_width=16),
                         width=128, depth=2)  # fmt: skip
    model = build_model(config, 64, 10, seeds=[0])
    params = {s.name: p.detach().clone() for s, p in model.named_tensors()}
    ctx = ProbeContext(model, 0, torch.zeros(1, 4, 64), params, params)
    rows = pl.DataFrame(spectral_stats(ctx, full_up_to=16)).filter(pl.col("layer") == "hidden1")
    w = params["hidden1.weight"][0].double().numpy()
    sigma = np.linalg.svd(w, compute_uv=False)
    values = dict(zip(rows["stat"], rows["value"], strict=True))
    assert values["sigma_max"] == pytest.approx(sigma[0], rel=1e-3)
    assert values["stable_rank"] == pytest.approx((sigma**2).sum() / sigma[0] ** 2, rel=1e-3)
    ranks = [int(s.removeprefix("sv_")) for s in values if s.startswith("sv_")]
    assert max(ranks) == 64 and "alpha" not in values
