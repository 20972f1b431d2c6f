"""Ensemble layers: ``members`` same-shape layers in one module, members on axis 0.

Each layer owns its tensors' :class:`~toolkit.engine.parametrization.TensorSpec` (its role
for the parametrization), their seeded initialisation and its forward multiplier. A spec's
name is the parameter's dotted path in the model (``block1.fc1.weight``), so
``dict(model.named_parameters())`` is keyed by spec names and
``torch.func.functional_call(model, params, (x,))`` runs a model on any tensors of those names.

Weight matrices are stored ``(members, fan_in, fan_out)``, so a layer maps an input
``(members, batch, fan_in)`` to ``(members, batch, fan_out)`` by batched matrix multiplies
(``torch.baddbmm``). Vectors (biases, norm gains) are ``(members, features)``.

A forward multiplier or init std is one float when every member has the same value (the
fast path: ``baddbmm``'s scalar ``alpha``) and a ``(members, 1, 1)`` tensor when members
differ in ``init_sigma``, ``input_alpha`` or ``output_alpha``
(:class:`toolkit.engine.train.Member`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.engine.catalogue import ACTIVATIONS, check_registry
from toolkit.engine.parametrization import (
    Kind,
    Parametrization,
    Role,
    TensorSpec,
    forward_and_init,
)
from toolkit.engine.rules import ACTIVATION_GAINS, UNIT_ACTIVATION_GAINS
from toolkit.errors import InputError, check_choice, check_positive

ACTIVATION_FUNCTIONS = {"relu": torch.relu, "gelu": F.gelu, "tanh": torch.tanh}
"""Nonlinearities by their name in :data:`toolkit.engine.catalogue.ACTIVATIONS`."""
check_registry("activations", ACTIVATION_FUNCTIONS, ACTIVATIONS)
check_registry("unit activation gains", UNIT_ACTIVATION_GAINS, ACTIVATIONS)


def _scaled(function: Callable, gain: float, h: torch.Tensor) -> torch.Tensor:
    """``gain * function(h)``."""
    return function(h) * gain


def activation_function(
    name: str, parametrization: Parametrization
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The nonlinearity ``name`` times its gain under ``parametrization``
    (:data:`~toolkit.engine.rules.ACTIVATION_GAINS`; the plain function where it has none)."""
    function = ACTIVATION_FUNCTIONS[name]
    gain = ACTIVATION_GAINS.get(parametrization.name, {}).get(name, 1.0)
    return function if gain == 1.0 else partial(_scaled, function, gain)


Scale = float | torch.Tensor
"""A multiplier: one float for every member, or one value per member, ``(members, 1, 1)``."""


def per_member(values: Sequence[float]) -> Scale:
    """One float when every member has the same value, else a ``(members, 1, 1)`` tensor that
    broadcasts over a member's ``(batch, features)`` or ``(fan_in, fan_out)``."""
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values).view(-1, 1, 1)


class TensorFactory:
    """Creates a model's tensors in the order its layers ask for them.

    Each member has its own generator, seeded by its seed, and weights are drawn in
    creation order: a member's initialisation depends on its seed (and multipliers) only,
    whatever else is in the ensemble. ``shape_only`` creates every tensor on PyTorch's
    ``meta`` device (no memory, no random numbers).

    Args:
        parametrizations: one per member; they may differ only in ``init_sigma``,
            ``input_alpha`` and ``output_alpha``.
        width: the model's width ``n``.
        seeds: one per member.
        shape_only: create tensors on the ``meta`` device.
    """

    def __init__(
        self,
        parametrizations: Sequence[Parametrization],
        *,
        width: int,
        seeds: Sequence[int],
        shape_only: bool = False,
    ) -> None:
        if len(parametrizations) != len(seeds):
            raise InputError(
                f"member_parametrizations has {len(parametrizations)} entries; "
                f"expected one per seed ({len(seeds)})"
            )
        self.parametrizations = list(parametrizations)
        self.width = width
        self.members = len(seeds)
        self.shape_only = shape_only
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def scales(self, spec: TensorSpec) -> tuple[Scale, Scale]:
        """Forward multiplier and init std of ``spec`` (:func:`per_member` of each member's)."""
        pairs = [forward_and_init(spec, p, width=self.width) for p in self.parametrizations]
        return per_member([f for f, _ in pairs]), per_member([s for _, s in pairs])

    def tensor(self, spec: TensorSpec) -> tuple[nn.Parameter, Scale]:
        """A new ``(members, *spec.shape)`` parameter and its forward multiplier.

        Weights are ``normal(0, init_std)``, gains ones, biases zeros.
        """
        forward, std = self.scales(spec)
        shape = (self.members, *spec.shape)
        if self.shape_only:
            value = torch.empty(shape, device="meta")
        elif spec.kind is Kind.WEIGHT:
            draws = [torch.randn(spec.shape, generator=g) for g in self.generators]
            value = torch.stack(draws) * std
        elif spec.kind is Kind.GAIN:
            value = torch.ones(shape)
        else:
            value = torch.zeros(shape)
        return nn.Parameter(value), forward


class EnsembleLayer(nn.Module):
    """A layer whose tensors each carry a spec; ``forward_mult`` multiplies its weights."""

    def __init__(self) -> None:
        super().__init__()
        self.specs: dict[str, TensorSpec] = {}
        self.forward_mult: Scale = 1.0

    def _register(self, attribute: str, spec: TensorSpec, factory: TensorFactory) -> Scale:
        """Create ``spec``'s tensor as parameter ``attribute``; return its forward multiplier."""
        param, forward = factory.tensor(spec)
        self.register_parameter(attribute, param)
        self.specs[attribute] = spec
        return forward

    def _set_forward_mult(self, mult: Scale) -> None:
        """A per-member multiplier is a buffer, so it follows the model to its device."""
        if isinstance(mult, torch.Tensor):
            del self.forward_mult
            self.register_buffer("forward_mult", mult, persistent=False)
        else:
            self.forward_mult = mult

    def tensors(self) -> Iterator[tuple[TensorSpec, nn.Parameter]]:
        """``(spec, parameter)`` of each tensor of this layer, in creation order."""
        for attribute, spec in self.specs.items():
            yield spec, getattr(self, attribute)


FEW_OUTPUTS = 16
"""Up to this many outputs a linear map is computed transposed (:class:`FewOutputsProduct`),
its output kept as ``(members, fan_out, batch)``, and the cross-entropy over that many
classes takes them on axis 1, where they already lie
(:func:`toolkit.engine.evaluation.per_member_loss`). Both pay on CPUs: PyTorch's CPU
log-softmax over a short last axis is slow (one thread, 18 x 128 predictions, 10
classes: 0.77 ms forward and backward along the last axis, 0.28 ms along axis 1; from
24 classes the last axis is faster), and so is a batched product with a few result
columns (below)."""


class FewOutputsProduct(torch.autograd.Function):
    """``alpha * (h @ W) + b`` for a weight with few outputs (a classifier's readout), every
    product taken in the orientation whose result is wide.

    MKL's batched product is slow when its result has a few columns: for 18 members of 128
    examples, 10 outputs and width 512 (2 CPU cores), the weight gradient ``h^T g`` took
    2.9 ms where ``(g^T h)^T`` takes 0.23 ms, and the forward product 0.80 ms where
    ``(W^T h^T)^T`` takes 0.21 ms: a width-512 MLP step 10% faster, width 128 about 15%.
    The output is the transposed view of a ``(members, fan_out, batch)`` tensor, and the
    backward pass reads the gradient the same way round. ``alpha`` is a float. The same
    function as ``torch.baddbmm`` up to rounding, differentiable twice (the backward is
    made of differentiable products), in forward mode (``jvp``) and under ``vmap``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(h, weight, bias, alpha):
        h_t, weight_t = h.transpose(1, 2), weight.transpose(1, 2)
        if bias is None:
            out = torch.bmm(weight_t, h_t)
            return (out if alpha == 1.0 else out * alpha).transpose(1, 2)
        return torch.baddbmm(bias.unsqueeze(2), weight_t, h_t, alpha=alpha).transpose(1, 2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        h, weight, _, alpha = inputs
        ctx.save_for_backward(h, weight)
        ctx.save_for_forward(h, weight)
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_b = grad.sum(1) if needs[2] else None
        if ctx.alpha != 1.0:
            grad = grad * ctx.alpha
        grad_h = grad_w = None
        if needs[0]:
            grad_h = torch.bmm(grad, weight.transpose(1, 2))
        if needs[1]:  # in the weight's own layout (fused Adam reads it whole)
            grad_w = torch.bmm(grad.transpose(1, 2), h).transpose(1, 2).contiguous()
        return grad_h, grad_w, grad_b, None

    @staticmethod
    def jvp(ctx, h_dot, weight_dot, bias_dot, _):
        h, weight = ctx.saved_tensors  # the tangent is laid out as the output: transposed
        out = h.new_zeros(h.shape[0], weight.shape[2], h.shape[1])
        if h_dot is not None:
            out = out.baddbmm(weight.transpose(1, 2), h_dot.transpose(1, 2), alpha=ctx.alpha)
        if weight_dot is not None:
            out = out.baddbmm(weight_dot.transpose(1, 2), h.transpose(1, 2), alpha=ctx.alpha)
        if bias_dot is not None:
            out = out + bias_dot.unsqueeze(2)
        return out.transpose(1, 2)


def scaled_matmul(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mult: Scale
) -> torch.Tensor:
    """``mult * (h @ W) + b`` for every member: ``h`` ``(members, batch, fan_in)``, ``W``
    ``(members, fan_in, fan_out)``, ``b`` ``(members, fan_out)``. With at most
    :data:`FEW_OUTPUTS` outputs the result is a transposed view (:class:`FewOutputsProduct`)."""
    if weight.shape[2] <= FEW_OUTPUTS:
        if isinstance(mult, torch.Tensor):
            out = FewOutputsProduct.apply(h, weight, None, 1.0) * mult
            return out if bias is None else out + bias.unsqueeze(1)
        return FewOutputsProduct.apply(h, weight, bias, mult)
    if isinstance(mult, torch.Tensor):
        out = torch.bmm(h, weight) * mult
        return out if bias is None else out + bias.unsqueeze(1)
    if bias is None:
        out = torch.bmm(h, weight)
        return out if mult == 1.0 else out * mult
    return torch.baddbmm(bias.unsqueeze(1), h, weight, alpha=mult)


class EnsembleLinear(EnsembleLayer):
    """``forward_mult * (h @ W) + b``: tensors ``{name}.weight`` and (``bias``) ``{name}.bias``.

    Args:
        name: the layer's dotted path in its model.
        factory: creates the tensors.
        role: the weight's role; the bias is ``fixed`` after the readout (``role`` output)
            and ``vector`` elsewhere.
        fan_in, fan_out: the matrix's fans; ``base_fan_in`` its fan-in at base width.
        bias: add a bias.
        in_block: the layer sits in a residual block (depth rules apply).
        query: an attention query projection (``query_zero_init`` zeroes it).
        weight: ``False`` for a readout tied to another tensor: no weight of its own, the
            forward multiplier a readout weight would have, the tensor passed to ``forward``.
    """

    def __init__(
        self,
        name: str,
        factory: TensorFactory,
        role: Role,
        fan_in: int,
        fan_out: int,
        *,
        base_fan_in: int | None = None,
        bias: bool = True,
        in_block: bool = False,
        query: bool = False,
        weight: bool = True,
    ) -> None:
        super().__init__()
        spec = TensorSpec(
            name=f"{name}.weight",
            role=role,
            kind=Kind.WEIGHT,
            shape=(fan_in, fan_out),
            fan_in=fan_in,
            fan_out=fan_out,
            base_fan_in=fan_in if base_fan_in is None else base_fan_in,
            in_block=in_block,
            query=query,
        )
        self.register_parameter("weight", None)
        self.register_parameter("bias", None)
        mult = self._register("weight", spec, factory) if weight else factory.scales(spec)[0]
        self._set_forward_mult(mult)
        if bias:
            bias_role = Role.FIXED if role is Role.OUTPUT else Role.VECTOR
            self._register("bias", _vector(f"{name}.bias", bias_role, Kind.BIAS, fan_in,
                                           fan_out, in_block), factory)  # fmt: skip

    def forward(self, h: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``(members, batch, fan_in) -> (members, batch, fan_out)``; ``weight`` replaces the
        layer's own (a tied readout)."""
        return scaled_matmul(h, self.weight if weight is None else weight, self.bias,
                             self.forward_mult)  # fmt: skip


def _vector(name: str, role: Role, kind: Kind, fan_in: int, n: int, in_block: bool) -> TensorSpec:
    """The spec of a ``(n,)`` vector (a bias or norm gain) after a map of fan-in ``fan_in``."""
    return TensorSpec(name, role, kind, (n,), fan_in, n, fan_in, in_block=in_block)


class EnsembleLayerNorm(EnsembleLayer):
    """LayerNorm over the last axis with a per-member gain ``{name}.gain`` (ones at init) and,
    with ``shift``, a shift ``{name}.bias`` (zeros); both are ``vector`` tensors."""

    def __init__(
        self, name: str, factory: TensorFactory, width: int, *, shift: bool, in_block: bool
    ) -> None:
        super().__init__()
        self.width = width
        self._register("gain", _vector(f"{name}.gain", Role.VECTOR, Kind.GAIN, width, width,
                                       in_block), factory)  # fmt: skip
        self.register_parameter("bias", None)
        if shift:
            self._register("bias", _vector(f"{name}.bias", Role.VECTOR, Kind.BIAS, width, width,
                                           in_block), factory)  # fmt: skip

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(members, tokens, width) -> (members, tokens, width)``."""
        out = F.layer_norm(h, (self.width,)) * self.gain.unsqueeze(1)
        return out if self.bias is None else out + self.bias.unsqueeze(1)


class EnsembleEmbedding(EnsembleLayer):
    """Token and position embeddings, ``input_alpha * (E_tok[x] + E_pos[t])``.

    Tensors ``{name}.token`` ``(members, vocab, width)`` and ``{name}.position``
    ``(members, context, width)``, both ``input``: a lookup reads one row, so the fan-in
    at base width is 1 and rows start at std ``init_sigma``, as ``torch.nn.Embedding``.
    Their specs are marked ``lookup`` (u-muP's rules tell a lookup from a matrix).
    """

    def __init__(
        self, name: str, factory: TensorFactory, *, vocab: int, context: int, width: int
    ) -> None:
        super().__init__()
        check_positive("vocab", vocab, integer=True)
        self.vocab, self.width = vocab, width
        token = TensorSpec(f"{name}.token", Role.INPUT, Kind.WEIGHT, (vocab, width), vocab,
                           width, 1, lookup=True)  # fmt: skip
        position = TensorSpec(f"{name}.position", Role.INPUT, Kind.WEIGHT, (context, width),
                              context, width, 1, lookup=True)  # fmt: skip
        self._set_forward_mult(self._register("token", token, factory))  # input_alpha
        self._register("position", position, factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``(members, batch, T)`` -> ``(members, batch * T, width)``."""
        members, batch, length = x.shape
        offsets = torch.arange(members, device=x.device).view(-1, 1, 1) * self.vocab
        table = self.token.reshape(members * self.vocab, self.width)
        h = F.embedding(x + offsets, table) + self.position[:, :length].unsqueeze(1)
        h = h.reshape(members, batch * length, self.width)
        mult = self.forward_mult
        if isinstance(mult, torch.Tensor) or mult != 1.0:
            return h * mult
        return h


class EnsembleModel(nn.Module):
    """Base class of the toolkit's models: layers whose tensors carry specs.

    Subclasses create their layers in a fixed order (the order random numbers are drawn
    in) with :attr:`factory` and implement ``forward(x, capture=None)``; when ``capture``
    is a dict, each layer's output is stored in it under the layer's name, shape
    ``(members, batch, features)``.

    Args:
        d_in, d_out: input features (context length) and outputs (vocabulary size).
        width, depth: hidden width ``n`` and hidden layers or blocks.
        parametrization: the group's rules; ``member_parametrizations`` (one per seed)
            give members their own ``init_sigma``, ``input_alpha``, ``output_alpha``.
        seeds: one per member.
        activation: one of :data:`toolkit.engine.catalogue.ACTIVATIONS` (times its gain under
            a unit-scaled parametrization, :func:`activation_function`).
        bias: linear maps (and, in the Transformer, norms) have biases.
        shape_only: every tensor on the ``meta`` device, to count parameters and FLOPs.
    """

    def __init__(
        self,
        *,
        d_in: int,
        d_out: int,
        width: int,
        depth: int,
        parametrization: Parametrization,
        seeds: Sequence[int],
        activation: str,
        bias: bool,
        member_parametrizations: Sequence[Parametrization] | None = None,
        shape_only: bool = False,
    ) -> None:
        super().__init__()
        check_positive("d_in", d_in, integer=True)
        check_positive("d_out", d_out, integer=True)
        check_positive("width", width, integer=True)
        check_positive("depth", depth, integer=True)
        check_choice("activation", activation, ACTIVATIONS)
        if len(seeds) == 0:
            raise InputError("seeds=[] is empty: an ensemble needs at least one member")
        self.d_in, self.d_out, self.width, self.depth = d_in, d_out, width, depth
        self.parametrization = parametrization
        self.seeds = [int(s) for s in seeds]
        self.act = activation_function(activation, parametrization)
        self.bias = bias
        self.shape_only = shape_only
        if member_parametrizations is None:
            member_parametrizations = [parametrization] * len(self.seeds)
        self.factory = TensorFactory(
            member_parametrizations, width=width, seeds=self.seeds, shape_only=shape_only
        )

    @property
    def members(self) -> int:
        return len(self.seeds)

    def named_tensors(self) -> list[tuple[TensorSpec, nn.Parameter]]:
        """``(spec, parameter)`` pairs in creation order (that of ``named_parameters``)."""
        return [
            pair
            for module in self.modules()
            if isinstance(module, EnsembleLayer)
            for pair in module.tensors()
        ]

    @property
    def specs(self) -> list[TensorSpec]:
        """Every tensor's spec, in creation order."""
        return [spec for spec, _ in self.named_tensors()]

    @property
    def forward_mults(self) -> dict[str, Scale]:
        """Each weight's forward multiplier, by tensor name."""
        return {
            spec.name: module.forward_mult
            for module in self.modules()
            if isinstance(module, EnsembleLayer)
            for spec, _ in module.tensors()
            if spec.kind is Kind.WEIGHT
        }

    def parameter_count(self, kind: Kind | None = None) -> int:
        """Parameters of one member (of one ``kind``, e.g. ``Kind.WEIGHT`` for matrices)."""
        return sum(math.prod(s.shape) for s in self.specs if kind is None or s.kind is kind)

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """A copy of one member's tensors, keyed by tensor name."""
        return {s.name: p[member].detach().clone() for s, p in self.named_tensors()}
