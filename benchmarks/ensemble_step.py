"""Cost of one batched training step of 16 members relative to one member.

Target: at most 3x at width 64 (tiny models are overhead-bound, so an ensemble
step should cost little more than a single model's step).

The per-step cost is measured through the real training loop: the difference
between runs of ``long`` and ``short`` steps, divided by the step difference,
which removes setup and evaluation. Each figure is the median of ``repeats``.

    python benchmarks/ensemble_step.py [--width 64] [--members 16]
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import harness
from harness import machine, mlp_config, seconds_per_step

from toolkit.engine.data import load_task
from toolkit.engine.train import Member, TrainConfig, train


def step_seconds(config: TrainConfig, members: int, task, *, short: int, long: int) -> float:
    def run(steps: int) -> None:
        cfg = replace(config, steps=steps, eval_every=steps)
        train(cfg, [Member(lr=1e-3 * (1 + i), seed=i) for i in range(members)], task=task)

    return seconds_per_step(run, short=short, long=long)


def main() -> None:
    parser = harness.parser(__doc__, width=64, repeats=5)
    parser.add_argument("--optimizer", default="adam")
    args = parser.parse_args()

    task = load_task("mnist1d")
    config = mlp_config(args, optimizer=args.optimizer, eval_examples=256)
    step_seconds(config, 1, task, short=5, long=20)  # warm up
    one, many = [], []
    for _ in range(args.repeats):
        one.append(step_seconds(config, 1, task, short=20, long=220))
        many.append(step_seconds(config, args.members, task, short=20, long=220))
    t1, tn = statistics.median(one), statistics.median(many)
    print(machine())
    print(
        f"MLP width {args.width}, depth {args.depth}, {args.optimizer}, batch 128 (median of "
        f"{args.repeats})"
    )
    print(f"  1 member : {t1 * 1e3:8.3f} ms/step")
    print(f"  {args.members} members: {tn * 1e3:8.3f} ms/step")
    print(f"  ratio {args.members} : 1 = {tn / t1:.2f}x  (target <= 3x)")
    print(f"  per-member speedup over one-at-a-time: {args.members * t1 / tn:.1f}x")


if __name__ == "__main__":
    main()
