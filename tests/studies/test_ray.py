"""The Ray executor writes the same store as the local one."""

from __future__ import annotations

import polars as pl
import pytest
import ray  # an optional extra of the package; `make test` installs it

from toolkit import store as results
from toolkit.studies.sweep import run_local


@pytest.fixture
def local_ray():
    """A Ray instance on loopback with 2 CPUs, shut down after the test."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_and_local_executors_give_the_same_results(tmp_path, local_ray, two_by_two_spec):
    from toolkit.studies.ray import run_ray

    spec = two_by_two_spec.with_(steps=(30,), eval_every=10)
    run_local(spec, tmp_path / "local", quiet=True)
    work = run_ray(spec, tmp_path / "ray", quiet=True)
    assert len(work.groups) == 4

    columns = ["run_id", "status", "final_train_loss", "final_val_loss", "final_val_accuracy"]
    local, remote = (results.open(tmp_path / d) for d in ("local", "ray"))
    assert (
        local.runs()
        .select(columns)
        .collect()
        .sort("run_id")
        .equals(remote.runs().select(columns).collect().sort("run_id"))
    )
    order = ["run_id", "step", "split", "metric"]
    assert local.curves().collect().sort(order).equals(remote.curves().collect().sort(order))
    assert sorted(p.name for p in local.files("runs")) == sorted(
        p.name for p in remote.files("runs")
    )

    # Resuming through Ray skips everything already there.
    assert run_ray(spec, tmp_path / "ray", quiet=True).runs == 0
    assert remote.runs().collect().height == spec.size
    assert pl.Series(remote.runs().collect()["run_id"]).is_unique().all()
