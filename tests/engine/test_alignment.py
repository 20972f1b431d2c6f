"""Claims about the alignment probe: ``||x dW|| / (||dW||_2 ||x||)`` on hand-made updates,
and its rows from a real training loop."""

from __future__ import annotations

import polars as pl
import pytest
import torch

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.probe_runner import ProbeRunner
from toolkit.engine.probes import PROBE_FUNCTIONS, alignment_stats
from toolkit.engine.spectra import alignment
from toolkit.engine.train import Member, TrainConfig, build_model, train


def _update(fan_in: int = 6, fan_out: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, fan_in, fan_out)`` update with singular values 3, 1, 0.5 and the orthonormal
    input-side directions ``u`` ``(fan_in, fan_in)``: ``u[:, 0]`` the top, ``u[:, 3:]`` its
    null space."""
    generator = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(fan_in, fan_in, generator=generator, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(fan_out, fan_out, generator=generator, dtype=torch.float64)).Q
    sigma = torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    return (u[:, :3] * sigma) @ v[:, :3].T, u


def test_alignment_is_one_along_the_top_direction_and_zero_in_the_null_space():
    update, u = _update()
    top = torch.stack([u[:, 0], -2.5 * u[:, 0]]).unsqueeze(0)
    assert alignment(update.unsqueeze(0), top).item() == pytest.approx(1.0, rel=1e-12)
    null = torch.stack([u[:, 3], u[:, 4] + u[:, 5]]).unsqueeze(0)
    assert alignment(update.unsqueeze(0), null).item() == pytest.approx(0.0, abs=1e-12)
    second = u[:, 1].view(1, 1, -1)
    assert alignment(update.unsqueeze(0), second).item() == pytest.approx(1 / 3, rel=1e-12)
    mixed = torch.stack([u[:, 0], u[:, 3], torch.zeros(6, dtype=torch.float64)]).unsqueeze(0)
    assert alignment(update.unsqueeze(0), mixed).item() == pytest.approx(0.5, rel=1e-12)
    assert alignment(torch.zeros(1, 6, 5), top).isnan().all()


def test_alignment_rows_come_from_a_real_training_loop():
    config = TrainConfig(task="digits", parametrization=Parametrization("mup", base_width=8),
                         width=16, depth=3, steps=6, batch_size=32, eval_every=3,
                         optimizer="adam")  # fmt: skip
    members = [Member(lr=0.01, seed=0), Member(lr=0.05, seed=1)]
    task = load_task("digits")
    records = train(config, members, task=task, probes=[alignment_stats],
                    probe_steps=[0, 1, 6])  # fmt: skip
    assert PROBE_FUNCTIONS["alignment"] is alignment_stats
    rows = records.probes
    assert set(rows["step"]) == {1, 6}
    assert set(rows["layer"]) == {"input", "hidden1", "hidden2", "readout"}
    assert set(rows["role"]) == {"input", "hidden", "output"}
    assert rows.height == 2 * 2 * 4 * 2  # steps, stats, layers, members
    assert rows["value"].is_between(0.0, 1.0 + 1e-9).all()
    wide = rows.pivot(on="stat", index=["run_id", "step", "layer"], values="value")
    first = wide.filter(pl.col("step") == 1)
    assert first["update_alignment"].to_list() == pytest.approx(first["delta_alignment"].to_list())
    later = wide.filter(pl.col("step") == 6)
    assert (later["update_alignment"] - later["delta_alignment"]).abs().max() > 1e-3


def test_a_layers_input_is_the_previous_layers_activated_output():
    task = load_task("digits")
    config = TrainConfig(task="digits", parametrization=Parametrization("sp"), width=16, depth=2)
    model = build_model(config, task.d_in, task.d_out, seeds=[0, 1])
    runner = ProbeRunner([alignment_stats], [0], model=model, task=task, batch_size=8,
                         last_step=1, run_ids=["a", "b"])  # fmt: skip
    inputs, outputs = runner.context.inputs(), runner.context.activations()
    assert torch.equal(inputs["input"], runner.context.x)
    assert torch.equal(inputs["hidden1"], torch.relu(outputs["input"]))
    assert torch.equal(inputs["readout"], torch.relu(outputs["hidden1"]))
