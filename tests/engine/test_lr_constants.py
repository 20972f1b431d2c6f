"""Per-role LR constants (``lr_input``, ``lr_hidden``, ``lr_output``, ``lr_vector``): each
multiplies exactly its role's effective learning rate, on top of the width rule, and
nothing else; a constant left at 1 leaves run ids as they were."""

from __future__ import annotations

import pytest
import torch

from toolkit.engine.config import Member, TrainConfig, run_id
from toolkit.engine.models import MLP
from toolkit.engine.optim import make_optimizer
from toolkit.engine.parametrization import Parametrization, Role, describe, resolve
from toolkit.engine.rules import LR_CONSTANTS
from toolkit.errors import InputError

BASE, WIDTH = 32, 128


def _stepped(param: Parametrization, optimizer: str) -> tuple[list, dict]:
    """The resolved numbers and each tensor's change after one step on a fixed batch."""
    model = MLP(d_in=8, d_out=4, width=WIDTH, depth=2, seeds=[0, 1], bias=True,
                activation="relu", parametrization=param)  # fmt: skip
    tensors = model.named_tensors()
    resolved = resolve([s for s, _ in tensors], param, width=WIDTH, depth=2, optimizer=optimizer)
    opt = make_optimizer(optimizer, [p for _, p in tensors], resolved, torch.full((2,), 1e-3),
                         torch.zeros(2))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 32, 8, generator=g), torch.randint(0, 4, (2, 32), generator=g)
    before = {s.name: p.detach().clone() for s, p in tensors}
    torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    opt.step()
    moved = {(s.name, s.role): (p.detach() - before[s.name]) for s, p in tensors}
    return resolved, moved


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize(("role", "field"), list(LR_CONSTANTS.items()))
def test_each_constant_multiplies_exactly_its_roles_effective_lr(role, field, optimizer):
    plain = Parametrization("mup", base_width=BASE)
    tuned = plain.with_(**{field: 3.0})
    (base, base_moved), (mine, moved) = _stepped(plain, optimizer), _stepped(tuned, optimizer)
    roles = set()
    for b, r in zip(base, mine, strict=True):
        factor = 3.0 if r.spec.role is role else 1.0
        roles.add(r.spec.role)
        assert r.lr_mult == pytest.approx(factor * b.lr_mult, rel=1e-12), r.spec.name
        same = ("init_std", "forward_mult", "wd_mult", "eps_mult", "decay_with_lr")
        assert [getattr(r, k) for k in same] == [getattr(b, k) for k in same], r.spec.name
    assert role in roles  # the model has tensors of the role
    # Trained from the same init on the same batch, the first step is the same step scaled.
    for key, step in moved.items():
        factor = 3.0 if key[1] is role else 1.0
        want = factor * base_moved[key]
        assert want.abs().max() > 0, key
        # a float32 weight of size ~0.3 holds a step to a few 1e-8: compare at that resolution
        resolution = max(1e-3 * want.abs().max().item(), 3e-7)
        torch.testing.assert_close(step, want, rtol=0, atol=resolution)


def test_a_fixed_tensor_has_no_constant():
    param = Parametrization("mup", **dict.fromkeys(LR_CONSTANTS.values(), 2.0))
    assert param.lr_constant(Role.FIXED) == 1.0
    assert [param.lr_constant(role) for role in LR_CONSTANTS] == [2.0] * 4


def test_describe_shows_each_roles_constant_in_its_lr():
    param = Parametrization("mup", base_width=BASE, lr_output=4.0, lr_hidden=0.5)
    model = MLP(d_in=8, d_out=4, width=WIDTH, depth=2, seeds=[0], bias=True, activation="relu",
                parametrization=param)  # fmt: skip
    rows = {r["name"]: r for r in describe(model, lr=1.0).iter_rows(named=True)}
    assert rows["readout.weight"]["lr_constant"] == 4.0
    assert rows["readout.weight"]["lr"] == 4.0  # muP's Adam LR on the readout: width-free
    assert rows["hidden1.weight"]["lr"] == pytest.approx(0.5 / 4)  # 1/m on hidden, m = 4
    assert rows["readout.bias"]["lr_constant"] == 1.0  # fixed: no constant
    assert rows["input.weight"]["lr_constant"] == 1.0


def test_constants_are_recorded_only_when_not_one_so_earlier_run_ids_stay():
    member = Member(lr=1e-3)
    plain = TrainConfig(parametrization=Parametrization("mup"))
    ones = TrainConfig(parametrization=Parametrization("mup", lr_output=1.0, lr_input=1))
    assert not set(LR_CONSTANTS.values()) & set(plain.record())
    assert run_id(plain, member) == run_id(ones, member)
    tuned = TrainConfig(parametrization=Parametrization("mup", lr_output=4.0))
    assert tuned.record()["lr_output"] == 4.0
    assert run_id(tuned, member) != run_id(plain, member)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), True])
def test_a_constant_must_be_a_positive_number(value):
    with pytest.raises(InputError, match=rf"lr_vector={value!r} must be a positive number"):
        Parametrization("mup", lr_vector=value)


def test_a_runs_row_has_its_constants_and_alignment_as_columns_only_when_set(digits):
    """So analyses group by them (store.RUN_SETTINGS), and earlier stores have no such column."""
    from toolkit.engine.train import train

    def columns(**rules) -> dict:
        param = Parametrization(rules.pop("name", "mup"), base_width=16, **rules)
        config = TrainConfig(task="digits", width=16, depth=1, steps=2, eval_every=2,
                             parametrization=param)  # fmt: skip
        return train(config, [Member(lr=1e-2)], task=digits).runs.row(0, named=True)

    plain = columns()
    assert not {"alignment", *LR_CONSTANTS.values()} & set(plain)
    tuned = columns(name="sp-everett", alignment="none", lr_output=4.0, lr_vector=0.5)
    assert (tuned["alignment"], tuned["lr_output"], tuned["lr_vector"]) == ("none", 4.0, 0.5)
    assert "lr_input" not in tuned
