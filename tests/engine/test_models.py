"""Claims about the models: composed of layers, one registry, parameters named as specs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from toolkit.engine.catalogue import MODELS
from toolkit.engine.models import MODEL_CLASSES
from toolkit.engine.parametrization import Parametrization


def _model(name: str, **kwargs):
    param = Parametrization("mup", base_width=16)
    return MODEL_CLASSES[name](d_in=8, d_out=10, width=32, depth=2, seeds=[0, 1],
                               parametrization=param, **kwargs)  # fmt: skip


def _input(name: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if MODELS[name].reads_tokens:
        return torch.randint(0, 10, (2, 3, 8), generator=generator)
    return torch.randn(2, 3, 8, generator=generator)


CASES = [("mlp", {}), ("resmlp", {}), ("resmlp", {"prenorm": False}), ("transformer", {}),
         ("transformer", {"tie_embeddings": True, "bias": False})]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_parameter_names_are_spec_names_in_creation_order(name, kwargs):
    model = _model(name, **kwargs)
    assert list(dict(model.named_parameters())) == [spec.name for spec in model.specs]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_functional_call_runs_every_model_on_other_tensors(name, kwargs):
    model, x = _model(name, **kwargs), _input(name)
    doubled = {n: 2 * p.detach() for n, p in model.named_parameters()}
    got = torch.func.functional_call(model, doubled, (x,))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
        expected = model(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_the_registry_imports_without_a_cycle():
    for module in ("toolkit.engine.transformer", "toolkit.engine.models"):
        code = f"import {module}; import sys; print('toolkit.engine.train' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        assert out.strip() == "False"
    assert set(MODEL_CLASSES) == set(MODELS) == {"mlp", "resmlp", "transformer"}
