"""Kept freed memory: the same numbers, far fewer page faults.

Each side trains in its own process: the allocator setting is process-wide and cannot be
undone inside one.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

GNU_LINUX = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

SCRIPT = """
import hashlib, json, resource, sys
import toolkit.engine.allocator as allocator
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import Member, TrainConfig, train

if sys.argv[1] == "off":
    allocator._kept = True  # as if already set: train() leaves malloc as it is
config = TrainConfig(task="mnist1d", width=256, depth=2, steps=40, eval_every=20,
                     parametrization=Parametrization(name="mup", base_width=32))
members = [Member(lr=2.0**k, seed=s) for k in (-10, -6, -2) for s in (0, 1)]
train(config, members)  # warm-up: the heap grows to its high-water mark
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
records = train(config, members)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
values = records.curves.sort(["run_id", "step", "split", "metric"])["value"].to_numpy()
print(json.dumps({"faults": faults, "digest": hashlib.sha256(values.tobytes()).hexdigest()}))
"""


def _train(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GNU_LINUX, reason="the setting exists only in GNU libc")
def test_kept_memory_changes_no_number_and_removes_most_page_faults():
    off, on, again = _train("off"), _train("on"), _train("on")
    assert on["digest"] == again["digest"] == off["digest"]
    # 20-30 thousand faults without, tens with (a few thousand now and then: the better
    # of two runs)
    assert min(on["faults"], again["faults"]) < off["faults"] / 4, (off, on, again)


@pytest.mark.skipif(not GNU_LINUX, reason="the setting exists only in GNU libc")
def test_keep_freed_memory_reports_it_holds_and_is_idempotent():
    from toolkit.engine.allocator import keep_freed_memory

    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
