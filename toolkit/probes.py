"""Probes: small functions that read an ensemble's state and return tidy rows.

A probe is called by the training loop with a
:class:`toolkit.train.ProbeContext` and returns a list of dicts with keys
``member``, ``layer``, ``role``, ``stat`` and ``value``.
"""

from __future__ import annotations

from toolkit.train import ProbeContext

#: The layers an MLP or residual MLP captures, by role. A residual stream
#: (``block{l}``) is a sum of width-sized vectors and counts as ``hidden``.
_OUTPUT_LAYERS = {"readout"}
_INPUT_LAYERS = {"input", "embed"}


def layer_role(layer: str) -> str:
    """Role of a captured layer's output: ``input``, ``hidden`` or ``output``."""
    if layer in _OUTPUT_LAYERS:
        return "output"
    if layer in _INPUT_LAYERS:
        return "input"
    return "hidden"


def activation_stats(ctx: ProbeContext) -> list[dict]:
    """Per member and layer: ``l1`` (mean |activation|) and ``rms`` on the probe batch.

    These are the coordinate sizes of the coordinate check (Yang et al. 2021,
    "Tensor Programs V", section 7.1; ``mup.coord_check``).
    """
    rows = []
    for layer, h in ctx.activations().items():
        flat = h.flatten(1)
        l1 = flat.abs().mean(1).tolist()
        rms = flat.pow(2).mean(1).sqrt().tolist()
        role = layer_role(layer)
        for member, (a, r) in enumerate(zip(l1, rms, strict=True)):
            rows.append({"member": member, "layer": layer, "role": role, "stat": "l1", "value": a})
            rows.append({"member": member, "layer": layer, "role": role, "stat": "rms", "value": r})
    return rows
