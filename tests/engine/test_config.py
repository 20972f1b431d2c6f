"""Claims about the group settings: the LR schedule and the records run ids hash."""

from __future__ import annotations

import math

import pytest

from toolkit.engine.config import lr_factor
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig


def test_the_schedule_warms_up_linearly_then_decays_to_zero():
    factors = [lr_factor(s, steps=10, schedule="linear", warmup_steps=2) for s in range(10)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0
    assert factors[-1] == pytest.approx(1 / 8)
    cosine = lr_factor(6, steps=10, schedule="cosine", warmup_steps=2)
    assert cosine == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_factor(9, steps=10, schedule="constant") == 1.0


def test_model_options_come_from_the_registry_not_from_branches():
    assert TrainConfig(model="resmlp", prenorm=False).model_kwargs() == {
        "activation": "relu", "bias": True, "prenorm": False,
    }  # fmt: skip
    assert TrainConfig(model="mlp").model_kwargs() == {"activation": "relu", "bias": True}
    kwargs = TrainConfig(model="transformer", head_dim=8).model_kwargs()
    assert kwargs["head_dim"] == 8 and "prenorm" not in kwargs
    assert "prenorm" in TrainConfig().record()  # recorded for every model, as run ids always had


def test_new_settings_are_recorded_only_when_set_and_only_for_their_optimizer():
    """So run ids of runs made before the settings existed stay the same."""
    plain = TrainConfig(optimizer="adam").record()
    for name in ("nesterov", "muon_scaling", "adam_lr", "adam_lr_ratio", "eps_rule",
                 "weight_decay_exclude", "independent_weight_decay"):  # fmt: skip
        assert name not in plain
    muon = TrainConfig(optimizer="muon", adam_lr_ratio=0.1, muon_scaling="spectral").record()
    assert muon["adam_lr_ratio"] == 0.1 and muon["muon_scaling"] == "spectral"
    assert "muon_scaling" not in TrainConfig(optimizer="adam", muon_scaling="spectral").record()
    eps = TrainConfig(parametrization=Parametrization("mf", eps_rule="constant")).record()
    assert eps["eps_rule"] == "constant"
