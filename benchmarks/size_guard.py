"""How fast a sweep is sized: an impossible one refused, a huge one dry-run.

Targets, on an idle machine: ``python -m toolkit sweep --widths 1000000000`` exits with
status 2 in under 2 s, with and without ``--dry-run``; ``--dry-run`` of 10^6 runs takes
under a second once the command line is imported (measured in this process).
The figure is the whole command as a user pays for it (interpreter start, imports,
planning, the memory estimate), the median of ``repeats`` runs; the import of torch
alone is measured in the same run for comparison.

    python benchmarks/size_guard.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import time

from toolkit.ui.cli import main as toolkit_main

MILLION_RUNS = ["sweep", "--task", "digits", "--widths", "16", "--depths", "1",
                "--lrs", "2^-20:2^0:1000", "--seeds", "1000", "--dry-run"]  # fmt: skip
"""1000 learning rates x 1000 seeds."""


def seconds(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    return time.perf_counter() - start, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    command = [sys.executable, "-m", "toolkit", "sweep", "--widths", "1000000000"]
    torch_import = statistics.median(
        seconds([sys.executable, "-c", "import torch"])[0] for _ in range(args.repeats)
    )
    print(f"import torch alone: {torch_import:.2f} s (median of {args.repeats})")
    for extra in (["--dry-run"], ["--out", "/tmp/toolkit-size-guard-never-written"]):
        runs = [seconds(command + extra) for _ in range(args.repeats)]
        codes = {code for _, code in runs}
        median = statistics.median(t for t, _ in runs)
        verdict = "met" if median < 2.0 and codes == {2} else "NOT met"
        print(f"sweep --widths 1000000000 {' '.join(extra)}: {median:.2f} s median, "
              f"exit status {sorted(codes)}  (target < 2 s, exit 2: {verdict})")  # fmt: skip
    planning = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            toolkit_main(MILLION_RUNS)
        planning.append(time.perf_counter() - start)
    median = statistics.median(planning)
    print(f"dry run of 10^6 runs, after import: {median:.3f} s median "
          f"(target < 1 s: {'met' if median < 1.0 else 'NOT met'})")  # fmt: skip


if __name__ == "__main__":
    main()
