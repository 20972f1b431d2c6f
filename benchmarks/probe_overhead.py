"""Cost of recording spectra during a sweep: time with the spectral probe / time without.

Target: at most 1.2x at the default probe schedule (8 log-spaced steps) for a typical
sweep group: an MLP of width 256 with 3 hidden layers, 16 members (8 learning rates x 2
seeds), Adam, 500 steps of batch 128 on MNIST-1D. Runs with and without the probe
alternate, so a machine whose load drifts affects both alike; the ratio is of the
medians over ``repeats`` pairs.

    python benchmarks/probe_overhead.py [--width 256] [--members 16] [--steps 500] [--repeats 2]
"""

from __future__ import annotations

import statistics
import time

import harness
from harness import machine, mlp_config

from toolkit.engine.data import load_task
from toolkit.engine.probes import log_spaced_steps, spectral_stats
from toolkit.engine.train import Member, train


def main() -> None:
    parser = harness.parser(__doc__, width=256, repeats=2)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--points", type=int, default=8, help="probe steps per run")
    args = parser.parse_args()

    task = load_task("mnist1d")
    config = mlp_config(args, steps=args.steps)
    members = [Member(lr=2.0 ** (-10 + (i % 8) / 2), seed=i // 8) for i in range(args.members)]
    schedule = log_spaced_steps(args.steps, args.points)

    def seconds(probed: bool) -> float:
        start = time.perf_counter()
        train(config, members, task=task, probes=[spectral_stats] if probed else [],
              probe_steps=schedule if probed else [])  # fmt: skip
        return time.perf_counter() - start

    plain, probed = [], []
    for _ in range(args.repeats):
        plain.append(seconds(False))
        probed.append(seconds(True))
    t0, t1 = statistics.median(plain), statistics.median(probed)
    print(machine())
    print(f"MLP width {args.width}, depth {args.depth}, {args.members} members, adam, "
          f"{args.steps} steps, batch 128; probe steps {schedule}")  # fmt: skip
    print(f"  without probes: {t0:8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in plain)})")
    print(f"  with spectra  : {t1:8.2f} s  (runs: {', '.join(f'{t:.2f}' for t in probed)})")
    print(f"  ratio with / without = {t1 / t0:.3f}x  (target <= 1.2x)")


if __name__ == "__main__":
    main()
