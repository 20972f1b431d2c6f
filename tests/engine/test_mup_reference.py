"""Cross-checks of our muP against the reference implementation, the ``mup`` package.

The reference model is built the way a user of ``mup`` builds one: a plain PyTorch MLP of
``nn.Linear`` layers with a ``mup.MuReadout`` last layer, base shapes set from a base model at
width ``BASE_WIDTH`` and a delta model at another width (as the ``mup`` README recommends),
and optimizers from ``mup.MuAdam`` / ``mup.MuAdamW`` / ``mup.MuSGD``. Every number ``mup``
applies to a tensor (init std, forward multiplier, learning rate, weight decay) is then
compared with what :func:`toolkit.engine.parametrization.describe` says our muP applies to the
matching tensor of :class:`toolkit.engine.models.MLP` at the same widths.

Conventions that differ between the two and are bridged here:

* our weights are stored ``(members, fan_in, fan_out)``, PyTorch's ``(fan_out, fan_in)``;
* our init is Gaussian with std ``init_sigma / sqrt(base_fan_in) * m**-b``, PyTorch's
  default ``nn.Linear`` init is uniform with std ``1 / sqrt(3 * fan_in)``, hence
  ``init_sigma = 3**-0.5`` on our side;
* Adam's epsilon is not compared: ``mup`` leaves it unscaled, ours scales it with the size of
  the gradients (see the module docstring of :mod:`toolkit.engine.parametrization`).
"""

from __future__ import annotations

import math
from itertools import pairwise

import mup
import polars as pl
import pytest
import torch
from torch import nn

from toolkit.engine.models import MLP
from toolkit.engine.parametrization import Parametrization, Role, describe

D_IN = 40
D_OUT = 10
DEPTH = 3  # hidden layers: input, hidden1, hidden2, then the readout
BASE_WIDTH = 64
DELTA_WIDTH = 96  # only tells mup which dimensions are widths
WIDTH_MULTS = (1, 2, 4)
INIT_SIGMA = 3**-0.5  # PyTorch's default Linear init has std 1/sqrt(3 fan_in)
SEEDS = tuple(range(8))  # init-std samples are pooled over these
LR = 0.01
WEIGHT_DECAY = 1e-3
EXACT = 1e-12

OPTIMIZERS = {"adam": mup.MuAdam, "adamw": mup.MuAdamW, "sgd": mup.MuSGD}


class ReferenceMLP(nn.Module):
    """The MLP as a ``mup`` user writes it: ``depth`` Linear layers, then a ``MuReadout``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        fans = [D_IN] + [width] * DEPTH
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(fans))
        self.readout = mup.MuReadout(width, D_OUT, readout_zero_init=False, output_mult=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.readout(x)


def reference_mlp(width: int, seed: int = 0) -> ReferenceMLP:
    """A ``mup`` MLP at ``width`` with base shapes set, initialised from ``seed``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ReferenceMLP(width)
        # Our biases start at zero, PyTorch's at U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (which
        # set_base_shapes then rescales by sqrt(fan-in width multiplier)). Zeroing them before
        # set_base_shapes makes both models start from the same biases, so only the weights'
        # init is compared.
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    module.bias.zero_()
    base = ReferenceMLP(BASE_WIDTH)
    delta = ReferenceMLP(DELTA_WIDTH)
    return mup.set_base_shapes(model, base, delta=delta)


def our_name(reference_name: str) -> str:
    """Our tensor name for a reference parameter name (``layers.0.weight`` -> ``input.weight``)."""
    module, tensor = reference_name.rsplit(".", 1)
    if module == "readout":
        return reference_name
    index = int(module.removeprefix("layers."))
    return f"{'input' if index == 0 else f'hidden{index}'}.{tensor}"


def our_mlp(width: int, seeds=(0,), name: str = "mup") -> MLP:
    param = Parametrization(name=name, base_width=BASE_WIDTH, init_sigma=INIT_SIGMA)
    return MLP(d_in=D_IN, d_out=D_OUT, width=width, depth=DEPTH, parametrization=param, seeds=seeds)


def rows(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["name"]: row for row in frame.iter_rows(named=True)}


def role_from_infshape(infshape) -> Role:
    """The role ``mup``'s infshape implies, in our terms (see toolkit.engine.parametrization)."""
    if len(infshape) == 1:
        return Role.VECTOR if infshape[0].isinf() else Role.FIXED
    fan_in, fan_out = infshape.fanin_fanout()
    return {
        (False, True): Role.INPUT,
        (True, True): Role.HIDDEN,
        (True, False): Role.OUTPUT,
        (False, False): Role.FIXED,
    }[(fan_in.isinf(), fan_out.isinf())]


@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_tensors_and_roles_match_mups_infshapes(width_mult: int) -> None:
    """Both MLPs have the same tensors, and each of ours has the role mup infers for it."""
    width = BASE_WIDTH * width_mult
    reference = reference_mlp(width)
    ours = {spec.name: spec for spec in our_mlp(width).specs}
    names = {our_name(name): p for name, p in reference.named_parameters()}
    assert list(names) == list(ours)  # same tensors, in the same order
    for name, p in names.items():
        spec = ours[name]
        assert tuple(p.shape) == spec.shape[::-1], name  # PyTorch stores (fan_out, fan_in)
        assert role_from_infshape(p.infshape) is spec.role, name


@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_init_std_matches_mup_after_set_base_shapes(width_mult: int) -> None:
    """Each weight's init std (ours, as described and as stored) equals mup's.

    mup's hidden and input layers keep PyTorch's fan-in init; set_base_shapes multiplies the
    MuReadout weight by sqrt(width_mult), making its std width-independent. The sample std of
    N pooled Gaussian draws has relative standard error 1/sqrt(2N) (smaller for uniform draws),
    so each comparison allows 5 standard errors: at most 5% for the smallest tensor (the
    readout at base width, N = 8 * 640). A wrong width exponent is off by a factor of at least
    sqrt(2) at width multiplier 2.
    """
    width = BASE_WIDTH * width_mult
    described = rows(describe(our_mlp(width)))
    ours = our_mlp(width, seeds=SEEDS)
    stored = {spec.name: p.detach() for spec, p in ours.named_tensors()}
    pooled: dict[str, list[torch.Tensor]] = {}
    for seed in SEEDS:
        for name, p in reference_mlp(width, seed).named_parameters():
            if name.endswith("weight"):
                pooled.setdefault(our_name(name), []).append(p.detach().flatten())
    assert set(pooled) == {n for n, r in described.items() if r["kind"] == "weight"}
    for name, draws in pooled.items():
        reference = torch.cat(draws).double()
        tol = 5 / math.sqrt(2 * reference.numel())
        assert tol <= 0.05, name
        expected = described[name]["init_std"]
        assert reference.std().item() == pytest.approx(expected, rel=tol), name
        assert stored[name].double().std().item() == pytest.approx(expected, rel=tol), name


@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_forward_multipliers_match_mup(width_mult: int) -> None:
    """mup's readout multiplies its input by output_mult / width_mult, the others by 1; so do we."""
    width = BASE_WIDTH * width_mult
    reference = reference_mlp(width)
    described = rows(describe(our_mlp(width)))
    modules = [*reference.layers, reference.readout]
    prefixes = [our_name(f"layers.{i}.weight") for i in range(DEPTH)] + ["readout.weight"]
    for module, name in zip(modules, prefixes, strict=True):
        if isinstance(module, mup.MuReadout):
            expected = module.output_mult / module.width_mult()
        else:
            expected = 1.0
        assert described[name]["forward_mult"] == pytest.approx(expected, rel=EXACT), name
    assert described["readout.weight"]["forward_mult"] == pytest.approx(1 / width_mult, rel=EXACT)


@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_same_stored_tensors_compute_the_same_function(width_mult: int) -> None:
    """Loaded with mup's tensors (and non-zero biases), our MLP computes mup's outputs."""
    width = BASE_WIDTH * width_mult
    reference = reference_mlp(width)
    ours = our_mlp(width)
    generator = torch.Generator().manual_seed(1)
    params = dict(ours.named_tensors())
    specs = {spec.name: spec for spec in params}
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=generator))
            target = params[specs[our_name(name)]]
            target[0].copy_(p.T if p.dim() == 2 else p)
        x = torch.randn(32, D_IN, generator=generator)
        expected = reference(x)
        got = ours(x.unsqueeze(0))[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("width_mult", WIDTH_MULTS)
def test_per_tensor_lr_and_weight_decay_match_mups_optimizer(
    width_mult: int, optimizer: str
) -> None:
    """Our muP applies the same per-tensor LR and weight decay as mup's MuAdam/MuAdamW/MuSGD.

    MuAdam(W): matrix-like tensors (two width dims) at lr / width_mult, the rest at lr.
    MuSGD: vector-like tensors (one width dim) at lr * width_mult, matrix-like at
    lr / (fan-in / fan-out width-mult ratio), tensors without width dims at lr. Weight decay
    is divided by the same factor, so lr * weight_decay does not change with width.
    """
    width = BASE_WIDTH * width_mult
    reference = reference_mlp(width)
    opt = OPTIMIZERS[optimizer](reference.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    groups = {id(p): group for group in opt.param_groups for p in group["params"]}
    described = rows(
        describe(our_mlp(width), optimizer=optimizer, lr=LR, weight_decay=WEIGHT_DECAY)
    )
    names = [our_name(name) for name, _ in reference.named_parameters()]
    assert sorted(names) == sorted(described)  # biases included
    for name, p in zip(names, reference.parameters(), strict=True):
        group = groups[id(p)]
        assert described[name]["lr"] == pytest.approx(group["lr"], rel=EXACT), name
        expected_wd = group["weight_decay"]
        assert described[name]["weight_decay"] == pytest.approx(expected_wd, rel=EXACT), name


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_mup_equals_sp_at_base_width(optimizer: str) -> None:
    """At the base width, muP and SP apply the same numbers to every tensor."""
    columns = ["name", "init_std", "forward_mult", "lr", "weight_decay", "eps"]
    frames = [
        describe(
            our_mlp(BASE_WIDTH, name=name), optimizer=optimizer, lr=LR, weight_decay=WEIGHT_DECAY
        ).select(columns)
        for name in ("mup", "sp")
    ]
    mup_frame, sp_frame = frames
    assert mup_frame["name"].to_list() == sp_frame["name"].to_list()
    for column in columns[1:]:
        assert mup_frame[column].to_list() == pytest.approx(sp_frame[column].to_list(), rel=EXACT)
    # and they differ away from it, so the comparison above is not vacuous
    wide = [
        describe(our_mlp(2 * BASE_WIDTH, name=name), optimizer=optimizer, lr=LR)
        for name in ("mup", "sp")
    ]
    assert not wide[0].select(columns).equals(wide[1].select(columns))
