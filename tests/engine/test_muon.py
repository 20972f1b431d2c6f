"""Claims about Muon: orthogonalised hidden updates of the prescribed spectral norm."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.engine.config import TrainConfig
from toolkit.engine.models import MLP
from toolkit.engine.optim import NEWTON_SCHULZ, AdamW, Muon, orthogonalise
from toolkit.engine.parametrization import Parametrization, describe, orthogonalised, resolve
from toolkit.engine.transformer import Transformer

LR = 0.01
QUINTIC_SPREAD = (0.68, 1.22)  # where 5 quintic steps leave the top singular value


def _random_gradients(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _, p in model.named_tensors():
        p.grad = torch.randn(p.shape, generator=g)


def _one_step(model, *, iteration="quintic", ns_steps=5, weight_decay=0.0):
    specs = [s for s, _ in model.named_tensors()]
    resolved = resolve(
        specs, model.parametrization, width=model.width, depth=model.depth, optimizer="muon"
    )
    before = {s.name: p.detach().clone() for s, p in model.named_tensors()}
    members = model.members
    muon = Muon(
        [p for _, p in model.named_tensors()],
        resolved,
        torch.full((members,), LR),
        torch.full((members,), weight_decay),
        iteration=iteration,
        ns_steps=ns_steps,
    )
    muon.step()
    return {s.name: (s, p.detach() - before[s.name]) for s, p in model.named_tensors()}


def test_cubic_iteration_converges_to_the_polar_factor():
    g = torch.randn(3, 24, 40, generator=torch.Generator().manual_seed(1))
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh
    torch.testing.assert_close(
        orthogonalise(g, steps=30, iteration="cubic"), polar, atol=1e-4, rtol=0
    )
    tall = g.transpose(1, 2)
    torch.testing.assert_close(
        orthogonalise(tall, steps=30, iteration="cubic"), polar.transpose(1, 2), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(("iteration", "steps", "band"), [
    ("cubic", 30, (0.999, 1.001)),
    ("quintic", 5, QUINTIC_SPREAD),
])  # fmt: skip
def test_hidden_updates_have_spectral_norm_lr_sqrt_fan_out_over_fan_in(iteration, steps, band):
    """Random gradients, one step from rest: every hidden matrix of a Transformer (square
    attention maps, n -> 4n and 4n -> n MLP maps) moves by lr * sqrt(fan_out / fan_in) in
    spectral norm, up to the iteration's spread (none for a converged cubic iteration)."""
    model = Transformer(d_in=16, d_out=12, width=32, depth=2, seeds=[0, 1, 2],
                        parametrization=Parametrization("mup", base_width=32))  # fmt: skip
    _random_gradients(model)
    deltas = _one_step(model, iteration=iteration, ns_steps=steps)
    checked = 0
    for spec, delta in deltas.values():
        if not orthogonalised(spec):
            continue
        top = torch.linalg.matrix_norm(delta, ord=2)
        ratio = top / (LR * math.sqrt(spec.fan_out / spec.fan_in))
        assert ratio.min() >= band[0] and ratio.max() <= band[1], (spec.name, ratio)
        checked += 1
    assert checked == 2 * 6  # q, k, v, o, fc1, fc2 per block


def test_every_other_tensor_gets_exactly_adamw():
    param = Parametrization("mup", base_width=32)
    model = Transformer(d_in=16, d_out=12, width=32, depth=1, parametrization=param, seeds=[0, 1])
    twin = Transformer(d_in=16, d_out=12, width=32, depth=1, parametrization=param, seeds=[0, 1])
    _random_gradients(model)
    deltas = _one_step(model, weight_decay=0.1)
    others = [(s, p) for s, p in twin.named_tensors() if not orthogonalised(s)]
    _random_gradients(twin)
    resolved = resolve([s for s, _ in others], param, width=32, depth=1, optimizer="muon")
    before = [p.detach().clone() for _, p in others]
    adamw = AdamW([p for _, p in others], resolved, torch.full((2,), LR), torch.full((2,), 0.1))
    adamw.step()
    for (spec, p), start in zip(others, before, strict=True):
        assert torch.equal(deltas[spec.name][1], p.detach() - start), spec.name


def test_weight_decay_is_decoupled_and_a_zero_gradient_gives_no_update():
    model = MLP(d_in=6, d_out=3, width=16, depth=3, parametrization=Parametrization(), seeds=[0])
    for _, p in model.named_tensors():
        p.grad = torch.zeros_like(p)
    before = model.member_state(0)["hidden1.weight"]
    deltas = _one_step(model, weight_decay=0.5)
    torch.testing.assert_close(deltas["hidden1.weight"][1][0], -LR * 0.5 * before)


def test_muon_hidden_learning_rate_has_no_width_exponent():
    """Under muP, Adam's hidden LR is eta/m; Muon's is eta (its update is already
    spectrally scaled). Mean-field multiplies the hidden forward pass by m**-1/2, so its
    Muon LR grows like m**1/2. Tensors that Muon leaves to AdamW keep Adam's rules."""
    rows = {}
    for name in ("sp", "mup", "mf"):
        param = Parametrization(name, base_width=32)
        model = MLP(d_in=6, d_out=3, width=128, depth=3, parametrization=param, seeds=[0])
        for optimizer in ("adam", "muon"):
            table = describe(model, optimizer=optimizer, lr=1.0)
            rows[name, optimizer] = dict(zip(table["name"], table["lr"], strict=True))
    assert rows["mup", "adam"]["hidden1.weight"] == pytest.approx(0.25)
    assert rows["mup", "muon"]["hidden1.weight"] == 1.0
    assert rows["sp", "muon"]["hidden1.weight"] == 1.0
    assert rows["mf", "muon"]["hidden1.weight"] == pytest.approx(2.0)
    for name in ("sp", "mup", "mf"):
        for tensor in ("input.weight", "readout.weight", "hidden1.bias"):
            assert rows[name, "muon"][tensor] == rows[name, "adam"][tensor]


def test_bad_muon_settings_raise_value_errors_naming_them():
    model = MLP(d_in=6, d_out=3, width=16, depth=2, parametrization=Parametrization(), seeds=[0])
    params = [p for _, p in model.named_tensors()]
    resolved = resolve([s for s, _ in model.named_tensors()], Parametrization(), width=16,
                       depth=2, optimizer="muon")  # fmt: skip
    lr, wd = torch.full((1,), LR), torch.zeros(1)
    with pytest.raises(ValueError, match="iteration='septic'") as error:
        Muon(params, resolved, lr, wd, iteration="septic")
    assert all(repr(name) in str(error.value) for name in NEWTON_SCHULZ)
    with pytest.raises(ValueError, match="ns_steps=0"):
        Muon(params, resolved, lr, wd, ns_steps=0)


def _muon_setup(model) -> tuple[list, list, list]:
    """Random gradients on ``model``; its (spec, tensor) pairs, Muon's resolved rules, and
    a copy of every tensor before the step."""
    _random_gradients(model)
    tensors = list(model.named_tensors())
    resolved = resolve([s for s, _ in tensors], model.parametrization, width=model.width,
                       depth=model.depth, optimizer="muon")  # fmt: skip
    return tensors, resolved, [p.detach().clone() for _, p in tensors]


@pytest.mark.parametrize(("adam", "expected"), [
    ({"adam_lr": 3e-4}, 3e-4), ({"adam_lr_ratio": 0.1}, 0.1 * LR), ({}, LR),
])  # fmt: skip
def test_muons_adamw_part_receives_its_own_lr(adam, expected):
    """Jordan et al. run the non-hidden tensors with their own AdamW LR: here each such
    tensor's first step (Adam's first step moves every coordinate by the LR) is the given
    AdamW LR, not the Muon LR."""
    model = MLP(d_in=6, d_out=3, width=16, depth=2, seeds=[0, 1],
                parametrization=Parametrization("sp", base_width=16))  # fmt: skip
    tensors, resolved, before = _muon_setup(model)
    Muon([p for _, p in tensors], resolved, torch.full((2,), LR), torch.zeros(2), **adam).step()
    for (spec, p), old in zip(tensors, before, strict=True):
        if not orthogonalised(spec):
            step = (p.detach() - old).abs()
            torch.testing.assert_close(step, torch.full_like(step, expected), rtol=1e-3, atol=0)


def _spectral(d, fan_ratio):
    return torch.linalg.matrix_norm(d, ord=2) / math.sqrt(fan_ratio)


@pytest.mark.parametrize(("scaling", "norm"), [
    ("fan_ratio", lambda s, d: _spectral(d, s.fan_out / s.fan_in)),
    ("max_fan_ratio", lambda s, d: _spectral(d, max(1.0, s.fan_out / s.fan_in))),
    ("adamw_rms", lambda s, d: d.pow(2).mean(dim=(1, 2)).sqrt() / 0.2),
    ("spectral", lambda s, d: _spectral(d, s.fan_out / s.fan_in)),
])  # fmt: skip
def test_each_muon_scaling_gives_its_stated_update_norm(scaling, norm):
    """With a converged iteration, one step from rest moves each hidden matrix by exactly
    the stated norm times the LR: spectral norm for the fan ratios, RMS 0.2 lr for
    ``adamw_rms``; ``spectral`` normalises even the quintic iteration's spread away."""
    model = Transformer(d_in=16, d_out=12, width=32, depth=1, seeds=[0, 1],
                        parametrization=Parametrization("mup", base_width=32))  # fmt: skip
    tensors, resolved, before = _muon_setup(model)
    converged = {"iteration": "cubic", "ns_steps": 30} if scaling != "spectral" else {}
    Muon([p for _, p in tensors], resolved, torch.full((2,), LR), torch.zeros(2),
         scaling=scaling, **converged).step()  # fmt: skip
    for (spec, p), old in zip(tensors, before, strict=True):
        if orthogonalised(spec):
            got = norm(spec, p.detach() - old) / LR
            torch.testing.assert_close(got, torch.ones_like(got), rtol=2e-3, atol=0)


def test_muons_momentum_defaults_to_jordan_et_als_and_sgds_stays():
    assert TrainConfig(optimizer="muon").momentum == 0.95
    assert TrainConfig(optimizer="sgd").momentum == 0.9
    assert TrainConfig(optimizer="muon").optimizer_kwargs()["nesterov"] is True
