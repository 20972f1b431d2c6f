"""Time from a slider change to a finished redraw in the width-transfer explorer.

Target: a median of at most 100 ms on the shipped data. The explorer's
observers run synchronously, so timing the assignment of a control's value
measures the whole path: query the store frame, fit the optima, draw and
render the PNG the notebook shows.

    python benchmarks/slider_latency.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import matplotlib

matplotlib.use("Agg")

from toolkit.store import shipped  # noqa: E402
from toolkit.widgets import StudyData, transfer_explorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = StudyData(shipped("width_transfer"))
    explorer = transfer_explorer(data, hue="width", col="parametrization")
    step = explorer.controls["step"]
    changes = [
        (name, value)
        for _ in range(args.repeats)
        for name, options in (
            ("step", list(step.options)),
            ("split", ["val", "train"]),
            ("optimizer", list(explorer.controls["optimizer"].options)),
        )
        for value in options
    ]
    timings: dict[str, list[float]] = {}
    for name, value in changes:
        control = explorer.controls[name]
        if control.value == value:
            continue
        started = time.perf_counter()
        control.value = value
        timings.setdefault(name, []).append(time.perf_counter() - started)
        assert not explorer.errors.outputs, explorer.errors.outputs
    every = [t for values in timings.values() for t in values]
    print(f"width-transfer explorer on the shipped store ({data.runs.height} runs)")
    for name, values in timings.items():
        print(
            f"  {name:10s} median {statistics.median(values) * 1e3:7.1f} ms ({len(values)} changes)"
        )
    median = statistics.median(every)
    print(f"  all        median {median * 1e3:7.1f} ms, max {max(every) * 1e3:.1f} ms "
          f"(target <= 100 ms: {'met' if median <= 0.1 else 'missed'})")  # fmt: skip


if __name__ == "__main__":
    main()
