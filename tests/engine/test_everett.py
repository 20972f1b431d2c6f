"""Claims about Everett et al.'s per-layer LR exponents (toolkit.engine.everett): every row
of the table follows from its abc-parametrization and alignment assumption, the toolkit
trains what the row says, and the rows related by the abc symmetry train the same network."""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.engine.config import Member as RunMember
from toolkit.engine.config import TrainConfig, run_id
from toolkit.engine.everett import ABC, ALIGNMENTS, LR_EXPONENTS, PARAMETRIZATIONS
from toolkit.engine.models import MLP
from toolkit.engine.optim import make_optimizer
from toolkit.engine.parametrization import Parametrization, Role, describe, resolve
from toolkit.engine.rules import WIDTH_RULES, WIDTH_RULES_BY_ALIGNMENT
from toolkit.errors import InputError

ROWS = [(name, alignment) for name in PARAMETRIZATIONS for alignment in ALIGNMENTS]
LAYERS = (Role.INPUT, Role.HIDDEN, Role.OUTPUT)
FAN_IN_GROWS = {Role.INPUT: 0.0, Role.HIDDEN: 1.0, Role.OUTPUT: 1.0}
ALIGNMENT_EXPONENT = {"full": 1.0, "none": 0.5}
"""How ``dW x`` grows with the fan-in it sums over: all terms of one sign (``fan_in``) or
independent (``fan_in ** 1/2``)."""


def _derived_lr_exponents(a: list[float], b: list[float], optimizer: str,
                          alignment: str) -> tuple[float, ...]:  # fmt: skip
    """``c`` of embedding, hidden and readout, derived from the layers' ``a, b`` and the
    alignment assumption, not read from the table.

    A layer's own update moves its output by ``dW x``, a sum over the fan-in
    ``n ** grows`` that grows like ``n ** (alpha * grows)`` times the size of ``dW``'s entries.

    * Adam: a stored entry moves by ``lr n**-c`` whatever its gradient, ``W = n**-a w`` by
      ``n**-(a + c)``; a maximal update keeps ``dW x`` at ``O(1)``: ``c = alpha * grows - a``.
    * SGD: ``W`` moves by ``lr n**-(2a + c) dL/dW`` and ``dL/dW = (dL/dh) x``: below the readout
      ``dL/dh`` carries the readout's effective init ``n**-r``, ``r = a + b`` of the readout,
      so ``2a + c = alpha * grows - r`` on the embedding and hidden layers. The readout's own
      gradient is ``O(1)``: its change of the logits needs ``2a + c >= alpha``, and its
      entries must not outgrow their init ``n**-r`` (else ``dL/dh`` of every layer below grows
      with them): ``2a + c >= r``; the largest LR takes ``2a + c = max(alpha, r)``.
    """
    alpha = ALIGNMENT_EXPONENT[alignment]
    grows = [FAN_IN_GROWS[role] for role in LAYERS]
    if optimizer == "adam":
        return tuple(alpha * g - a_l for g, a_l in zip(grows, a, strict=True))
    r = a[2] + b[2]
    effective = [alpha * grows[0] - r, alpha * grows[1] - r, max(alpha, r)]
    return tuple(e - 2 * a_l for e, a_l in zip(effective, a, strict=True))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize(("name", "alignment"), ROWS)
def test_each_table_row_follows_from_its_abc_parametrization_and_alignment(
    name, alignment, optimizer
):
    table = PARAMETRIZATIONS[name]
    a, b = zip(*ABC[table], strict=True)
    # The effective init a + b: O(1) features from the embedding and hidden layers, O(1)
    # logits from SP's and NTK's readouts, O(n**-1/2) from muP's and mean-field's.
    readout = 0.5 if table in ("sp", "ntk") else 1.0
    assert [ai + bi for ai, bi in zip(a, b, strict=True)] == [0.0, 0.5, readout]
    want = _derived_lr_exponents(list(a), list(b), optimizer, alignment)
    assert LR_EXPONENTS[optimizer, alignment][table] == pytest.approx(want, abs=0)


@pytest.mark.parametrize(("name", "alignment"), ROWS)
def test_the_width_rules_apply_the_tables_abc_to_each_layer(name, alignment):
    rules = WIDTH_RULES_BY_ALIGNMENT[alignment][name]
    table = PARAMETRIZATIONS[name]
    for i, role in enumerate(LAYERS):
        rule = rules[role]
        assert (rule.multiplier, rule.init) == ABC[table][i]
        assert rule.lr_adam == LR_EXPONENTS["adam", alignment][table][i]
        assert rule.lr_sgd == LR_EXPONENTS["sgd", alignment][table][i]
    # A vector is an embedding weight on the constant input 1, without a multiplier.
    a1, vector = ABC[table][0][0], rules[Role.VECTOR]
    assert vector.multiplier == 0.0
    assert vector.lr_adam == a1 + rules[Role.INPUT].lr_adam
    assert vector.lr_sgd == 2 * a1 + rules[Role.INPUT].lr_sgd


def _first_step_moves(name: str, alignment: str, optimizer: str, width: int) -> dict:
    """RMS of ``dW x`` per layer after one step on one example, which aligns every update
    with its layer's input fully: its own update's share of each layer's change."""
    param = Parametrization(name, base_width=64, alignment=alignment)
    model = MLP(d_in=8, d_out=4, width=width, depth=2, seeds=[0, 1, 2, 3], bias=False,
                activation="relu", parametrization=param)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 1, 8, generator=g), torch.randint(0, 4, (4, 1), generator=g)
    layers = {"input": model.input, "hidden1": model.hidden1, "readout": model.readout}
    capture: dict = {}
    loss = torch.nn.functional.cross_entropy(model(x, capture).flatten(0, 1), y.flatten())
    inputs = {"input": x, "hidden1": model.act(capture["input"]),
              "readout": model.act(capture["hidden1"])}  # fmt: skip
    before = {k: layer.weight.detach().clone() for k, layer in layers.items()}
    tensors = model.named_tensors()
    resolved = resolve([s for s, _ in tensors], param, width=width, depth=2, optimizer=optimizer)
    lr = 1e-3 if optimizer == "adam" else 1e-2
    hyper = {"eps": 1e-30} if optimizer == "adam" else {}  # Adam's first step: lr * sign(g)
    opt = make_optimizer(optimizer, [p for _, p in tensors], resolved, torch.full((4,), lr),
                         torch.zeros(4), **hyper)  # fmt: skip
    loss.backward()
    opt.step()
    return {
        k: ((inputs[k].detach() @ (layer.weight.detach() - before[k])) * layer.forward_mult)
        .pow(2).mean().sqrt().item()
        for k, layer in layers.items()
    }  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize(("name", "alignment"), ROWS)
def test_a_fully_aligned_step_moves_each_layer_as_the_rows_exponents_say(
    name, alignment, optimizer
):
    """Under full alignment every layer's own update moves its output by O(1) at every
    width; the no-alignment rows, stepping where the alignment is full after all, move
    hidden layers by ``m**1/2`` more (and the readout where its LR is not held by ``r``)."""
    small, large = 64, 1024
    moves = [_first_step_moves(name, alignment, optimizer, w) for w in (small, large)]
    rules = WIDTH_RULES_BY_ALIGNMENT[alignment][name]
    r = rules[Role.OUTPUT].multiplier + rules[Role.OUTPUT].init
    for layer, role in zip(("input", "hidden1", "readout"), LAYERS, strict=True):
        rule = rules[role]
        if optimizer == "adam":
            predicted = FAN_IN_GROWS[role] - (rule.multiplier + rule.lr_adam)
        else:
            backward = 0.0 if role is Role.OUTPUT else r  # dL/dh below the readout: n**-r
            predicted = FAN_IN_GROWS[role] - (2 * rule.multiplier + rule.lr_sgd) - backward
        if alignment == "full":
            assert predicted == 0.0, (layer, predicted)
        measured = math.log(moves[1][layer] / moves[0][layer]) / math.log(large / small)
        assert measured == pytest.approx(predicted, abs=0.12), (layer, moves)


@pytest.mark.parametrize("name", PARAMETRIZATIONS)
def test_the_epsilon_exponent_is_the_size_of_each_stored_gradient(name):
    """Under the ``gradient`` epsilon rule ``eps * m**e`` follows each stored tensor's
    gradient at initialisation (measured at widths 64 and 1024)."""
    sizes = []
    for width in (64, 1024):
        param = Parametrization(name, base_width=64)
        model = MLP(d_in=8, d_out=4, width=width, depth=2, seeds=list(range(8)), bias=True,
                    activation="relu", parametrization=param)  # fmt: skip
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(8, 32, 8, generator=g), torch.randint(0, 4, (8, 32), generator=g)
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        sizes.append({(s.name, s.role): p.grad.pow(2).mean().sqrt().item()
                      for s, p in model.named_tensors()})  # fmt: skip
    for tensor, role in sizes[0]:
        measured = math.log(sizes[1][tensor, role] / sizes[0][tensor, role]) / math.log(16)
        assert measured == pytest.approx(WIDTH_RULES[name][role].eps, abs=0.12), tensor


def _trained(name: str, optimizer: str, *, alignment: str = "full", steps: int = 15):
    """Outputs on a fixed batch after ``steps`` full-batch steps at width 128 (base 32)."""
    param = Parametrization(name, base_width=32, alignment=alignment)
    model = MLP(d_in=8, d_out=4, width=128, depth=2, seeds=[0, 1], bias=True,
                activation="relu", parametrization=param)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 64, 8, generator=g), torch.randint(0, 4, (2, 64), generator=g)
    tensors = model.named_tensors()
    resolved = resolve([s for s, _ in tensors], param, width=128, depth=2, optimizer=optimizer)
    lr = 1e-2 if optimizer == "adam" else 1e-1
    hyper = {"eps": 1e-3} if optimizer == "adam" else {}  # large: epsilon's rule matters
    opt = make_optimizer(optimizer, [p for _, p in tensors], resolved, torch.full((2,), lr),
                         torch.zeros(2), **hyper)  # fmt: skip
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_rows_related_by_the_abc_symmetry_train_the_same_network(optimizer, alignment):
    """Everett et al. 2024, section 2: SP and NTK, muP and mean-field are one network each
    under SGD and under Adam with epsilon following the gradient."""
    for first, second in (("sp-everett", "ntk-everett"), ("mup-everett", "mf-everett")):
        torch.testing.assert_close(_trained(first, optimizer, alignment=alignment),
                                   _trained(second, optimizer, alignment=alignment),
                                   atol=1e-4, rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_everetts_mup_under_full_alignment_trains_the_mup_packages_network(optimizer):
    torch.testing.assert_close(_trained("mup-everett", optimizer), _trained("mup", optimizer),
                               atol=1e-4, rtol=1e-4)  # fmt: skip


def test_everetts_mean_field_under_full_alignment_is_the_toolkits_mean_field_rule():
    assert WIDTH_RULES["mf-everett"] == WIDTH_RULES["mf"]


def test_alignment_none_exists_only_for_everetts_rows():
    assert Parametrization("mup-everett", alignment="none").alignment == "none"
    with pytest.raises(InputError, match=r"alignment='none' has no rule for parametrization="
                                         r"'mup'; allowed: 'sp-everett'"):  # fmt: skip
        Parametrization("mup", alignment="none")
    with pytest.raises(InputError, match=r"alignment='some' is not one of 'full', 'none'"):
        Parametrization("mup-everett", alignment="some")


def test_alignment_is_recorded_only_when_not_full_so_earlier_run_ids_stay():
    full = TrainConfig(parametrization=Parametrization("ntk-everett"))
    assert "alignment" not in full.record()
    none = TrainConfig(parametrization=Parametrization("ntk-everett", alignment="none"))
    assert none.record()["alignment"] == "none"
    member = RunMember(lr=1e-3)
    assert run_id(full, member) != run_id(none, member)


def test_describe_shows_the_rows_alignment_and_its_exponents():
    param = Parametrization("sp-everett", base_width=32, alignment="none")
    model = MLP(d_in=8, d_out=4, width=128, depth=2, seeds=[0], bias=True, activation="relu",
                parametrization=param)  # fmt: skip
    rows = {r["name"]: r for r in describe(model, optimizer="adam", lr=1.0).iter_rows(named=True)}
    assert {r["width_rule"] for r in rows.values()} == {"sp-everett, none alignment"}
    # no alignment: Adam c = 0 on the embedding, 1/2 on hidden layers and the readout
    assert rows["input.weight"]["lr"] == 1.0
    assert rows["hidden1.weight"]["lr"] == pytest.approx(4**-0.5)
    assert rows["readout.weight"]["lr"] == pytest.approx(4**-0.5)
    plain = describe(MLP(d_in=8, d_out=4, width=128, depth=2, seeds=[0], bias=True,
                         activation="relu", parametrization=Parametrization("mup")))  # fmt: skip
    assert set(plain["width_rule"]) == {"mup"}


def test_every_row_has_its_classes_attention_exponent():
    """A transformer can take every parametrization: SP and NTK ``1/sqrt(d_head)``, muP and
    mean-field ``1/d_head`` (the abc symmetry's classes)."""
    from toolkit.engine.rules import ATTENTION_EXPONENTS

    assert set(ATTENTION_EXPONENTS) == set(WIDTH_RULES)
    for name, table in PARAMETRIZATIONS.items():
        assert ATTENTION_EXPONENTS[name] == ATTENTION_EXPONENTS[table]
