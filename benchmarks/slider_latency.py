"""Time from a slider change to a finished redraw in the width-transfer explorer.

Target: a median of at most 100 ms on the shipped data. The explorer's
observers run synchronously, so timing the assignment of a control's value
measures the whole path: query the store frame, fit the optima, draw and
render the PNG the notebook shows. Settings seen before come from the
explorer's picture cache; both kinds are reported, and the target is judged on
new settings only.

    python benchmarks/slider_latency.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import matplotlib

matplotlib.use("Agg")

from toolkit.paths import shipped  # noqa: E402
from toolkit.ui.explorer import StudyData  # noqa: E402
from toolkit.ui.widgets import transfer_explorer  # noqa: E402


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
    first: list[float] = []
    again: list[float] = []
    seen = {explorer.values().__repr__()}
    for name, value in changes:
        control = explorer.controls[name]
        if control.value == value:
            continue
        started = time.perf_counter()
        control.value = value
        elapsed = time.perf_counter() - started
        assert not explorer.message, explorer.message
        state = explorer.values().__repr__()
        (again if state in seen else first).append(elapsed)
        seen.add(state)
    print(f"width-transfer explorer on the shipped store ({data.runs.height} runs)")
    for label, values in (("new setting", first), ("setting seen before", again)):
        if values:
            print(
                f"  {label:20s} median {statistics.median(values) * 1e3:7.1f} ms, "
                f"max {max(values) * 1e3:7.1f} ms ({len(values)} changes)"
            )
    median = statistics.median(first)
    verdict = "met" if median <= 0.1 else "missed"
    print(f"  target: new-setting median <= 100 ms: {verdict} ({median * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
