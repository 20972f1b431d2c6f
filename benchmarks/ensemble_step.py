"""Cost of one batched training step of 16 members relative to one member.

Target: at most 3x at width 64 (tiny models are overhead-bound, so an ensemble
step should cost little more than a single model's step).

The per-step cost is measured through the real training loop: the difference
between runs of ``long`` and ``short`` steps, divided by the step difference,
which removes setup and evaluation. Each figure is the median of ``repeats``.

    python benchmarks/ensemble_step.py [--width 64] [--members 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from toolkit.engine.data import load_task
from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import Member, TrainConfig, train


def seconds_per_step(config: TrainConfig, members: int, task, *, short: int, long: int) -> float:
    def run(steps: int) -> float:
        cfg = TrainConfig(**{**config.__dict__, "steps": steps, "eval_every": steps})
        start = time.perf_counter()
        train(cfg, [Member(lr=1e-3 * (1 + i), seed=i) for i in range(members)], task=task)
        return time.perf_counter() - start

    return (run(long) - run(short)) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    task = load_task("mnist1d")
    config = TrainConfig(
        task="mnist1d",
        parametrization=Parametrization("mup", base_width=64),
        optimizer=args.optimizer,
        width=args.width,
        depth=args.depth,
        batch_size=128,
        eval_examples=256,
    )
    seconds_per_step(config, 1, task, short=5, long=20)  # warm up
    one, many = [], []
    for _ in range(args.repeats):
        one.append(seconds_per_step(config, 1, task, short=20, long=220))
        many.append(seconds_per_step(config, args.members, task, short=20, long=220))
    t1, tn = statistics.median(one), statistics.median(many)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
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
