"""A batched decoder-only Transformer for character-level language modelling.

A pre-norm GPT (Radford et al. 2019; the layout of Karpathy's nanoGPT) with a
leading member axis on every tensor. For token ids ``x`` of shape
``(members, batch, T)`` and width ``n`` (``d_model``)::

    h_0    = input_alpha * (E_tok[x] + E_pos[0:T])                  (members, batch, T, n)
    h_l'   = h_{l-1} + b * Attn_l(LN(h_{l-1}))                      b = mL ** -alpha
    h_l    = h_l'    + b * MLP_l(LN(h_l'))                          l = 1..depth
    logits = output_mult * LN(h_depth) @ W_out + c                  (members, batch, T, V)

    Attn(u) = concat_heads(softmax(causal(s * q k^T)) v) W_o,   q, k, v = u W_q, u W_k, u W_v
    MLP(u)  = act(u W_1) W_2,                                   W_1: n -> 4n, W_2: 4n -> n

``LN`` is a LayerNorm with a per-member gain (and shift, with ``bias``); ``b``
is the parametrization's residual-branch multiplier (Tensor Programs VI;
CompleteP).

**Heads.** By default the head dimension ``d_head`` is fixed (``head_dim``,
default 16) and the number of heads ``H = n / d_head`` grows with width
(Tensor Programs V, appendix E.2); with ``heads`` set, ``H`` is fixed and
``d_head = n / H`` grows (as in nanoGPT-mup). The attention logits are
``s q.k`` with ``s = attn_alpha / sqrt(d0) * (d0 / d_head) ** e``, ``d0`` the
base head dimension (``base_width / heads``, else ``base_head_dim``, else
``head_dim``) and ``e`` the parametrization's
:data:`~toolkit.engine.rules.ATTENTION_EXPONENTS` entry: ``1/sqrt(d_head)``
under SP and NTK, muP's ``attn_alpha * sqrt(d0) / d_head`` under muP and
mean-field (Tensor Programs V, appendix J.2.1), which is SP's scale whenever
``d_head = d0``.

**Roles.** Token and position embeddings are ``input`` (a lookup reads one row,
so its effective fan-in is 1 and rows start at std ``init_sigma``, as
``torch.nn.Embedding``); the query, key, value, output and MLP matrices are
``hidden``; the readout is ``output``; norm gains, norm shifts and linear
biases are ``vector``; the readout bias is ``fixed``. Everything between the
embeddings and the final norm sits in a block (depth rules apply to it).
Queries are marked so that ``query_zero_init`` zeroes them.

**Tied embeddings** (``tie_embeddings=True``) read out with the token
embedding: ``logits = output_mult * LN(h) @ E_tok^T``. The shared tensor keeps
its ``input`` role (the ``mup`` package treats a shared readout the same way)
while the readout keeps its output multiplier ``alpha_out / m``; it cannot be
zero-initialised.

The model is composed like nanoGPT's: an :class:`~toolkit.engine.layers.EnsembleEmbedding`
``embed``, blocks ``block{l}`` of ``attn_norm``, ``attn`` (``query``, ``key``, ``value``,
``out``), ``mlp_norm`` and ``mlp`` (``fc1``, ``fc2``), then ``final_norm`` and ``readout``;
each tensor's name is its dotted path (``block1.attn.query.weight``).

Captured layers (``forward(x, capture=dict)``): ``embed`` (``h_0``), and per
block ``block{l}.attn.logits`` (``s q k^T`` at the causal positions, shape
``(members, batch, H, T (T + 1) / 2)``), ``block{l}.attn`` (the attention
branch), ``block{l}.mlp.fc1`` (pre-activation), ``block{l}.mlp.fc2`` (the MLP
branch), ``block{l}`` (the residual stream after the block), then
``readout`` (the logits). Token-wise layers are ``(members, batch * T,
features)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.engine.layers import (
    EnsembleEmbedding,
    EnsembleLayerNorm,
    EnsembleLinear,
    EnsembleModel,
    TensorFactory,
)
from toolkit.engine.parametrization import Role, branch_multiplier
from toolkit.engine.rules import ATTENTION_EXPONENTS
from toolkit.errors import InputError, check_positive

MLP_RATIO = 4
"""Hidden size of each block's MLP, in multiples of the width."""


class Attention(nn.Module):
    """Causal multi-head self-attention with logits ``s q.k`` (``s``: the module docstring).

    A forward that records nothing (training, evaluation) runs through PyTorch's fused
    ``scaled_dot_product_attention`` (causal, scale ``s``; about 2x faster forward and
    backward than the explicit product at width 128 on a CPU); a capturing forward forms
    ``s q k^T`` explicitly so that it can record the logits. Both compute the same
    function, up to rounding in the last digits. The fused kernel has no second
    derivative: build graphs to differentiate twice inside
    :func:`toolkit.engine.hessian.twice_differentiable`.
    """

    def __init__(self, name: str, make: TensorFactory, width: int, base_width: int, *,
                 heads: int, scale: float, bias: bool) -> None:  # fmt: skip
        super().__init__()
        self.heads, self.d_head, self.scale = heads, width // heads, scale
        for part in ("query", "key", "value", "out"):
            layer = EnsembleLinear(f"{name}.{part}", make, Role.HIDDEN, width, width,
                                   base_fan_in=base_width, bias=bias, in_block=True,
                                   query=part == "query")  # fmt: skip
            self.add_module(part, layer)

    def forward(self, u: torch.Tensor, batch: int, capture: dict | None, prefix: str):
        """``u`` ``(members, batch * T, n)`` -> the attention branch, same shape."""
        members, tokens, width = u.shape
        length = tokens // batch

        def split(t: torch.Tensor) -> torch.Tensor:  # -> (members, batch, heads, T, d_head)
            return t.view(members, batch, length, self.heads, self.d_head).transpose(2, 3)

        q, k, v = split(self.query(u)), split(self.key(u)), split(self.value(u))
        if capture is None:
            heads = [t.flatten(0, 1) for t in (q, k, v)]  # (members * batch, heads, T, d)
            mixed = F.scaled_dot_product_attention(*heads, is_causal=True, scale=self.scale)
            mixed = mixed.view(members, batch, self.heads, length, self.d_head)
        else:
            logits = torch.matmul(q * self.scale, k.transpose(-1, -2))
            causal = torch.ones(length, length, dtype=torch.bool, device=u.device).tril()
            capture[f"{prefix}.attn.logits"] = logits[..., causal]
            weights = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
            mixed = torch.matmul(weights, v)
        return self.out(mixed.transpose(2, 3).reshape(members, tokens, width))


class FeedForward(nn.Module):
    """``act(u W_1) W_2`` with ``W_1: n -> 4n``, ``W_2: 4n -> n``; the activation is the model's."""

    def __init__(self, name: str, make: TensorFactory, width: int, base_width: int, *,
                 bias: bool) -> None:  # fmt: skip
        super().__init__()
        hidden, base_hidden = MLP_RATIO * width, MLP_RATIO * base_width
        self.fc1 = EnsembleLinear(f"{name}.fc1", make, Role.HIDDEN, width, hidden,
                                  base_fan_in=base_width, bias=bias, in_block=True)  # fmt: skip
        self.fc2 = EnsembleLinear(f"{name}.fc2", make, Role.HIDDEN, hidden, width,
                                  base_fan_in=base_hidden, bias=bias, in_block=True)  # fmt: skip


class Block(nn.Module):
    """``h + b Attn(LN(h))``, then ``+ b MLP(LN(.))``: one pre-norm Transformer block."""

    def __init__(self, name: str, model: Transformer) -> None:
        super().__init__()
        n, n0, make, bias = model.width, model.parametrization.base_width, model.factory, model.bias
        self.attn_norm = EnsembleLayerNorm(f"{name}.attn_norm", make, n, shift=bias, in_block=True)
        self.attn = Attention(f"{name}.attn", make, n, n0, heads=model.heads,
                              scale=model.attn_scale, bias=bias)  # fmt: skip
        self.mlp_norm = EnsembleLayerNorm(f"{name}.mlp_norm", make, n, shift=bias, in_block=True)
        self.mlp = FeedForward(f"{name}.mlp", make, n, n0, bias=bias)


class Transformer(EnsembleModel):
    """A batched pre-norm decoder-only Transformer (see the module docstring).

    Args:
        d_in: context length ``T``: the number of positions embedded.
        d_out: vocabulary size ``V``.
        width: ``d_model``, a multiple of ``head_dim``.
        depth: number of blocks.
        head_dim: ``d_head``, the same at every width; ``width`` must be a multiple.
        heads: a fixed number of heads instead (``d_head = width / heads`` grows).
        base_head_dim: ``d0`` of the logit scale when ``heads`` is not set (default
            ``head_dim``).
        tie_embeddings: read out with the token embedding.
        activation, bias: the MLP nonlinearity; whether linear maps and norms
            have biases / shifts.
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        bias: bool = True,
        head_dim: int = 16,
        tie_embeddings: bool = False,
        heads: int | None = None,
        base_head_dim: int | None = None,
        **common: Any,
    ) -> None:
        """``common``: the arguments of :class:`~toolkit.engine.layers.EnsembleModel`."""
        super().__init__(activation=activation, bias=bias, **common)
        d_in, d_out, width, depth = self.d_in, self.d_out, self.width, self.depth
        parametrization = self.parametrization
        base_width = parametrization.base_width
        if heads is not None:
            check_positive("heads", heads, integer=True)
            if width % heads or base_width % heads:
                raise InputError(
                    f"width={width} and base_width={base_width} must be multiples of "
                    f"heads={heads}: the heads split the width into equal parts"
                )
            head_dim, base_head_dim = width // heads, base_width // heads
        check_positive("head_dim", head_dim, integer=True)
        if width % head_dim:
            raise InputError(
                f"width={width} is not a multiple of head_dim={head_dim}: the heads split "
                "the width into equal parts"
            )
        if tie_embeddings and parametrization.readout_zero_init:
            raise InputError(
                "tie_embeddings=True reads out with the token embedding, which cannot be "
                "zero-initialised: set readout_zero_init=False or tie_embeddings=False"
            )
        make = self.factory
        self.heads, self.d_head = width // head_dim, head_dim
        self.tie_embeddings = tie_embeddings
        self.branch_mult = branch_multiplier(parametrization, depth)
        d0 = head_dim if base_head_dim is None else base_head_dim
        exponent = ATTENTION_EXPONENTS[parametrization.name]
        self.base_head_dim = d0
        self.attn_scale = parametrization.attn_alpha / math.sqrt(d0) * (d0 / head_dim) ** exponent
        self.embed = EnsembleEmbedding("embed", make, vocab=d_out, context=d_in, width=width)
        self.blocks = [Block(f"block{i}", self) for i in range(1, depth + 1)]
        for i, block in enumerate(self.blocks, start=1):
            self.add_module(f"block{i}", block)
        self.final_norm = EnsembleLayerNorm("final_norm", make, width, shift=bias, in_block=False)
        # A tied readout has no weight of its own but the multiplier a readout weight would get.
        self.readout = EnsembleLinear("readout", make, Role.OUTPUT, width, d_out,
                                      base_fan_in=parametrization.base_width, bias=bias,
                                      weight=not tie_embeddings)  # fmt: skip

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        """Next-token logits ``(members, batch, T, V)`` for token ids ``(members, batch, T)``."""
        members, batch, length = x.shape
        h = self.embed(x)
        if capture is not None:
            capture["embed"] = h
        b = self.branch_mult
        for layer, block in enumerate(self.blocks, start=1):
            prefix = f"block{layer}"
            a = block.attn(block.attn_norm(h), batch, capture, prefix)
            h = h + a if b == 1.0 else h + b * a
            u = block.mlp.fc1(block.mlp_norm(h))
            f = block.mlp.fc2(self.act(u))
            h = h + f if b == 1.0 else h + b * f
            if capture is not None:
                capture[f"{prefix}.attn"] = a
                capture[f"{prefix}.mlp.fc1"], capture[f"{prefix}.mlp.fc2"] = u, f
                capture[prefix] = h
        tied = self.embed.token.transpose(1, 2) if self.tie_embeddings else None
        out = self.readout(self.final_norm(h), tied)
        out = out.view(members, batch, length, self.d_out)
        if capture is not None:
            capture["readout"] = out
        return out
