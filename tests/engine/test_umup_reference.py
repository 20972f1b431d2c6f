"""Cross-checks of our u-muP against the reference implementation, the ``unit-scaling`` package.

u-muP: Blake et al. 2024, "u-muP: The Unit-Scaled Maximal Update Parametrization"
(arXiv:2407.17465); reference code ``unit-scaling==0.3.5``. The reference models are built
the way a user of the package builds them: ``uu.Linear`` layers and a ``uu.LinearReadout``
(an MLP), the package's own ``uu.TransformerDecoder``, and the optimizers of
``unit_scaling.optim``. Every number the package applies to a tensor (init std, the
forward scale of its op, Adam's learning rate and weight decay) is compared with what
:func:`toolkit.engine.parametrization.describe` says ``Parametrization("u-mup")`` applies to
the matching tensor of our model, and the forward scales are measured on the package's ops,
not read from its source.

Conventions bridged here, and where the two differ (see :mod:`toolkit.engine.parametrization`):

* our weights are stored ``(members, fan_in, fan_out)``, PyTorch's ``(fan_out, fan_in)``;
* the package adds a bias before its layer's output scale, we after it: the MLPs compared
  here have no biases (the package's default, and the paper's models);
* the package has no ReLU: the reference applies He's gain ``sqrt(2)``, which our
  :data:`~toolkit.engine.rules.UNIT_ACTIVATION_GAINS` is checked to be by quadrature;
* the package scales its backward pass on its own, so its gradients are ours times a
  constant per tensor; Adam does not see such constants, so a few Adam steps must agree
  (epsilon is set far below every gradient on both sides);
* its Transformer (gated MLP, RMSNorm without gains, unit-scaled residual mixing) is not
  ours, so it is compared tensor by tensor only.
"""

from __future__ import annotations

import math
from itertools import pairwise

import polars as pl
import pytest
import torch
import torch.nn.functional as F
import unit_scaling as uu
import unit_scaling.functional as U
from torch import nn

from toolkit.engine.config import Member, TrainConfig
from toolkit.engine.data import load_task
from toolkit.engine.models import MLP
from toolkit.engine.optim import make_optimizer
from toolkit.engine.parametrization import Parametrization, Role, describe, resolve
from toolkit.engine.rules import UNIT_ACTIVATION_GAINS
from toolkit.engine.train import train
from toolkit.engine.transformer import Transformer
from toolkit.errors import InputError

D_IN = 40
D_OUT = 10
DEPTH = 3  # hidden layers: input, hidden1, hidden2, then the readout
BASE_WIDTH = 64  # u-muP's numbers do not depend on it (only epsilon's, not compared)
WIDTHS = (64, 128, 256)
SEEDS = tuple(range(8))
LR = 0.01
WEIGHT_DECAY = 1e-3
EXACT = 1e-12
RELU_GAIN = math.sqrt(2.0)

pytestmark = pytest.mark.usefixtures("one_thread")


class ReferenceMLP(nn.Module):
    """The MLP as a unit-scaling user writes it: ``uu.Linear`` maps (no bias, the package's
    default), ReLU with He's gain (the package has no unit-scaled ReLU), ``uu.LinearReadout``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        fans = [D_IN] + [width] * DEPTH
        self.layers = nn.ModuleList(uu.Linear(a, b) for a, b in pairwise(fans))
        self.readout = uu.LinearReadout(width, D_OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x if i == 0 else RELU_GAIN * torch.relu(x))
        return self.readout(RELU_GAIN * torch.relu(x))


def reference_mlp(width: int, seed: int = 0) -> ReferenceMLP:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ReferenceMLP(width)


def our_name(reference_name: str) -> str:
    """Our tensor name for a reference parameter name (``layers.0.weight`` -> ``input.weight``)."""
    module, tensor = reference_name.rsplit(".", 1)
    if module == "readout":
        return reference_name
    index = int(module.removeprefix("layers."))
    return f"{'input' if index == 0 else f'hidden{index}'}.{tensor}"


def our_mlp(width: int, seeds=(0,), name: str = "u-mup", **param) -> MLP:
    parametrization = Parametrization(name, base_width=BASE_WIDTH, **param)
    return MLP(d_in=D_IN, d_out=D_OUT, width=width, depth=DEPTH, bias=False,
               parametrization=parametrization, seeds=seeds)  # fmt: skip


def rows(frame) -> dict[str, dict]:
    return {row["name"]: row for row in frame.iter_rows(named=True)}


def measured_scale(module: nn.Module, x: torch.Tensor) -> float:
    """The factor by which ``module`` scales its unscaled op (least squares, one number)."""
    plain = (
        F.embedding(x, module.weight) if isinstance(module, nn.Embedding) else x @ module.weight.T
    )
    out = module(x)
    return ((out * plain).sum() / (plain * plain).sum()).item()


MUP_TYPE_ROLES = {"weight": {Role.INPUT, Role.HIDDEN}, "output": {Role.OUTPUT}}


@pytest.mark.parametrize("width", WIDTHS)
def test_tensors_match_the_packages_and_their_types(width: int) -> None:
    """Both MLPs have the same tensors; the package's ``weight`` tensors are our input and
    hidden matrices, its ``output`` tensor our readout."""
    ours = {spec.name: spec for spec in our_mlp(width).specs}
    reference = {our_name(n): p for n, p in reference_mlp(width).named_parameters()}
    assert list(reference) == list(ours)
    for name, p in reference.items():
        assert tuple(p.shape) == ours[name].shape[::-1], name
        assert ours[name].role in MUP_TYPE_ROLES[p.mup_type], name


@pytest.mark.parametrize("width", WIDTHS)
def test_every_weight_starts_at_unit_std_as_in_the_package(width: int) -> None:
    """u-muP's unit init: std 1 for every weight, described, stored and in the package. The
    sample std of N pooled Gaussian draws has relative standard error 1/sqrt(2N); each
    comparison allows 5 of them (at most 5% for the readout at width 64, N = 8 * 640)."""
    described = rows(describe(our_mlp(width)))
    stored = {s.name: p.detach() for s, p in our_mlp(width, seeds=SEEDS).named_tensors()}
    pooled: dict[str, list[torch.Tensor]] = {}
    for seed in SEEDS:
        for name, p in reference_mlp(width, seed).named_parameters():
            pooled.setdefault(our_name(name), []).append(p.detach().flatten())
    assert set(pooled) == set(described)
    for name, draws in pooled.items():
        reference = torch.cat(draws).double()
        tol = 5 / math.sqrt(2 * reference.numel())
        assert tol <= 0.05, name
        assert described[name]["init_std"] == 1.0, name
        assert reference.std().item() == pytest.approx(1.0, rel=tol), name
        assert stored[name].double().std().item() == pytest.approx(1.0, rel=tol), name


@pytest.mark.parametrize("width", WIDTHS)
def test_forward_scales_match_the_packages_ops(width: int) -> None:
    """The package scales a linear map by fan_in**-1/2 and its readout by fan_in**-1, measured
    on its modules; ours are the same numbers."""
    reference = reference_mlp(width).double()
    described = rows(describe(our_mlp(width)))
    generator = torch.Generator().manual_seed(0)
    for name, module in [*((f"layers.{i}", m) for i, m in enumerate(reference.layers)),
                         ("readout", reference.readout)]:  # fmt: skip
        x = torch.randn(8, module.in_features, generator=generator, dtype=torch.float64)
        ours = described[our_name(f"{name}.weight")]["forward_mult"]
        assert measured_scale(module, x) == pytest.approx(ours, rel=1e-9), name
    assert described["hidden1.weight"]["forward_mult"] == pytest.approx(width**-0.5, rel=EXACT)
    assert described["readout.weight"]["forward_mult"] == pytest.approx(1 / width, rel=EXACT)
    assert described["input.weight"]["forward_mult"] == pytest.approx(D_IN**-0.5, rel=EXACT)


@pytest.mark.parametrize("width", WIDTHS)
def test_same_stored_tensors_compute_the_same_function(width: int) -> None:
    """Loaded with the package's tensors, our MLP computes the package's outputs."""
    reference = reference_mlp(width)
    ours = our_mlp(width)
    load_reference(ours, reference)
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x.unsqueeze(0))[0], reference(x), rtol=1e-5, atol=1e-6)


def load_reference(ours: MLP, reference: nn.Module) -> None:
    """Copy the reference's tensors into member 0 of ours."""
    params = {spec.name: p for spec, p in ours.named_tensors()}
    with torch.no_grad():
        for name, p in reference.named_parameters():
            params[our_name(name)][0].copy_(p.T)


# (package optimizer, its independent_weight_decay) -> (our optimizer, our parametrization)
OPTIMIZER_PAIRS = {
    (uu.optim.AdamW, True): ("adamw", {"independent_weight_decay": True}),
    (uu.optim.AdamW, False): ("adamw", {"weight_decay_scaling": "none"}),
    (uu.optim.Adam, False): ("adam", {"weight_decay_scaling": "none"}),
}


@pytest.mark.parametrize(("reference_optimizer", "independent"), sorted(
    OPTIMIZER_PAIRS, key=lambda pair: (pair[0].__name__, pair[1])))  # fmt: skip
@pytest.mark.parametrize("width", WIDTHS)
def test_per_tensor_lr_and_weight_decay_match_the_packages_optimizer(
    width: int, reference_optimizer: type, independent: bool
) -> None:
    """``unit_scaling.optim``: Adam LR fan_in**-1/2 on matrices and 1 on the readout; weight
    decay ``wd / lr`` per tensor when independent of the LR (a per-step decay of ``wd``,
    ours with ``independent_weight_decay``), else ``wd`` (ours with no width scaling)."""
    optimizer, param = OPTIMIZER_PAIRS[reference_optimizer, independent]
    reference = reference_mlp(width)
    opt = reference_optimizer(reference.parameters(), lr=LR, weight_decay=WEIGHT_DECAY,
                              independent_weight_decay=independent)  # fmt: skip
    groups = {id(p): group for group in opt.param_groups for p in group["params"]}
    described = rows(describe(our_mlp(width, **param), optimizer=optimizer, lr=LR,
                              weight_decay=WEIGHT_DECAY))  # fmt: skip
    for name, p in reference.named_parameters():
        group, row = groups[id(p)], described[our_name(name)]
        assert row["lr"] == pytest.approx(group["lr"], rel=EXACT), name
        if optimizer == "adamw":  # decoupled: compare the decay per step
            expected = group["lr"] * group["weight_decay"]
            assert row["decay_per_step"] == pytest.approx(expected, rel=EXACT), name
        else:  # L2: compare the coefficient
            assert row["weight_decay"] == pytest.approx(group["weight_decay"], rel=EXACT), name
    assert described["hidden1.weight"]["lr"] == pytest.approx(LR * width**-0.5, rel=EXACT)
    assert described["readout.weight"]["lr"] == pytest.approx(LR, rel=EXACT)


@pytest.mark.parametrize(("reference_optimizer", "independent"), sorted(
    OPTIMIZER_PAIRS, key=lambda pair: (pair[0].__name__, pair[1])))  # fmt: skip
@pytest.mark.parametrize("width", [64, 256])
def test_adam_steps_give_the_packages_outputs(
    width: int, reference_optimizer: type, independent: bool
) -> None:
    """Five steps of Adam or AdamW from the same tensors on the same batch: the package (its
    unit-scaled cross-entropy and gradients) and ours (plain autograd) reach the same outputs,
    and these differ from the outputs at init (so the steps moved them). AdamW decays the
    weights; Adam runs without its L2 penalty, which the package adds to its rescaled
    gradient and we to the true one, so the two differ there by design."""
    optimizer, param = OPTIMIZER_PAIRS[reference_optimizer, independent]
    lr, eps = 0.02, 1e-30
    weight_decay = 0.05 if optimizer == "adamw" else 0.0
    reference = reference_mlp(width).double()
    ours = our_mlp(width, **param).double()
    load_reference(ours, reference)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(64, D_IN, generator=generator, dtype=torch.float64)
    y = torch.randint(0, D_OUT, (64,), generator=generator)
    with torch.no_grad():
        start = reference(x)
    reference_opt = reference_optimizer(reference.parameters(), lr=lr, eps=eps,
                                        weight_decay=weight_decay,
                                        independent_weight_decay=independent)  # fmt: skip
    tensors = ours.named_tensors()
    resolved = resolve([s for s, _ in tensors], ours.parametrization, width=width, depth=DEPTH,
                       optimizer=optimizer)  # fmt: skip
    our_opt = make_optimizer(optimizer, [p for _, p in tensors], resolved,
                             torch.full((1,), lr, dtype=torch.float64),
                             torch.full((1,), weight_decay, dtype=torch.float64),
                             eps=eps)  # fmt: skip
    for _ in range(5):
        reference_opt.zero_grad()
        U.cross_entropy(reference(x), y).backward()
        reference_opt.step()
        our_opt.zero_grad()
        F.cross_entropy(ours(x.unsqueeze(0))[0], y).backward()
        our_opt.step()
    with torch.no_grad():
        expected, got = reference(x), ours(x.unsqueeze(0))[0]
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert (expected - start).abs().max() > 1e-2


# --- the Transformer, tensor by tensor ----------------------------------------------------

VOCAB, CONTEXT, HEAD_DIM, BLOCKS = 30, 16, 16, 3
TRANSFORMER_WIDTHS = (32, 64, 128)

COUNTERPARTS = {
    "embed.token": "embedding.weight",
    "attn.query.weight": "mhsa.linear_qkv.weight",
    "attn.key.weight": "mhsa.linear_qkv.weight",
    "attn.value.weight": "mhsa.linear_qkv.weight",
    "attn.out.weight": "mhsa.linear_o.weight",
    "mlp.fc1.weight": "mlp.linear_1.weight",
    "mlp.fc2.weight": "mlp.linear_2.weight",
    "readout.weight": "projection.weight",
}
"""Our Transformer's matrices and the package's ``TransformerDecoder`` tensor each matches
(the package fuses query, key and value into one map)."""


def reference_name(name: str) -> str | None:
    """The decoder tensor that our tensor ``name`` matches, if any (``block2.attn.out.weight``
    -> ``layers.1.mhsa.linear_o.weight``)."""
    block, _, rest = name.partition(".")
    if block.startswith("block") and rest in COUNTERPARTS:
        return f"layers.{int(block.removeprefix('block')) - 1}.{COUNTERPARTS[rest]}"
    return COUNTERPARTS.get(name)


def our_transformer(width: int) -> Transformer:
    param = Parametrization("u-mup", base_width=32, depth_rule="depth-mup", base_depth=1)
    return Transformer(d_in=CONTEXT, d_out=VOCAB, width=width, depth=BLOCKS, head_dim=HEAD_DIM,
                       parametrization=param, seeds=[0])  # fmt: skip


class ReferenceVectors(nn.Module):
    """Norm gains and shifts and linear biases as the package has them: ``BLOCKS`` blocks in
    a ``DepthSequential`` (the decoder's own norms have no gains), a final norm, a position
    table and a readout with a bias."""

    def __init__(self, width: int) -> None:
        super().__init__()
        block = lambda: nn.ModuleDict(  # noqa: E731
            {"norm": uu.LayerNorm(width, elementwise_affine=True),
             "linear": uu.Linear(width, width, bias=True)})  # fmt: skip
        self.blocks = uu.DepthSequential(*(block() for _ in range(BLOCKS)))
        self.final_norm = uu.LayerNorm(width, elementwise_affine=True)
        self.position = uu.Embedding(CONTEXT, width)
        self.readout = uu.LinearReadout(width, VOCAB, bias=True)


def reference_lrs(module: nn.Module) -> dict[str, float]:
    opt = uu.optim.Adam(module.parameters(), lr=LR)
    by_id = {id(p): group["lr"] for group in opt.param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in module.named_parameters()}


@pytest.mark.parametrize("width", TRANSFORMER_WIDTHS)
def test_transformer_tensors_get_the_packages_init_forward_scale_and_adam_lr(width: int) -> None:
    """Each matrix of our Transformer gets the init std, forward scale and Adam LR of its
    counterpart in ``uu.TransformerDecoder`` (embedding LR width**-1/2, the paper's embedding
    rule; LR times depth**-1/2 inside the stack); gains, shifts and biases those of the
    package's ``LayerNorm``, ``Linear`` and ``LinearReadout`` biases in and out of a
    ``DepthSequential``; the position table that of a ``uu.Embedding``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        decoder = uu.TransformerDecoder(hidden_size=width, vocab_size=VOCAB, layers=BLOCKS,
                                        heads=width // HEAD_DIM)  # fmt: skip
        vectors = ReferenceVectors(width)
    modules = dict(decoder.named_modules())
    lrs, vector_lrs = reference_lrs(decoder), reference_lrs(vectors)
    params = dict(decoder.named_parameters())
    described = rows(describe(our_transformer(width), optimizer="adam", lr=LR))
    generator = torch.Generator().manual_seed(0)
    matched = 0
    for name, row in described.items():
        counterpart = reference_name(name)
        if counterpart is not None:
            matched += 1
            assert row["lr"] == pytest.approx(lrs[counterpart], rel=EXACT), name
            drawn = params[counterpart].detach().double()
            tol = 5 / math.sqrt(2 * drawn.numel())  # 5 standard errors of a sample std
            assert drawn.std().item() == pytest.approx(row["init_std"], rel=tol), name
            module = modules[counterpart.removesuffix(".weight")]
            x = (torch.randint(0, VOCAB, (8,), generator=generator)
                 if isinstance(module, nn.Embedding)
                 else torch.randn(8, module.in_features, generator=generator))  # fmt: skip
            assert measured_scale(module, x) == pytest.approx(row["forward_mult"], rel=1e-5), name
        elif name == "embed.position":
            assert row["lr"] == pytest.approx(vector_lrs["position.weight"], rel=EXACT)
        elif name.startswith("final_norm."):
            field = {"gain": "weight", "bias": "bias"}[name.removeprefix("final_norm.")]
            assert row["lr"] == pytest.approx(vector_lrs[f"final_norm.{field}"], rel=EXACT)
        elif name == "readout.bias":
            assert row["lr"] == pytest.approx(vector_lrs["readout.bias"], rel=EXACT)
        else:  # a gain, shift or bias in a block
            assert row["role"] == "vector" and row["in_block"], name
            assert row["lr"] == pytest.approx(vector_lrs["blocks.0.norm.weight"], rel=EXACT)
            assert row["lr"] == pytest.approx(vector_lrs["blocks.0.linear.bias"], rel=EXACT)
    assert matched == 6 * BLOCKS + 2
    assert described["embed.token"]["lr"] == pytest.approx(LR * width**-0.5, rel=EXACT)
    assert described["block1.mlp.fc2.weight"]["lr"] == pytest.approx(
        LR * (4 * width) ** -0.5 * BLOCKS**-0.5, rel=EXACT
    )


# --- claims at small scale ----------------------------------------------------------------


@pytest.mark.parametrize("activation", sorted(UNIT_ACTIVATION_GAINS))
def test_each_unit_gain_gives_its_nonlinearity_a_unit_rms_output(activation: str) -> None:
    """E[(g f(z))^2] = 1 for z ~ N(0, 1), by quadrature on a fine grid."""
    z = torch.linspace(-12, 12, 240_001, dtype=torch.float64)
    density = torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    f = {"relu": torch.relu, "gelu": F.gelu, "tanh": torch.tanh}[activation]
    second_moment = torch.trapezoid((UNIT_ACTIVATION_GAINS[activation] * f(z)) ** 2 * density, z)
    assert second_moment.item() == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_u_mup_activations_are_unit_scaled_at_init_at_every_width(activation: str) -> None:
    """Unit-Gaussian inputs: every pre-activation of a 4-layer u-muP MLP has RMS 1 (within
    10%, pooled over 8 initialisations) at widths 64 to 1024, and the logits RMS
    width**-1/2 (muP's vanishing readout).
    muP, whose fan-in init keeps the RMS through a linear map too but whose nonlinearities
    are plain, drifts from 1 layer by layer, so the check can fail."""
    x = torch.randn(1, 512, D_IN, generator=torch.Generator().manual_seed(0)).expand(8, -1, -1)
    for width in (64, 256, 1024):
        for name in ("u-mup", "mup"):
            model = MLP(d_in=D_IN, d_out=100, width=width, depth=4, activation=activation,
                        parametrization=Parametrization(name, base_width=width),
                        seeds=SEEDS)  # fmt: skip
            capture: dict = {}
            with torch.no_grad():
                model(x, capture=capture)
            rms = {layer: h.pow(2).mean().sqrt().item() for layer, h in capture.items()}
            hidden = [rms["input"], *(rms[f"hidden{i}"] for i in range(1, 4))]
            if name == "u-mup":
                assert hidden == pytest.approx([1.0] * 4, rel=0.1), (width, rms)
                assert rms["readout"] * width**0.5 == pytest.approx(1.0, rel=0.15), (width, rms)
            else:
                assert abs(hidden[-1] - 1.0) > 0.15, (width, rms)


def _effective_exponents(name: str, model_at) -> dict[str, tuple[float, float]]:
    """Width exponents of each weight's effective init std (forward x stored std) and
    effective Adam LR (forward x LR), between widths 64 and 256."""
    frames = [rows(describe(model_at(name, width))) for width in (64, 256)]
    out = {}
    for tensor, narrow in frames[0].items():
        wide = frames[1][tensor]
        if narrow["kind"] != "weight":
            continue
        init = [r["forward_mult"] * r["init_std"] for r in (narrow, wide)]
        lr = [r["forward_mult"] * r["lr"] for r in (narrow, wide)]
        out[tensor] = tuple(-math.log(b / a, 4) for a, b in (init, lr))
    return out


MODELS_AT = {
    "mlp": lambda name, width: MLP(d_in=D_IN, d_out=D_OUT, width=width, depth=DEPTH, seeds=[0],
                                   parametrization=Parametrization(name, base_width=64)),
    "transformer": lambda name, width: Transformer(d_in=CONTEXT, d_out=VOCAB, width=width,
                                                   depth=2, seeds=[0],
                                                   parametrization=Parametrization(name,
                                                                                   base_width=64)),
}  # fmt: skip


@pytest.mark.parametrize("model", sorted(MODELS_AT))
def test_u_mup_scales_with_width_as_mup_but_for_the_embedding_lr(model: str) -> None:
    """u-muP is muP in another abc gauge with other constants (Blake et al. 2024, section 4):
    every weight's effective init and effective Adam LR have muP's width exponents, except
    the embedding tables' LR, which falls as width**-1/2 (the paper's embedding rule)."""
    umup = _effective_exponents("u-mup", MODELS_AT[model])
    mup = _effective_exponents("mup", MODELS_AT[model])
    assert umup.keys() == mup.keys()
    for tensor, (init, lr) in umup.items():
        embedding = tensor.startswith("embed.") and model == "transformer"
        assert init == pytest.approx(mup[tensor][0], abs=1e-9), tensor
        assert lr == pytest.approx(mup[tensor][1] + (0.5 if embedding else 0.0), abs=1e-9), tensor


@pytest.mark.parametrize("optimizer", ["sgd", "muon"])
def test_u_mup_refuses_optimizers_it_defines_no_learning_rates_for(optimizer: str) -> None:
    with pytest.raises(InputError, match=rf"optimizer='{optimizer}'.*allowed: 'adam', 'adamw', "
                                          r"'adam-atan2'$"):  # fmt: skip
        TrainConfig(parametrization=Parametrization("u-mup"), optimizer=optimizer)
    TrainConfig(parametrization=Parametrization("mup"), optimizer=optimizer)  # allowed there


def _best_lr_exponent(width: int, digits, exponents) -> int:
    """log2 of the Adam LR with the lowest final training loss (mean of 2 seeds; a diverged
    run counts as an infinite loss) of a u-muP MLP on digits after 50 steps."""
    config = TrainConfig(task="digits", parametrization=Parametrization("u-mup", base_width=32),
                         optimizer="adam", width=width, depth=2, steps=50, batch_size=64,
                         eval_every=50)  # fmt: skip
    members = [Member(lr=2.0**e, seed=s) for e in exponents for s in (0, 1)]
    loss = pl.col("final_train_loss").fill_nan(math.inf).fill_null(math.inf)
    runs = train(config, members, task=digits).runs
    best = runs.group_by("lr").agg(loss.mean()).sort("final_train_loss")["lr"][0]
    return round(math.log2(best))


def test_u_mup_optimal_adam_lr_transfers_across_width():
    """Digits, a 2-layer MLP, Adam: the best LR on a grid of powers of 2 is inside the grid
    at width 32 and within one grid step of it at width 512 (16 times wider)."""
    digits = load_task("digits")
    exponents = range(-6, 4)
    narrow = _best_lr_exponent(32, digits, exponents)
    wide = _best_lr_exponent(512, digits, exponents)
    assert exponents[0] < narrow < exponents[-1]  # an interior optimum, not the grid's edge
    assert abs(wide - narrow) <= 1, (narrow, wide)
