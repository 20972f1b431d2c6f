"""Cost of one Fastfood subspace training step relative to one full-parameter step.

Model: a toolkit MLP of width 700 and depth 3 on MNIST-1D, D = 1,017,110
parameters (Fastfood L = 2**20), one member, Adam, batch 128. Target: at most
3x. The subspace step adds two Walsh-Hadamard transforms of length L per step
(one forward, one backward; the transforms of length ``2**ceil(log2 d)`` on
``theta_d``'s side are cheap for ``d << L``), a gather and its transpose, and
copies of ``theta``; it saves Adam's update of D parameters.

The per-step cost is measured through the real training loops (``train`` and
``train_subspace``): the difference between runs of ``long`` and ``short``
steps, divided by the step difference, which removes setup (including drawing
the projection) and evaluation. Each figure is the median of ``repeats``.

    python benchmarks/intrinsic_fastfood.py [--width 700] [--d 1000,100000]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from harness import machine, seconds_per_step

from toolkit.engine.data import load_task
from toolkit.engine.subspace import SubspaceMember, parameter_count, train_subspace
from toolkit.engine.train import Member, TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=700)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--d", default="1000,100000", help="comma list of subspace dimensions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--short", type=int, default=5)
    parser.add_argument("--long", type=int, default=25)
    args = parser.parse_args()

    task = load_task("mnist1d")
    config = TrainConfig(
        task="mnist1d", width=args.width, depth=args.depth, batch_size=128, eval_examples=256
    )
    dims = [int(d) for d in args.d.split(",")]

    def direct(steps: int) -> None:
        train(replace(config, steps=steps, eval_every=steps), [Member(lr=1e-3)], task=task)

    def subspace(d: int):
        def run(steps: int) -> None:
            train_subspace(
                replace(config, steps=steps, eval_every=steps),
                [SubspaceMember(d=d, lr=1e-2)],
                projection="fastfood",
                task=task,
            )

        return run

    direct(2)  # warm up
    subspace(dims[0])(2)
    times: dict[str, list[float]] = {"direct": []} | {f"d={d}": [] for d in dims}
    for _ in range(args.repeats):
        times["direct"].append(seconds_per_step(direct, short=args.short, long=args.long))
        for d in dims:
            run = subspace(d)
            times[f"d={d}"].append(seconds_per_step(run, short=args.short, long=args.long))
    medians = {name: statistics.median(values) for name, values in times.items()}
    D = parameter_count(config, task)
    print(machine())
    print(
        f"MLP width {args.width}, depth {args.depth}, D = {D:,}, mnist1d, adam, batch 128 "
        f"(median of {args.repeats})"
    )
    print(f"  full-parameter step : {medians['direct'] * 1e3:8.2f} ms")
    for d in dims:
        step = medians[f"d={d}"]
        print(
            f"  fastfood d = {d:<7d}: {step * 1e3:8.2f} ms   "
            f"ratio {step / medians['direct']:.2f}x  (target <= 3x)"
        )


if __name__ == "__main__":
    main()
