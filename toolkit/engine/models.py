"""Batched ("ensemble") tiny models: N same-shape models in one object.

Every parameter carries a leading member axis, so a forward pass over ``x`` of shape
``(members, batch, d_in)`` is a handful of batched matrix multiplies and returns
``(members, batch, d_out)``. Members differ in their seeds (init and data order), in
their multipliers ``init_sigma``, ``input_alpha``, ``output_alpha`` and, in the optimizer,
in LR and weight decay.

Models are composed of the layers of :mod:`toolkit.engine.layers`, which own each tensor's
role, initialisation and forward multiplier (from the parametrization,
:mod:`toolkit.engine.parametrization`). :data:`MODEL_CLASSES` is the one registry of model
classes, keyed by the names of :data:`toolkit.engine.catalogue.MODELS`, which holds what is
known about each model without torch (its options, whether it reads tokens, the settings only
its runs record).
"""

from __future__ import annotations

from typing import Any

import torch

from toolkit.engine.catalogue import MODELS, check_registry
from toolkit.engine.layers import EnsembleLayerNorm, EnsembleLinear, EnsembleModel
from toolkit.engine.parametrization import Role, branch_multiplier
from toolkit.engine.transformer import Transformer


class MLP(EnsembleModel):
    """A batched MLP with ``depth`` hidden layers of ``width`` units.

    Layers: ``input`` (``d_in -> width``), ``hidden{i}`` (``width -> width``, ``depth - 1``
    of them), ``readout`` (``width -> d_out``), each with a bias if ``bias``. Captured
    layers are the pre-activations of each linear map and the readout's logits.
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        bias: bool = True,
        **common: Any,
    ) -> None:
        """``common``: the arguments of :class:`~toolkit.engine.layers.EnsembleModel`."""
        super().__init__(activation=activation, bias=bias, **common)
        d_in, d_out, width, depth = self.d_in, self.d_out, self.width, self.depth
        parametrization = self.parametrization
        n0, make = parametrization.base_width, self.factory
        self.input = EnsembleLinear("input", make, Role.INPUT, d_in, width, bias=bias)
        for i in range(1, depth):
            layer = EnsembleLinear(f"hidden{i}", make, Role.HIDDEN, width, width,
                                   base_fan_in=n0, bias=bias)  # fmt: skip
            self.add_module(f"hidden{i}", layer)
        self.readout = EnsembleLinear("readout", make, Role.OUTPUT, width, d_out,
                                      base_fan_in=n0, bias=bias)  # fmt: skip

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        h = x
        for name, layer in self.named_children():
            if name != "input":
                h = self.act(h)
            h = layer(h)
            if capture is not None:
                capture[name] = h
        return h


class ResidualBlock(torch.nn.Module):
    """``x + b * fc2(act(fc1(norm(x))))``, ``b`` the branch multiplier (:class:`ResidualMLP`)."""

    def __init__(self, name: str, model: EnsembleModel, prenorm: bool) -> None:
        super().__init__()
        n, n0, make = model.width, model.parametrization.base_width, model.factory
        self.norm = None
        if prenorm:
            self.norm = EnsembleLayerNorm(f"{name}.norm", make, n, shift=False, in_block=True)
        self.fc1, self.fc2 = (
            EnsembleLinear(
                f"{name}.{fc}",
                make,
                Role.HIDDEN,
                n,
                n,
                base_fan_in=n0,
                bias=model.bias,
                in_block=True,
            )  # fmt: skip
            for fc in ("fc1", "fc2")
        )


class ResidualMLP(EnsembleModel):
    """A batched residual MLP: embedding, ``depth`` blocks, (norm), readout.

    Block ``l``: ``x <- x + mL**-alpha * W2 act(W1 norm(x))`` with the branch multiplier
    from the parametrization's depth rule (Tensor Programs VI; CompleteP). ``prenorm`` adds
    a LayerNorm with a gain (no shift) before each block and before the readout. Captured
    layers: ``embed``, each block's ``block{l}.fc1``/``block{l}.fc2`` pre-activations, the
    residual stream after each block ``block{l}``, and the readout's logits.
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        bias: bool = True,
        prenorm: bool = True,
        **common: Any,
    ) -> None:
        """``common``: the arguments of :class:`~toolkit.engine.layers.EnsembleModel`."""
        super().__init__(activation=activation, bias=bias, **common)
        d_in, d_out, width, depth = self.d_in, self.d_out, self.width, self.depth
        parametrization = self.parametrization
        n0, make = parametrization.base_width, self.factory
        self.prenorm = prenorm
        self.branch_mult = branch_multiplier(parametrization, depth)
        self.embed = EnsembleLinear("embed", make, Role.INPUT, d_in, width, bias=bias)
        self.blocks = [ResidualBlock(f"block{i}", self, prenorm) for i in range(1, depth + 1)]
        for i, block in enumerate(self.blocks, start=1):
            self.add_module(f"block{i}", block)
        self.final_norm = None
        if prenorm:
            self.final_norm = EnsembleLayerNorm("final_norm", make, width, shift=False,
                                                in_block=False)  # fmt: skip
        self.readout = EnsembleLinear("readout", make, Role.OUTPUT, width, d_out,
                                      base_fan_in=n0, bias=bias)  # fmt: skip

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        h = self.embed(x)
        if capture is not None:
            capture["embed"] = h
        b = self.branch_mult
        for layer, block in enumerate(self.blocks, start=1):
            u = block.fc1(h if block.norm is None else block.norm(h))
            v = block.fc2(self.act(u))
            h = h + v if b == 1.0 else h + b * v
            if capture is not None:
                prefix = f"block{layer}"
                capture[f"{prefix}.fc1"], capture[f"{prefix}.fc2"], capture[prefix] = u, v, h
        out = self.readout(h if self.final_norm is None else self.final_norm(h))
        if capture is not None:
            capture["readout"] = out
        return out


MODEL_CLASSES: dict[str, type[EnsembleModel]] = {
    "mlp": MLP,
    "resmlp": ResidualMLP,
    "transformer": Transformer,
}
"""Model classes by their name in :data:`toolkit.engine.catalogue.MODELS`, whose entry
holds each model's options, whether it reads tokens and the settings only it records."""
check_registry("models", MODEL_CLASSES, MODELS)
