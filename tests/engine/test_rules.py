"""Claims about the rule tables: each width rule is the abc-parametrization it names,
mean-field is muP except under a constant epsilon, and every weight-decay rule fixes the
per-step decay it promises."""

from __future__ import annotations

import pytest
import torch

from toolkit.engine.everett import PARAMETRIZATIONS as EVERETT
from toolkit.engine.models import MLP
from toolkit.engine.optim import make_optimizer
from toolkit.engine.parametrization import Parametrization, Role, describe, resolve
from toolkit.engine.rules import WIDTH_RULES

BASE, WIDE = 32, 128


def _train(name: str, optimizer: str, *, eps_rule: str = "gradient", steps: int = 20):
    """Outputs on a fixed batch after ``steps`` full-batch steps of an MLP at width WIDE."""
    param = Parametrization(name, base_width=BASE, eps_rule=eps_rule)
    model = MLP(d_in=8, d_out=4, width=WIDE, depth=2, seeds=[0, 1], parametrization=param)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 64, 8, generator=g), torch.randint(0, 4, (2, 64), generator=g)
    specs = [s for s, _ in model.named_tensors()]
    resolved = resolve(specs, param, width=WIDE, depth=2, optimizer=optimizer)
    lr = 1e-2 if optimizer != "sgd" else 1e-1
    opt = make_optimizer(optimizer, [p for _, p in model.named_tensors()], resolved,
                         torch.full((2,), lr), torch.zeros(2), eps=1e-3)  # fmt: skip
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "adam-atan2"])
def test_mean_field_is_mup_under_sgd_and_under_adam_with_gradient_scaled_epsilon(optimizer):
    """Everett et al. 2024: the abc symmetry maps muP to mean-field, exactly as long as
    epsilon follows the gradient (Adam-atan2 has none)."""
    mup, mf = _train("mup", optimizer), _train("mf", optimizer)
    torch.testing.assert_close(mf, mup, atol=1e-4, rtol=1e-4)


def test_mean_field_differs_from_mup_under_adam_with_a_constant_epsilon():
    mup = _train("mup", "adam", eps_rule="constant")
    mf = _train("mf", "adam", eps_rule="constant")
    assert (mf - mup).abs().max() > 1e-2


def _derived(name: str) -> dict[Role, dict[str, float]]:
    """Each row derived from the abc formulas (module docstring of toolkit.engine.rules),
        not read from the table: forward ``a``, init ``a + b`` (the effective weight's std
        exponent), effective Adam LR ``a + c`` and effective SGD LR ``2a + c``.

        Effective init: input ``0`` (fan-in fixed), hidden ``1/2`` (fan-in init), readout
        ``1/2`` for SP and NTK (O(1) logits) and ``1`` for muP and mean-field (logits
        O(1/sqrt n), Everett et al. 2024 section 2). Effective Adam LR for maximal updates under
        full alignment: ``0`` where the fan-in is fixed (input, vectors), ``1`` where it grows
        (hidden, readout); SP keeps one global LR (``a + c = 0``); the lazy NTK makes hidden
        features move by ``m**-1/2`` (input ``1/2``, hidden ``3/2``) with O(1) function updates
        (readout ``1``). SGD: muP's effective ``(-1, 0, 1)`` (Tensor Programs V, Table 3: LR
    ``eta n`` on input and vector weights, ``eta`` on hidden, ``eta / n`` on the readout),
    mean-field the same by symmetry; SP and NTK
        one global LR on the stored tensor (``c = 0``).
    """
    fan_in_grows = {Role.INPUT: False, Role.HIDDEN: True, Role.OUTPUT: True, Role.VECTOR: False}
    a = {r: (0.5 if grows else 0.0) for r, grows in fan_in_grows.items()}
    if name in ("sp", "mup"):
        a = {r: 0.0 for r in a}
    if name in ("mup", "mf"):
        a[Role.OUTPUT] = 1.0
    if name == "mf":
        a[Role.HIDDEN] = 0.5
    init = {Role.INPUT: 0.0, Role.HIDDEN: 0.5, Role.OUTPUT: 1.0 if name in ("mup", "mf") else 0.5,
            Role.VECTOR: 0.0}  # fmt: skip
    maximal = {Role.INPUT: 0.0, Role.HIDDEN: 1.0, Role.OUTPUT: 1.0, Role.VECTOR: 0.0}
    adam = {
        "sp": {r: 0.0 for r in a},
        "mup": maximal,
        "mf": maximal,
        "ntk": {Role.INPUT: 0.5, Role.HIDDEN: 1.5, Role.OUTPUT: 1.0, Role.VECTOR: 0.5},
    }[name]
    mup_sgd = {Role.INPUT: -1.0, Role.HIDDEN: 0.0, Role.OUTPUT: 1.0, Role.VECTOR: -1.0}
    sgd = mup_sgd if name in ("mup", "mf") else {r: 2 * a[r] for r in a}
    return {r: {"a": a[r], "a+b": init[r], "a+c adam": adam[r], "2a+c sgd": sgd[r]} for r in a}


RELATIVE_RULES = sorted(
    name
    for name, rules in WIDTH_RULES.items()
    if name not in EVERETT and not any(r.unit for r in rules.values())
)
"""Rules written relative to SP at the base width and named after an abc-parametrization
(Everett et al.'s rows are derived in test_everett.py; u-muP's unit-scaled rules are
checked against their reference in test_umup_reference.py)."""


@pytest.mark.parametrize("name", RELATIVE_RULES)
def test_each_width_rule_is_the_abc_parametrization_it_names(name):
    for role, want in _derived(name).items():
        rule = WIDTH_RULES[name][role]
        got = {"a": rule.multiplier, "a+b": rule.multiplier + rule.init,
               "a+c adam": rule.multiplier + rule.lr_adam,
               "2a+c sgd": 2 * rule.multiplier + rule.lr_sgd}  # fmt: skip
        assert got == want, (name, role)


def _hidden_decay(name: str, optimizer: str, width: int, **rules) -> float:
    """Measured per-step decay of a hidden matrix: one step with zero gradients."""
    param = Parametrization(name, base_width=BASE, weight_decay_scaling="fan", **rules)
    model = MLP(d_in=8, d_out=4, width=width, depth=2, seeds=[0], parametrization=param)
    tensors = list(model.named_tensors())
    resolved = resolve([s for s, _ in tensors], param, width=width, depth=2, optimizer=optimizer)
    opt = make_optimizer(optimizer, [p for _, p in tensors], resolved,
                         torch.full((1,), 0.01), torch.full((1,), 0.1))  # fmt: skip
    before = {s.name: p.detach().clone() for s, p in tensors}
    for _, p in tensors:
        p.grad = torch.zeros_like(p)
    opt.step()
    decays = {}
    for s, p in tensors:
        changed = before[s.name].abs() > 0
        ratio = (
            (p.detach()[changed] / before[s.name][changed]).mean().item() if changed.any() else 1
        )
        decays[s.name, s.role] = 1.0 - ratio
    assert all(d == pytest.approx(0.0, abs=1e-7) for (_, role), d in decays.items()
               if role is Role.VECTOR)  # fmt: skip
    (hidden,) = [d for (n, role), d in decays.items() if role is Role.HIDDEN and "weight" in n]
    return hidden


@pytest.mark.parametrize("name", ["sp", "mup", "mf"])
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_fan_rule_gives_per_step_decay_proportional_to_width_to_the_minus_one_half(name, optimizer):
    """Fan et al. 2025: lr * wd ∝ m**-1/2 on hidden matrices, vectors undecayed, whatever
    the parametrization's LR exponent."""
    base, wide = _hidden_decay(name, optimizer, BASE), _hidden_decay(name, optimizer, 4 * BASE)
    assert base == pytest.approx(0.01 * 0.1, rel=1e-3)
    assert wide / base == pytest.approx(4**-0.5, rel=1e-3)


def test_independent_decay_is_wd_per_step_whatever_the_lr():
    independent = _hidden_decay("mup", "adamw", 4 * BASE, independent_weight_decay=True)
    assert independent == pytest.approx(0.1 * 4**-0.5, rel=1e-3)


@pytest.mark.parametrize(("exclude", "undecayed"), [
    ("gains", {"gain"}), ("vectors", {"gain", "bias"}), ("none", set()),
])  # fmt: skip
def test_excluded_tensors_are_never_decayed(exclude, undecayed):
    param = Parametrization("mup", base_width=BASE, weight_decay_exclude=exclude)
    model = MLP(d_in=8, d_out=4, width=BASE, depth=2, seeds=[0], parametrization=param)
    frame = describe(model, optimizer="adamw", lr=0.01, weight_decay=0.1)
    for row in frame.iter_rows(named=True):
        zero = row["kind"] in undecayed
        assert (row["decay_per_step"] == 0.0) == zero, row["name"]
    assert frame["weight_decay_rule"][0] == f"coupled, exclude {exclude}, lr"
