"""Run a sweep on a Ray cluster: each group a Ray task writing its own store files.

The store must be on a path every worker can reach (a shared filesystem on a
real cluster). Files are written atomically by the workers, and each worker claims
its group's runs as the local executor does
(:func:`~toolkit.studies.sweep.train_claimed`), so the store is the same as with
the local executor, resuming works the same way, and a sweep running beside it
never trains the same run.
Ray is an optional extra (``pip install toolkit[ray]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from toolkit.errors import InputError
from toolkit.store import Store
from toolkit.studies.costs import available_memory
from toolkit.studies.sweep import Group, Plan, SweepSpec, check_outlook, plan, train_claimed


def _train_remote(group: Group, path: str) -> int:
    """Train one group's unfinished runs under claims; the number of runs trained."""
    store = Store(path)
    with store.writing() as claims:
        return train_claimed([group], store, claims)


def run_ray(
    spec: SweepSpec | Sequence[SweepSpec],
    out: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
) -> Plan:
    """Run a sweep with one Ray task (one CPU) per group, skipping finished runs.

    Connects to the cluster at ``address`` (or to the one already initialised
    in this process); with neither, starts a local Ray on loopback with
    ``num_cpus`` CPUs and shuts it down afterwards. Shows a progress bar over
    groups unless ``quiet``. Refuses what :func:`~toolkit.studies.sweep.check_outlook`
    refuses (sized by this machine's memory).
    """
    try:
        import ray
    except ImportError:
        raise InputError(
            "executor='ray' needs Ray: pip install 'toolkit[ray]' (or pip install ray)"
        ) from None
    from tqdm.auto import tqdm

    memory = available_memory()
    check_outlook(spec, memory=memory)
    store = Store(out)
    work = plan(spec, finished=store.finished_run_ids(), memory=memory)
    if on_plan is not None:
        on_plan(work)
    if not work.groups:
        return work
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
            )
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_train_remote)
        path = str(store.path.resolve())
        pending = [task.remote(group, path) for group in work.groups]
        with tqdm(total=len(pending), unit="group", disable=quiet) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)  # re-raises a worker's error here
                bar.update(len(done))
    finally:
        if started_here:
            ray.shutdown()
    return work
