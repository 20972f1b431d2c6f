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

**Heads.** The head dimension ``d_head`` is fixed (default 16) and the number
of heads ``H = n / d_head`` grows with width (Tensor Programs V, appendix E.2).
The attention logits are ``s q.k`` with ``s = attn_alpha / sqrt(d_head)`` under
every parametrization. muP's rule ``attn_alpha / d_head`` is about a growing
``d_head``; in the form that equals SP at the base shape,
``attn_alpha * sqrt(d_head0) / d_head`` (Tensor Programs V, appendix J.2.1), it
is ``attn_alpha / sqrt(d_head)`` whenever ``d_head = d_head0``, i.e. at every
width here: the logits stay O(1) under muP because queries and keys keep O(1)
coordinates over a fixed number of them.

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
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from toolkit.engine.models import MODELS, EnsembleModel
from toolkit.engine.parametrization import (
    Kind,
    Parametrization,
    Role,
    TensorSpec,
    branch_multiplier,
)
from toolkit.errors import InputError, check_positive

MLP_RATIO = 4
"""Hidden size of each block's MLP, in multiples of the width."""


class Transformer(EnsembleModel):
    """A batched pre-norm decoder-only Transformer (see the module docstring).

    Args:
        d_in: context length ``T``: the number of positions embedded.
        d_out: vocabulary size ``V``.
        width: ``d_model``, a multiple of ``head_dim``.
        depth: number of blocks.
        head_dim: ``d_head``, the same at every width; ``width`` must be a multiple.
        tie_embeddings: read out with the token embedding.
        activation, bias: the MLP nonlinearity; whether linear maps and norms
            have biases / shifts.
    """

    reads_tokens = True

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
        head_dim: int = 16,
        tie_embeddings: bool = False,
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
        n0 = parametrization.base_width
        self.heads, self.d_head = width // head_dim, head_dim
        self.tie_embeddings = tie_embeddings
        self.branch_mult = branch_multiplier(parametrization, depth)
        self.attn_scale = parametrization.attn_alpha / math.sqrt(head_dim)
        self.token = self._add("embed.token", Role.INPUT, Kind.WEIGHT, d_out, width, base_fan_in=1)
        self.position = self._add(
            "embed.position", Role.INPUT, Kind.WEIGHT, d_in, width, base_fan_in=1
        )
        self.input_mult = self.forward_mults["embed.token"]  # the same for both: input_alpha
        self.blocks = []
        for layer in range(1, depth + 1):
            p = f"block{layer}"
            hidden = MLP_RATIO * width
            self.blocks.append(
                {
                    "attn_norm": self._norm_params(f"{p}.attn_norm", in_block=True),
                    "query": self._linear_params(f"{p}.attn.query", width, width, n0, query=True),
                    "key": self._linear_params(f"{p}.attn.key", width, width, n0),
                    "value": self._linear_params(f"{p}.attn.value", width, width, n0),
                    "out": self._linear_params(f"{p}.attn.out", width, width, n0),
                    "mlp_norm": self._norm_params(f"{p}.mlp_norm", in_block=True),
                    "fc1": self._linear_params(f"{p}.mlp.fc1", width, hidden, n0),
                    "fc2": self._linear_params(f"{p}.mlp.fc2", hidden, width, MLP_RATIO * n0),
                }
            )
        self.final_norm = self._norm_params("final_norm", in_block=False)
        weight = bias = None
        if tie_embeddings:  # the multiplier a readout tensor would get; no tensor of its own
            readout = TensorSpec("readout.weight", Role.OUTPUT, Kind.WEIGHT, (width, d_out),
                                 width, d_out, n0)  # fmt: skip
            self.readout_mult = self._forward_and_init(readout)[0]
        else:
            weight = self._add(
                "readout.weight", Role.OUTPUT, Kind.WEIGHT, width, d_out, base_fan_in=n0
            )
            self.readout_mult = self.forward_mults["readout.weight"]
        if self.bias:
            bias = self._add("readout.bias", Role.FIXED, Kind.BIAS, width, d_out)
        self.readout = weight, bias

    def _linear_params(self, name: str, fan_in: int, fan_out: int, base_fan_in: int, *,
                       query: bool = False):  # fmt: skip
        """A hidden matrix (and its bias) inside a block: ``(name, weight, bias)``."""
        weight = self._add(f"{name}.weight", Role.HIDDEN, Kind.WEIGHT, fan_in, fan_out,
                           base_fan_in=base_fan_in, in_block=True, query=query)  # fmt: skip
        bias = None
        if self.bias:
            bias = self._add(f"{name}.bias", Role.VECTOR, Kind.BIAS, fan_in, fan_out, in_block=True)
        return name, weight, bias

    def _norm_params(self, name: str, *, in_block: bool):
        """A LayerNorm's gain (and shift, with ``bias``)."""
        n = self.width
        gain = self._add(f"{name}.gain", Role.VECTOR, Kind.GAIN, n, n, in_block=in_block)
        shift = None
        if self.bias:
            shift = self._add(f"{name}.bias", Role.VECTOR, Kind.BIAS, n, n, in_block=in_block)
        return gain, shift

    def _norm(self, h: torch.Tensor, params) -> torch.Tensor:
        gain, shift = params
        out = F.layer_norm(h, (self.width,)) * gain.unsqueeze(1)
        return out if shift is None else out + shift.unsqueeze(1)

    def _project(self, h: torch.Tensor, params) -> torch.Tensor:
        name, weight, bias = params
        return self._linear(h, f"{name}.weight", weight, bias)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``input_alpha * (E_tok[x] + E_pos[t])``, flattened to ``(members, batch * T, n)``."""
        members, batch, length = x.shape
        offsets = torch.arange(members, device=x.device).view(-1, 1, 1) * self.d_out
        table = self.token.reshape(members * self.d_out, self.width)
        h = F.embedding(x + offsets, table) + self.position[:, :length].unsqueeze(1)
        h = h.reshape(members, batch * length, self.width)
        mult = self.input_mult
        if isinstance(mult, torch.Tensor):
            return h * mult.to(h.device)
        return h if mult == 1.0 else h * mult

    def _attention(
        self, u: torch.Tensor, block: dict, batch: int, capture: dict | None, prefix: str
    ) -> torch.Tensor:
        """Causal multi-head self-attention of ``u``, ``(members, batch * T, n)``."""
        members, tokens, _ = u.shape
        length = tokens // batch

        def split(t: torch.Tensor) -> torch.Tensor:  # -> (members, batch, heads, T, d_head)
            return t.view(members, batch, length, self.heads, self.d_head).transpose(2, 3)

        q, k, v = (split(self._project(u, block[name])) for name in ("query", "key", "value"))
        logits = torch.matmul(q * self.attn_scale, k.transpose(-1, -2))
        causal = torch.ones(length, length, dtype=torch.bool, device=u.device).tril()
        if capture is not None:
            capture[f"{prefix}.attn.logits"] = logits[..., causal]
        weights = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        mixed = torch.matmul(weights, v).transpose(2, 3).reshape(members, tokens, self.width)
        return self._project(mixed, block["out"])

    def forward(self, x: torch.Tensor, capture: dict | None = None) -> torch.Tensor:
        """Next-token logits ``(members, batch, T, V)`` for token ids ``(members, batch, T)``."""
        members, batch, length = x.shape
        h = self._embed(x)
        if capture is not None:
            capture["embed"] = h
        b = self.branch_mult
        for layer, block in enumerate(self.blocks, start=1):
            prefix = f"block{layer}"
            a = self._attention(self._norm(h, block["attn_norm"]), block, batch, capture, prefix)
            h = h + a if b == 1.0 else h + b * a
            u = self._project(self._norm(h, block["mlp_norm"]), block["fc1"])
            f = self._project(self.act(u), block["fc2"])
            h = h + f if b == 1.0 else h + b * f
            if capture is not None:
                capture[f"{prefix}.attn"] = a
                capture[f"{prefix}.mlp.fc1"], capture[f"{prefix}.mlp.fc2"] = u, f
                capture[prefix] = h
        z = self._norm(h, self.final_norm)
        weight, bias = self.readout
        if self.tie_embeddings:
            weight = self.token.transpose(1, 2)
        mult = self.readout_mult
        if isinstance(mult, torch.Tensor):
            out = torch.bmm(z, weight) * mult.to(z.device)
            out = out if bias is None else out + bias.unsqueeze(1)
        elif bias is None:
            out = torch.bmm(z, weight)
            out = out if mult == 1.0 else out * mult
        else:
            out = torch.baddbmm(bias.unsqueeze(1), z, weight, alpha=mult)
        out = out.view(members, batch, length, self.d_out)
        if capture is not None:
            capture["readout"] = out
        return out


MODELS["transformer"] = Transformer
