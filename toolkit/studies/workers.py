"""Small groups side by side: worker processes with one thread each.

A group whose step is a few small matrix products is bound by per-operation overhead
(Python, dispatch, kernel set-up), which a second thread shortens only in part: on 2
idle cores two threads train an 18-member width-32 MLP group 1.3x faster than one. Asked
to (``run_local(..., workers=N)``, ``sweep --workers N``), such groups
(:func:`~toolkit.studies.costs.overhead_bound`) train instead in single-threaded worker
processes, one group per worker at a time, while large groups keep every thread in the
calling process (:func:`toolkit.studies.sweep.run_local`).

Each worker writes its groups into the store itself, under claims like any other writer
(:mod:`toolkit.locks`), so a worker that dies loses at most its group in flight and a
re-run resumes. Results do not depend on which process trained a run: members of an
ensemble never mix, and each run's numbers are those of its own slice.

Workers are spawned, not forked: polars' thread pool does not survive a fork (a forked
child that reads or writes a frame waits forever for threads it does not have). A spawned
worker pays the interpreter's start and the imports (about 2 s on 2 cores), and imports
the caller's main script, which must therefore guard its entry point.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.store import Store

if TYPE_CHECKING:
    from toolkit.studies.sweep import Group

POLL_S = 0.1
"""Seconds between updates of the caller's progress while workers train."""

PR_SET_PDEATHSIG = 1
"""Linux's ``prctl`` option: the signal a process gets when its parent dies."""

_steps_done = None  # a worker's shared step counter, set by _start_worker


def split_for(groups: Sequence[Group], workers: int) -> list[Group]:
    """``groups`` cut into at least ``workers`` parts where members allow (each group
    into equal shares of its members, in order), so that no worker idles while one
    trains a whole group; fewer parts never."""
    if not groups or len(groups) >= workers:
        return list(groups)
    shares = math.ceil(workers / len(groups))
    parts = []
    for group in groups:
        n = len(group.members)
        cuts = [round(i * n / min(shares, n)) for i in range(min(shares, n) + 1)]
        for a, b in zip(cuts, cuts[1:], strict=False):
            share = (b - a) / n
            parts.append(replace(group, members=group.members[a:b], flops=group.flops * share,
                                 bytes=int(group.bytes * share),
                                 seconds=group.seconds * share))  # fmt: skip
    return parts


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when ``parent`` dies (Linux), so that a killed
    sweep leaves no worker training on, holding its claims."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request was made
        os._exit(1)


def _start_worker(counter, parent: int) -> None:
    global _steps_done
    _die_with(parent)
    import torch

    torch.set_num_threads(1)
    _steps_done = counter


def _train_in_worker(group: Group, out: str, device: str) -> int:
    """Train one group into the store at ``out`` under this worker's own claims."""
    from toolkit.studies.sweep import train_claimed

    done = 0

    def advance(step: int) -> None:
        nonlocal done
        with _steps_done.get_lock():
            _steps_done.value += step - done
        done = step

    store = Store(out)
    with store.writing() as claims:
        trained = train_claimed([group], store, claims, device=device, on_step=advance)
    with _steps_done.get_lock():  # the steps of runs that were already finished
        _steps_done.value += group.config.steps - done
    return trained


def train_in_workers(
    groups: Sequence[Group],
    out: str | Path,
    *,
    workers: int,
    device: str = "cpu",
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Train ``groups`` in ``workers`` single-threaded processes into the store at ``out``;
    returns the number of runs trained. ``on_progress(steps)`` is called with the number
    of group steps finished so far, every :data:`POLL_S` seconds. A worker's exception
    is raised here, after the other workers' groups in flight have been written."""
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    trained = 0
    start = (counter, os.getpid())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_start_worker, initargs=start) as pool:  # fmt: skip
        pending = {pool.submit(_train_in_worker, g, str(out), device) for g in groups}
        failure = None
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    trained += future.result()
                elif failure is None:
                    failure = error
                    for other in pending:
                        other.cancel()
            if on_progress is not None:
                on_progress(counter.value)
        if failure is not None:
            raise failure
    return trained
