"""Batched ("ensemble") tiny models: N same-shape models in one object.

Every parameter carries a leading member axis, so a forward pass over
``x`` of shape ``(members, batch, d_in)`` is a handful of batched matrix
multiplies (``torch.baddbmm``) and returns ``(members, batch, d_out)``.
Members differ in their seeds (init and data order) and, in the optimizer,
in LR and weight decay. Weight matrices are stored as ``(members, fan_in,
fan_out)`` so that the forward pass is ``x @ W``.

How each tensor is initialised and multiplied in the forward pass comes from
the parametrization (:mod:`toolkit.engine.parametrization`); the models only declare
each tensor's role.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.engine.parametrization import (
    Kind,
    Parametrization,
    Role,
    TensorSpec,
    branch_multiplier,
    forward_and_init,
)
from toolkit.errors import InputError, check_choice, check_positive

ACTIVATIONS = {"relu": torch.relu, "gelu": F.gelu, "tanh": torch.tanh}


Scale = float | torch.Tensor
"""A multiplier: one float for every member, or one value per member ``(members, 1, 1)``."""


def per_member(values: Sequence[float]) -> Scale:
    """One float when every member has the same value, else a ``(members, 1, 1)`` tensor that
    broadcasts over a member's ``(batch, features)`` or ``(fan_in, fan_out)``."""
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values).view(-1, 1, 1)


class EnsembleModel(nn.Module):
    """Base class: tensor specs, per-member seeded init, forward multipliers.

    Subclasses call :meth:`_add` for each tensor in a fixed order (the order
    random numbers are drawn in) and implement ``forward(x, capture=None)``;
    ``shape_only=True`` puts every tensor on PyTorch's ``meta`` device (no
    memory, no random numbers), for counting parameters and FLOPs;
    when ``capture`` is a dict, each layer's output is stored in it under the
    layer's name, shape ``(members, batch, features)``. ``reads_tokens`` says
    whether ``x`` holds token ids (a language task) rather than features.
    """

    reads_tokens: bool = False

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
        if member_parametrizations is None:
            member_parametrizations = [parametrization] * len(self.seeds)
        if len(member_parametrizations) != len(self.seeds):
            raise InputError(
                f"member_parametrizations has {len(member_parametrizations)} entries; "
                f"expected one per seed ({len(self.seeds)})"
            )
        self.member_parametrizations = list(member_parametrizations)
        self.act = ACTIVATIONS[activation]
        self.bias = bias
        self.specs: list[TensorSpec] = []
        self.forward_mults: dict[str, Scale] = {}
        self.shape_only = shape_only
        self._generators = [torch.Generator().manual_seed(s) for s in self.seeds]

    @property
    def members(self) -> int:
        return len(self.seeds)

    def _add(
        self,
        name: str,
        role: Role,
        kind: Kind,
        fan_in: int,
        fan_out: int,
        *,
        base_fan_in: int | None = None,
        in_block: bool = False,
        query: bool = False,
    ) -> nn.Parameter:
        """Register one tensor; weights are ``(fan_in, fan_out)``, vectors ``(fan_out,)``.

        ``query`` marks an attention query projection (zero at init when the
        parametrization's ``query_zero_init`` is set)."""
        shape = (fan_in, fan_out) if kind is Kind.WEIGHT else (fan_out,)
        spec = TensorSpec(
            name=name,
            role=role,
            kind=kind,
            shape=shape,
            fan_in=fan_in,
            fan_out=fan_out,
            base_fan_in=fan_in if base_fan_in is None else base_fan_in,
            in_block=in_block,
            query=query,
        )
        forward, std = self._forward_and_init(spec)
        if self.shape_only:
            value = torch.empty((self.members, *shape), device="meta")
        elif kind is Kind.WEIGHT:
            # One generator per member, drawn in registration order: a member's
            # init depends on its seed only, whatever else is in the ensemble.
            draws = [torch.randn(shape, generator=g) for g in self._generators]
            value = torch.stack(draws) * std
        elif kind is Kind.GAIN:
            value = torch.ones((self.members, *shape))
        else:
            value = torch.zeros((self.members, *shape))
        param = nn.Parameter(value)
        self.register_parameter(name.replace(".", "_"), param)
        self.specs.append(spec)
        self.forward_mults[name] = forward
        return param

    def _forward_and_init(self, spec: TensorSpec) -> tuple[Scale, Scale]:
        """Forward multiplier and init std of ``spec``, each a float when all members agree
        (the fast scalar path) and else a ``(members, 1, 1)`` tensor, one value per member."""
        pairs = [forward_and_init(spec, p, width=self.width) for p in self.member_parametrizations]
        return per_member([f for f, _ in pairs]), per_member([s for _, s in pairs])

    def _linear(self, h: torch.Tensor, name: str, weight: torch.Tensor, bias) -> torch.Tensor:
        """``forward_mult * (h @ W) + b`` for every member at once."""
        mult = self.forward_mults[name]
        if isinstance(mult, torch.Tensor):
            out = torch.bmm(h, weight) * mult.to(h.device)
            return out if bias is None else out + bias.unsqueeze(1)
        if bias is None:
            out = torch.bmm(h, weight)
            return out if mult == 1.0 else out * mult
        return torch.baddbmm(bias.unsqueeze(1), h, weight, alpha=mult)

    def _layer(
        self,
        name: str,
        role: Role,
        fan_in: int,
        fan_out: int,
        base_fan_in: int,
        *,
        in_block: bool = False,
    ):
        """A linear map: ``name.weight`` with ``role`` and, if ``bias``, ``name.bias`` (role
        ``fixed`` after the readout, ``vector`` elsewhere). Returns ``(name, weight, bias)``."""
        weight = self._add(
            f"{name}.weight", role, Kind.WEIGHT, fan_in, fan_out,
            base_fan_in=base_fan_in, in_block=in_block,
        )  # fmt: skip
        bias = None
        if self.bias:
            bias_role = Role.FIXED if role is Role.OUTPUT else Role.VECTOR
            bias = self._add(
                f"{name}.bias", bias_role, Kind.BIAS, fan_in, fan_out, in_block=in_block
            )
        return name, weight, bias

    def named_tensors(self) -> list[tuple[TensorSpec, nn.Parameter]]:
        """``(spec, parameter)`` pairs in registration order."""
        params = dict(self.named_parameters())
        return [(s, params[s.name.replace(".", "_")]) for s in self.specs]

    def parameter_count(self, kind: Kind | None = None) -> int:
        """Parameters of one member (of one ``kind``, e.g. ``Kind.WEIGHT`` for matrices)."""
        return sum(math.prod(s.shape) for s in self.specs if kind is None or s.kind is kind)

    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """A copy of one member's tensors, keyed by tensor name."""
        return {s.name: p[member].detach().clone() for s, p in self.named_tensors()}


class MLP(EnsembleModel):
    """A batched MLP with ``depth`` hidden layers of ``width`` units.

    Tensors: ``input`` (``d_in -> width``), ``hidden{i}`` (``width -> width``,
    ``depth - 1`` of them), ``readout`` (``width -> d_out``), each with a bias
    if ``bias``. Captured layers are the pre-activations of each linear map and
    the readout's logits.
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
        activation: str = "relu",
        bias: bool = True,
        member_parametrizations: Sequence[Parametrization] | None = None,
        shape_only: bool = False,
    ) -> None:
        super().__init__(
            d_in=d_in,
            d_out=d_out,
            width=width,
            depth=depth,
            parametrization=parametrization,
            seeds=seeds,
            activation=activation,
            bias=bias,
            member_parametrizations=member_parametrizations,
            shape_only=shape_only,
        )
        n0 = parametrization.base_width
        self.layers: list[tuple[str, nn.Parameter, nn.Parameter | None]] = []
        self.layers.append(self._layer("input", Role.INPUT, d_in, width, d_in))
        for i in range(1, depth):
            self.layers.append(self._layer(f"hidden{i}", Role.HIDDEN, width, width, n0))
        self.layers.append(self._layer("readout", Role.OUTPUT, width, d_out, n0))

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        h = x
        last = len(self.layers) - 1
        for i, (name, weight, bias) in enumerate(self.layers):
            h = self._linear(h, f"{name}.weight", weight, bias)
            if capture is not None:
                capture[name] = h
            if i < last:
                h = self.act(h)
        return h


class ResidualMLP(EnsembleModel):
    """A batched residual MLP: embedding, ``depth`` blocks, (norm), readout.

    Block ``l``: ``x <- x + mL**-alpha * W2 act(W1 norm(x))`` with the branch
    multiplier from the parametrization's depth rule (Tensor Programs VI;
    CompleteP). ``prenorm`` adds a LayerNorm with a gain (no shift) before each
    block and before the readout. Captured layers: ``embed``, each block's
    ``block{l}.fc1``/``block{l}.fc2`` pre-activations, the residual stream
    after each block ``block{l}``, and the readout's logits.
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
        activation: str = "relu",
        bias: bool = True,
        prenorm: bool = True,
        member_parametrizations: Sequence[Parametrization] | None = None,
        shape_only: bool = False,
    ) -> None:
        super().__init__(
            d_in=d_in,
            d_out=d_out,
            width=width,
            depth=depth,
            parametrization=parametrization,
            seeds=seeds,
            activation=activation,
            bias=bias,
            member_parametrizations=member_parametrizations,
            shape_only=shape_only,
        )
        n0 = parametrization.base_width
        self.prenorm = prenorm
        self.branch_mult = branch_multiplier(parametrization, depth)
        self.embed = self._layer("embed", Role.INPUT, d_in, width, d_in, in_block=False)
        self.blocks = []
        for layer in range(1, depth + 1):
            prefix = f"block{layer}"
            gain = None
            if prenorm:
                gain = self._add(
                    f"{prefix}.norm.gain", Role.VECTOR, Kind.GAIN, width, width, in_block=True
                )
            fc1 = self._layer(f"{prefix}.fc1", Role.HIDDEN, width, width, n0, in_block=True)
            fc2 = self._layer(f"{prefix}.fc2", Role.HIDDEN, width, width, n0, in_block=True)
            self.blocks.append((prefix, gain, fc1, fc2))
        self.final_gain = None
        if prenorm:
            self.final_gain = self._add("final_norm.gain", Role.VECTOR, Kind.GAIN, width, width)
        self.readout = self._layer("readout", Role.OUTPUT, width, d_out, n0, in_block=False)

    def _norm(self, x: torch.Tensor, gain: torch.Tensor | None) -> torch.Tensor:
        if gain is None:
            return x
        return F.layer_norm(x, (self.width,)) * gain.unsqueeze(1)

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        name, weight, bias = self.embed
        h = self._linear(x, f"{name}.weight", weight, bias)
        if capture is not None:
            capture[name] = h
        for prefix, gain, (n1, w1, b1), (n2, w2, b2) in self.blocks:
            u = self._linear(self._norm(h, gain), f"{n1}.weight", w1, b1)
            v = self._linear(self.act(u), f"{n2}.weight", w2, b2)
            h = h + v if self.branch_mult == 1.0 else h + self.branch_mult * v
            if capture is not None:
                capture[n1], capture[n2], capture[prefix] = u, v, h
        name, weight, bias = self.readout
        out = self._linear(self._norm(h, self.final_gain), f"{name}.weight", weight, bias)
        if capture is not None:
            capture[name] = out
        return out


MODELS: dict[str, type[EnsembleModel]] = {"mlp": MLP, "resmlp": ResidualMLP}
"""Model classes by the name used in configs and on the command line."""

# The Transformer has its own module and adds itself to MODELS when imported.
import toolkit.engine.transformer  # noqa: E402, F401
