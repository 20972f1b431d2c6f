"""What the step benchmarks share: the command line, the model under test, and the
per-step cost measured through a real training loop.

A benchmark script runs as ``python benchmarks/<name>.py``, so this module is
importable as ``harness`` from its directory.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from toolkit.engine.parametrization import Parametrization
from toolkit.engine.train import TrainConfig


def parser(doc: str, *, width: int, members: int = 16, repeats: int) -> argparse.ArgumentParser:
    """``--width``, ``--depth``, ``--members``, ``--repeats`` with the benchmark's defaults."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    out.add_argument("--width", type=int, default=width)
    out.add_argument("--depth", type=int, default=3)
    out.add_argument("--members", type=int, default=members)
    out.add_argument("--repeats", type=int, default=repeats)
    return out


def mlp_config(args: argparse.Namespace, **settings: object) -> TrainConfig:
    """The benchmarks' MLP on MNIST-1D: muP at base width 64, batch 128, ``args``' shape."""
    return TrainConfig(
        task="mnist1d",
        parametrization=Parametrization("mup", base_width=64),
        width=args.width,
        depth=args.depth,
        batch_size=128,
        **settings,
    )


def seconds_per_step(run: Callable[[int], object], *, short: int, long: int) -> float:
    """``(time of run(long) - time of run(short)) / (long - short)``: the cost of one step
    with setup and evaluation cancelled out."""

    def timed(steps: int) -> float:
        start = time.perf_counter()
        run(steps)
        return time.perf_counter() - start

    return (timed(long) - timed(short)) / (long - short)


def machine() -> str:
    """The torch build and thread count the figures were measured with."""
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads"
