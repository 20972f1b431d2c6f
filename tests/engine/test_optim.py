"""The fused Adam path computes the multi-tensor update, member by member."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from toolkit.engine.optim import FUSED_ADAM_MIN_PARAMETERS, make_optimizer


def _setup(optimizer: str, side: int, *, fused: bool | None = None):
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, side, side), (3, side), (3, side, 10)]
    params = [torch.randn(*s, generator=generator) for s in shapes]
    # The optimizers read only the multipliers of a resolved tensor.
    resolved = [
        SimpleNamespace(lr_mult=m, wd_mult=w, eps_mult=e, decay_with_lr=True)
        for m, w, e in ((0.5, 1.0, 0.25), (1.0, 0.0, 1.0), (2.0, 0.5, 0.5))
    ]
    opt = make_optimizer(optimizer, params, resolved, torch.tensor([1e-3, 3e-2, 1e-2]),
                         torch.tensor([0.0, 1e-2, 1e-1]), eps=1e-3)  # fmt: skip
    if fused is not None:
        opt.fused = fused
    return params, opt


def _train(params, opt, steps: int = 6) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        opt.step(lr_scale=1.0 - 0.1 * step)
    return params


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_fused_and_multi_tensor_updates_agree(optimizer):
    fused_params, fused = _setup(optimizer, 300, fused=True)
    plain_params, plain = _setup(optimizer, 300, fused=False)
    for a, b in zip(_train(fused_params, fused), _train(plain_params, plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    start, _ = _setup(optimizer, 300)
    assert all((a - s).abs().max() > 1e-3 for a, s in zip(fused_params, start, strict=True))


def test_fused_path_only_for_large_members_and_plain_adam_rules():
    assert _setup("adam", 300)[1].fused  # 90,000 + 300 + 3,000 parameters per member
    assert 90_000 >= FUSED_ADAM_MIN_PARAMETERS > 200 * 200 + 200 + 2_000
    assert not _setup("adam", 200)[1].fused
    assert _setup("adamw", 300)[1].fused
    assert not _setup("adam-atan2", 300)[1].fused


def test_a_frozen_member_stays_cleared_and_its_siblings_are_unchanged():
    params, opt = _setup("adam", 300)
    reference, reference_opt = _setup("adam", 300)
    opt.freeze(1)
    _train(params, opt)
    _train(reference, reference_opt)
    for p, r in zip(params, reference, strict=True):
        assert (p[1] == 0).all()
        assert torch.equal(p[0], r[0]) and torch.equal(p[2], r[2])


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adams_step_sizes_are_the_next_updates_scaling_of_the_gradient(optimizer):
    """With ``beta1 = 0`` and a constant gradient the next update is exactly ``-D * g``."""
    params, opt = _setup(optimizer, 4)
    opt.beta1, opt.wd = 0.0, [torch.zeros_like(w) for w in opt.wd]
    assert opt.step_sizes() is None  # no moments before the first update
    generator = torch.Generator().manual_seed(2)
    grads = [torch.randn(p.shape, generator=generator) for p in params]
    for _ in range(3):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
    sizes = opt.step_sizes()
    before = [p.clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()
    for p, b, g, d in zip(params, before, grads, sizes, strict=True):
        torch.testing.assert_close(p - b, -d * g, rtol=1e-4, atol=1e-7)


def test_sgds_step_sizes_are_its_lrs_and_adam_atan2_has_none():
    _, sgd = _setup("sgd", 4)
    sizes = sgd.step_sizes()
    got = [value for s in sizes for value in s.flatten().tolist()]
    assert got == pytest.approx([m * lr for m in (0.5, 1.0, 2.0) for lr in (1e-3, 3e-2, 1e-2)])
    params, atan2 = _setup("adam-atan2", 4)
    _train(params, atan2, steps=1)
    assert atan2.step_sizes() is None
