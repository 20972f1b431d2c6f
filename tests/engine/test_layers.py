"""Claims about the ensemble layers: each owns its specs, init and forward multiplier, and a
map with few outputs computes the plain product's function and gradients."""

from __future__ import annotations

import pytest
import torch

from toolkit.engine.layers import (
    FEW_OUTPUTS,
    EnsembleLayerNorm,
    EnsembleLinear,
    FewOutputsProduct,
    TensorFactory,
    scaled_matmul,
)
from toolkit.engine.parametrization import Parametrization, Role


def _factory(members: list[Parametrization], width: int = 64) -> TensorFactory:
    return TensorFactory(members, width=width, seeds=list(range(len(members))))


def test_a_linear_layer_owns_the_specs_of_its_tensors_under_its_dotted_name():
    layer = EnsembleLinear("block1.fc1", _factory([Parametrization()] * 2), Role.HIDDEN, 64, 32,
                           base_fan_in=16, in_block=True)  # fmt: skip
    specs = {spec.name: spec for spec, _ in layer.tensors()}
    assert list(specs) == ["block1.fc1.weight", "block1.fc1.bias"]
    assert specs["block1.fc1.weight"].shape == (64, 32) and layer.weight.shape == (2, 64, 32)
    assert specs["block1.fc1.bias"].role is Role.VECTOR and specs["block1.fc1.weight"].in_block
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


def test_members_that_agree_share_a_float_multiplier_and_members_that_differ_get_a_tensor():
    same = EnsembleLinear("readout", _factory([Parametrization("mup", base_width=16)] * 3),
                          Role.OUTPUT, 64, 10)  # fmt: skip
    assert same.forward_mult == 0.25  # output_alpha / m with m = 4
    members = [Parametrization("mup", base_width=16, output_alpha=a) for a in (1.0, 2.0, 4.0)]
    differ = EnsembleLinear("readout", _factory(members), Role.OUTPUT, 64, 10)
    assert torch.equal(differ.forward_mult.flatten(), torch.tensor([0.25, 0.5, 1.0]))
    assert "forward_mult" in dict(differ.named_buffers())  # follows the model to its device
    h = torch.randn(3, 5, 64, generator=torch.Generator().manual_seed(0))
    expected = torch.stack(
        [torch.bmm(h, differ.weight)[i] * a for i, a in enumerate((0.25, 0.5, 1))]
    )
    torch.testing.assert_close(differ(h), expected)


def test_each_member_draws_its_init_std_from_its_own_sigma():
    members = [Parametrization(init_sigma=s) for s in (0.5, 2.0)]
    layer = EnsembleLinear("hidden", _factory(members, width=512), Role.HIDDEN, 512, 512,
                           base_fan_in=64)  # fmt: skip
    stds = layer.weight.detach().flatten(1).std(1)
    sp_std = 1 / 512**0.5  # SP: sigma / sqrt(base_fan_in) * m**-1/2 = sigma / sqrt(fan_in)
    torch.testing.assert_close(stds, torch.tensor([0.5, 2.0]) * sp_std, rtol=0.01, atol=0)


def test_a_layer_norm_has_a_gain_and_optionally_a_shift():
    make = _factory([Parametrization()] * 2, width=8)
    plain = EnsembleLayerNorm("final_norm", make, 8, shift=False, in_block=False)
    shifted = EnsembleLayerNorm("block1.attn_norm", make, 8, shift=True, in_block=True)
    assert [s.name for s, _ in plain.tensors()] == ["final_norm.gain"]
    assert [s.name for s, _ in shifted.tensors()] == [
        "block1.attn_norm.gain",
        "block1.attn_norm.bias",
    ]
    h = torch.randn(2, 3, 8)
    torch.testing.assert_close(plain(h), torch.nn.functional.layer_norm(h, (8,)))


def _product_inputs(fan_out: int, *, dtype=torch.float64, bias: bool = True):
    generator = torch.Generator().manual_seed(fan_out)
    h = torch.randn(3, 7, 5, generator=generator, dtype=dtype, requires_grad=True)
    weight = torch.randn(3, 5, fan_out, generator=generator, dtype=dtype, requires_grad=True)
    b = torch.randn(3, fan_out, generator=generator, dtype=dtype, requires_grad=True)
    return h, weight, b if bias else None


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mult", [1.0, 0.3, "per member"])
def test_a_few_outputs_product_is_the_plain_product_with_the_same_gradients(bias, mult):
    h, weight, b = _product_inputs(FEW_OUTPUTS, bias=bias)
    if mult == "per member":
        mult = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64).view(-1, 1, 1)
    out = scaled_matmul(h, weight, b, mult)
    plain = torch.bmm(h, weight) * mult + (0.0 if b is None else b.unsqueeze(1))
    torch.testing.assert_close(out, plain)
    upstream = torch.randn(out.shape, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    inputs = [t for t in (h, weight, b) if t is not None]
    ours = torch.autograd.grad(out, inputs, upstream)
    theirs = torch.autograd.grad(plain, inputs, upstream)
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, c)


def test_a_few_outputs_product_keeps_outputs_first_and_gives_gradients_in_the_weights_layout():
    h, weight, b = _product_inputs(10, dtype=torch.float32)
    out = scaled_matmul(h, weight, b, 0.5)
    # the logits are the transposed view of a (members, outputs, batch) tensor, so the
    # cross-entropy that takes the classes on axis 1 reads them without a copy
    assert out.transpose(1, 2).is_contiguous()
    out.square().sum().backward()
    assert weight.grad.is_contiguous() and weight.grad.shape == weight.shape
    wide = scaled_matmul(*_product_inputs(FEW_OUTPUTS + 1, dtype=torch.float32), 0.5)
    assert wide.is_contiguous()


def test_a_few_outputs_product_is_differentiable_twice_in_both_modes_and_under_vmap():
    h, weight, b = _product_inputs(4)
    inputs = (h, weight, b, 0.7)
    assert torch.autograd.gradcheck(FewOutputsProduct.apply, inputs, check_forward_ad=True)
    assert torch.autograd.gradgradcheck(FewOutputsProduct.apply, inputs)
    # the exact Hessian by forward over reverse mode, against the plain product's
    def loss(product):
        return lambda w: (product(h, w, b) ** 3).sum()

    ours = torch.func.hessian(loss(lambda h, w, b: FewOutputsProduct.apply(h, w, b, 0.7)))(weight)
    plain = torch.func.hessian(loss(lambda h, w, b: torch.baddbmm(b.unsqueeze(1), h, w, alpha=0.7)))
    torch.testing.assert_close(ours, plain(weight))
    stacked = torch.stack([h.detach(), 2 * h.detach()])
    mapped = torch.func.vmap(lambda x: FewOutputsProduct.apply(x, weight, b, 0.7))(stacked)
    for i in range(2):
        torch.testing.assert_close(mapped[i], FewOutputsProduct.apply(stacked[i], weight, b, 0.7))
