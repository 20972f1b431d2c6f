"""A learning-rate sweep with the toolkit against the same sweep as a per-model ``mup`` loop.

Setting: MLP with 2 hidden layers (input layer, one hidden matrix, readout) on MNIST-1D,
muP with base width 32, Adam, 9 learning rates (every power of two from 2^-12 to 2^-4),
2 seeds, 300 steps of batch 128, constant LR, no weight decay.

Both sides are measured as what a user pays: a whole command, in its own process
(interpreter start, imports, data, planning, training, writing results).

* toolkit: ``python -m toolkit sweep --spec <the sweep as TOML> --out <store>``. Its store
  also gives *training alone*: each group's ``wall_s`` (model built, trained, evaluated;
  groups train one after another in that process), per width.
* mup loop: this script in a child process, doing what a user of the ``mup`` package writes
  today, one model at a time: a plain ``nn.Sequential`` MLP with a ``mup.MuReadout``,
  ``mup.set_base_shapes`` against base shapes made once from models at widths 32 and 64,
  ``mup.MuAdam``, a seeded shuffle for the minibatches, then the loss on a fixed subset of
  2048 training examples. Its per-width training time is timed in that process.

Sweeps and targets (issue "near the machine's limit"):

* ``interactive``: widths 32, 64, 128. The whole toolkit command at least 10x faster than
  the whole loop command.
* ``canonical``: widths 32 to 512. The whole toolkit command at 70% or more of the matmul
  peak; widths 32 and 64 trained at 20% of peak or more each (training alone); the
  command's peak memory (largest resident set of its processes) at most 2 GiB.

Throughput counts useful training FLOPs only: 6 x matrix weights x batch x steps per run
(forward 2, backward 4), summed over runs and divided by the wall time. The peak is the
median rate of 2048x2048 fp32 matrix products measured in this process before and after
each command (their mean is that command's peak); a peak that moves by more than 20% is
flagged as noisy timing. The growth of the kernel's CPU pressure (PSI) over a command, as a
share of its wall time, shows contention from other processes.

Each sweep also prints this machine's *ceiling*: the start-up every toolkit command pays
before its first step (a fresh interpreter importing what the sweep command imports, timed
in this run) plus the sweep's FLOPs at the peak. A target above it cannot be met here by
any training engine, and its verdict says so.

Agreement, per width: the optimal LR (argmin over LRs of the seed-mean final train loss;
a diverged or non-finite run counts as worse than any finite one) of both, equal or one
grid step apart; and the optimal losses within the seed-to-seed spread: |best mean
(toolkit) - best mean (mup)| <= max(2 standard errors of that difference, 0.02). The
seed-to-seed standard deviation of each side is pooled over the optimal LR and its two
neighbours on the grid (their variances across seeds; seed noise grows with the LR, so
far-off LRs would understate it), three degrees of freedom per side with 2 seeds rather
than the single one of the max - min of two seeds at the optimum, which flagged seed noise
as disagreement: at width 256 two seeds per side differed by 0.04, six seeds by 0.0002.

Both sides train the same model up to what ``mup`` leaves to PyTorch: the toolkit runs with
``init_sigma = 3**-0.5``, so its Gaussian weights have the std of PyTorch's uniform
``nn.Linear`` init (1/sqrt(3 fan_in)); the loop zeroes its biases, which PyTorch draws and
the toolkit starts at zero; the toolkit's Adam epsilon scales with width where ``mup``'s is
fixed (negligible at 1e-8). With the toolkit's default ``init_sigma = 1`` the weights start
sqrt(3) larger and the final losses come out systematically lower than the loop's.

    python benchmarks/sweep_vs_mup.py [--quick] [--sweep interactive|canonical|both]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import mup
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

import toolkit.store
from toolkit.engine.data import load_task

TASK = "mnist1d"
D_IN, D_OUT = 40, 10
BASE_WIDTH = 32
DEPTH = 2  # hidden layers: input layer and one hidden matrix, then the readout
LOG2_LRS = tuple(range(-12, -3))
LRS = tuple(2.0**k for k in LOG2_LRS)
SEEDS = 2
STEPS = 300
QUICK_STEPS = 60
QUICK_MAX_WIDTH = 128
BATCH_SIZE = 128
EVAL_EXAMPLES = 2048
INIT_SIGMA = 3**-0.5  # the std of PyTorch's default nn.Linear init is 1/sqrt(3 fan_in)
LOSS_TOL = 0.02  # absolute floor of the loss-agreement tolerance
DRIFT = 0.2  # a peak this far from the one measured before a width flags noisy timings

SWEEPS = {"interactive": (32, 64, 128), "canonical": (32, 64, 128, 256, 512)}
SPEED_UP_TARGET = 10.0  # interactive: whole toolkit command vs whole loop command
PEAK_TARGET = 0.70  # canonical: the whole toolkit command's share of the matmul peak
SMALL_WIDTH_TARGET = 0.20  # canonical: widths 32 and 64, training alone
SMALL_WIDTHS = (32, 64)
MEMORY_TARGET_GIB = 2.0  # canonical: peak resident set of the toolkit command


def matrix_weights(width: int) -> int:
    """Entries of the weight matrices of one MLP (biases are not counted)."""
    return D_IN * width + (DEPTH - 1) * width * width + width * D_OUT


def training_flops(widths, steps: int) -> float:
    """Useful training FLOPs of a whole sweep: 6 per matrix weight per example."""
    runs = len(LRS) * SEEDS
    return sum(6.0 * matrix_weights(w) * BATCH_SIZE * steps * runs for w in widths)


def cpu_stall_seconds() -> float | None:
    """Seconds that runnable tasks have waited for a CPU since boot (Linux PSI), if known.

    Its growth over a timed section, as a share of the wall time, shows contention from
    other processes, which slows small-kernel loops many times more than it slows matmuls.
    """
    try:
        with open("/proc/pressure/cpu") as handle:
            some = handle.readline().split()
        return int(some[-1].removeprefix("total=")) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of ``size``-square fp32 matrix products (after two warm-up products)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2.0 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


# --- toolkit --------------------------------------------------------------------------------


@dataclass
class Command:
    """One side's whole command: its wall time, the largest resident set of its processes,
    the CPU pressure stall over it, its runs, and training alone per width (seconds)."""

    seconds: float
    peak_rss_gib: float
    stall_s: float | None
    runs: pl.DataFrame  # width, lr, seed, final_train_loss (NaN if diverged)
    training: dict[int, float] = field(default_factory=dict)


def timed_command(argv: list[str]) -> tuple[float, float, float | None]:
    """Run ``argv``; its wall seconds, peak resident set (GiB; the largest of the process
    and the children it waited for) and CPU-pressure stall seconds. Fails loudly if the
    command fails."""
    before = cpu_stall_seconds()
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    after = cpu_stall_seconds()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{process.stderr.read().decode()}")
    stall = None if before is None or after is None else after - before
    return seconds, usage.ru_maxrss / 2**20, stall  # ru_maxrss is in KiB on Linux


def sweep_toml(widths, steps: int) -> str:
    """The sweep as a spec file for ``python -m toolkit sweep --spec``."""
    return "\n".join([
        'study = "sweep_vs_mup"', f'task = "{TASK}"', 'model = "mlp"',
        'parametrizations = ["mup"]', 'optimizers = ["adam"]',
        f"widths = {list(widths)}", f"depths = [{DEPTH}]", f"lrs = {list(LRS)}",
        f"seeds = {SEEDS}", f"steps = [{steps}]", f"batch_sizes = [{BATCH_SIZE}]",
        f"base_width = {BASE_WIDTH}", f"init_sigma = {INIT_SIGMA!r}", f"eval_every = {steps}",
    ]) + "\n"  # fmt: skip


def run_toolkit(widths, steps: int) -> Command:
    with tempfile.TemporaryDirectory() as scratch:
        spec, out = Path(scratch, "sweep.toml"), Path(scratch, "store")
        spec.write_text(sweep_toml(widths, steps))
        argv = [sys.executable, "-m", "toolkit", "sweep", "--spec", str(spec), "--out",
                str(out), "--quiet"]  # fmt: skip
        seconds, rss, stall = timed_command(argv)
        runs = toolkit.store.open(out).runs().collect()
    # Every run records its group's wall time; groups trained one after another.
    per_group = runs.select("width", "wall_s", "group_size").unique()
    training = {w: float(t) for w, t in per_group.group_by("width").agg(pl.col("wall_s").sum())
                .iter_rows()}  # fmt: skip
    runs = runs.select(
        "width",
        "lr",
        "seed",
        pl.when(pl.col("status") == "ok")
        .then(pl.col("final_train_loss"))
        .otherwise(math.nan)
        .alias("final_train_loss"),
    )
    return Command(seconds, rss, stall, runs, training)


def mup_mlp(width: int) -> nn.Sequential:
    """The loop's MLP; biases start at zero, as the toolkit's do (PyTorch draws them)."""
    model = nn.Sequential(
        nn.Linear(D_IN, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        mup.MuReadout(width, D_OUT),
    )
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.bias.zero_()
    return model


class Shuffled:
    """Minibatch indices from a seeded shuffle, reshuffled every epoch (last partial dropped)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return index


def mup_loop(widths, steps: int) -> dict:
    """The loop itself (run in a child process by :func:`run_mup_loop`): its runs and its
    training time per width."""
    task = load_task(TASK)
    x, y = task.x_train, task.y_train
    # A fixed subset of the training set for the final loss (as the toolkit draws its own).
    subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:EVAL_EXAMPLES]
    x_eval, y_eval = x[subset], y[subset]
    base_shapes = mup.make_base_shapes(mup_mlp(BASE_WIDTH), mup_mlp(2 * BASE_WIDTH))
    rows, training = [], {}
    for width in widths:
        start = time.perf_counter()
        for lr in LRS:
            for seed in range(SEEDS):
                torch.manual_seed(seed)
                model = mup.set_base_shapes(mup_mlp(width), base_shapes)
                optimizer = mup.MuAdam(model.parameters(), lr=lr)
                batches = Shuffled(len(x), BATCH_SIZE, seed)
                for _ in range(steps):
                    index = batches.next()
                    loss = F.cross_entropy(model(x[index]), y[index])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                with torch.no_grad():
                    final = F.cross_entropy(model(x_eval), y_eval).item()
                rows.append({"width": width, "lr": lr, "seed": seed, "final_train_loss": final})
        training[width] = time.perf_counter() - start
    return {"rows": rows, "training": training}


def run_mup_loop(widths, steps: int) -> Command:
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch, "loop.json")
        argv = [sys.executable, __file__, "--loop", ",".join(map(str, widths)), "--steps",
                str(steps), "--result", str(result)]  # fmt: skip
        seconds, rss, stall = timed_command(argv)
        done = json.loads(result.read_text())
    training = {int(w): t for w, t in done["training"].items()}
    return Command(seconds, rss, stall, pl.DataFrame(done["rows"]), training)


# --- comparison -----------------------------------------------------------------------------


def optima(runs: pl.DataFrame) -> dict[int, dict]:
    """Per width: optimal log2 LR, seed-mean loss there, the seed-to-seed standard
    deviation pooled over the optimum and its grid neighbours, diverged runs."""
    per_lr = (
        runs.with_columns(
            pl.when(pl.col("final_train_loss").is_finite())
            .then(pl.col("final_train_loss"))
            .otherwise(math.inf)
            .alias("loss")
        )
        .group_by("width", "lr")
        .agg(
            pl.col("loss").mean().alias("mean"),
            pl.col("loss").var().alias("variance"),
            (~pl.col("loss").is_finite()).sum().alias("diverged"),
        )
        .sort("width", "mean", "lr")
    )
    out = {}
    for (width,), frame in per_lr.group_by("width", maintain_order=True):
        best = frame.row(0, named=True)
        near = (pl.col("lr").log(2) - math.log2(best["lr"])).abs() <= 1.01
        finite = frame.filter(near, pl.col("variance").is_finite())["variance"]
        out[width] = {
            "log2_lr": round(math.log2(best["lr"])),
            "mean": best["mean"],
            "sd": math.sqrt(finite.mean()) if finite.len() else math.nan,
            "diverged": int(frame["diverged"].sum()),
        }
    return out


def agreement(ours: pl.DataFrame, theirs: pl.DataFrame) -> tuple[list[str], bool]:
    """Report lines and whether every width agrees (optimal LR and loss)."""
    a, b = optima(ours), optima(theirs)
    lines = [
        "    width  log2 lr* (toolkit  mup)   loss* (toolkit   mup)   |diff|  tol    "
        "diverged (toolkit mup)",
    ]
    ok = True
    for width in sorted(a):
        ta, tb = a[width], b[width]
        steps_apart = abs(ta["log2_lr"] - tb["log2_lr"])
        lr_note = "same" if steps_apart == 0 else ("1 step" if steps_apart == 1 else "DIFFER")
        diff = abs(ta["mean"] - tb["mean"])
        tol = max(2 * math.sqrt((ta["sd"] ** 2 + tb["sd"] ** 2) / SEEDS), LOSS_TOL)
        loss_ok = math.isfinite(diff) and diff <= tol
        ok &= steps_apart <= 1 and loss_ok
        lines.append(
            f"    {width:5d}  {ta['log2_lr']:>12d} {tb['log2_lr']:>4d} {lr_note:>7s}"
            f"  {ta['mean']:>10.4f} {tb['mean']:>6.4f}  {diff:7.4f}  {tol:.3f} "
            f"{'ok' if loss_ok else 'NO':>3s}  {ta['diverged']:>8d} {tb['diverged']:>3d}"
        )
    return lines, ok


def verdict(met: bool, reachable: bool = True) -> str:
    if met:
        return "PASS"
    return "MISS" if reachable else "MISS (beyond this machine's ceiling)"


START_UP = "import torch, polars, toolkit.engine.train, toolkit.studies.sweep, toolkit.ui.cli"
"""What every toolkit command that trains imports before its first step."""


def start_up_floor(repeats: int = 3) -> float:
    """Seconds a whole toolkit command spends before it can train: a fresh interpreter
    importing what the sweep command imports (median of ``repeats`` processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", START_UP], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_sweep(name: str, widths, steps: int, loop_first: bool) -> None:
    """Time both sides of one sweep as whole commands and print the report."""
    flops = training_flops(widths, steps)
    runs = len(widths) * len(LRS) * SEEDS
    print(f"{name} sweep (widths {','.join(map(str, widths))}; {runs} runs x {steps} steps; "
          f"{flops / 1e12:.2f} TFLOP)", flush=True)  # fmt: skip
    sides = {"toolkit": run_toolkit, "mup loop": run_mup_loop}
    results, peaks = {}, []
    for side in sorted(sides, reverse=not loop_first):
        before = matmul_peak()
        results[side] = sides[side](widths, steps)
        after = matmul_peak()
        peaks.append((side, before, after))
    ours, theirs = results["toolkit"], results["mup loop"]
    peak = {side: (b + a) / 2 for side, b, a in peaks}
    noisy = any(abs(a / b - 1) > DRIFT for _, b, a in peaks)
    print(f"  matmul peak: {peak['toolkit']:.1f} GFLOP/s around the toolkit, "
          f"{peak['mup loop']:.1f} around the loop"
          f"{'; it moved by more than 20% around a command: noisy timings' if noisy else ''}")

    def share(seconds: float, width_flops: float, side: str) -> float:
        return width_flops / peak[side] / 1e9 / seconds

    print("    width  toolkit training s (of peak)  loop training s (of peak)")
    for width in widths:
        f = training_flops([width], steps)
        a, b = ours.training[width], theirs.training[width]
        print(f"    {width:5d}  {a:18.2f} {share(a, f, 'toolkit'):8.0%}  {b:15.2f} "
              f"{share(b, f, 'mup loop'):8.0%}")  # fmt: skip
    for side in sides:
        result = results[side]
        train = sum(result.training.values())
        stall = result.stall_s
        stall = "" if stall is None else f", cpu stall {stall / result.seconds:.0%}"
        print(f"  {side:8s}: whole command {result.seconds:6.1f} s "
              f"({share(result.seconds, flops, side):4.0%} of peak), training alone {train:6.1f} s "
              f"({share(train, flops, side):4.0%}), peak memory {result.peak_rss_gib:.2f} GiB"
              f"{stall}")  # fmt: skip

    speedup = theirs.seconds / ours.seconds
    print(f"  speed-up (whole commands): {speedup:.1f}x; training alone "
          f"{sum(theirs.training.values()) / sum(ours.training.values()):.1f}x")
    # The best any toolkit command could do here: its start-up, then every FLOP at the peak.
    floor = start_up_floor()
    best = floor + flops / peak["toolkit"] / 1e9
    ceiling_speedup, ceiling_share = theirs.seconds / best, share(best, flops, "toolkit")
    print(f"  ceiling on this machine: start-up alone (interpreter and imports) {floor:.1f} s; "
          f"with training at the matmul peak the whole command would take {best:.1f} s: "
          f"{ceiling_speedup:.1f}x the loop, {ceiling_share:.0%} of peak")
    if name == "interactive":
        print(f"  target: whole command >= {SPEED_UP_TARGET:g}x faster than the loop: "
              f"{verdict(speedup >= SPEED_UP_TARGET, ceiling_speedup >= SPEED_UP_TARGET)}")
    else:
        fraction = share(ours.seconds, flops, "toolkit")
        print(f"  target: whole command at >= {PEAK_TARGET:.0%} of peak ({fraction:.0%}): "
              f"{verdict(fraction >= PEAK_TARGET, ceiling_share >= PEAK_TARGET)}")
        for width in (w for w in SMALL_WIDTHS if w in widths):
            small = share(ours.training[width], training_flops([width], steps), "toolkit")
            print(f"  target: width {width} training at >= {SMALL_WIDTH_TARGET:.0%} of peak "
                  f"({small:.0%}): {verdict(small >= SMALL_WIDTH_TARGET)}")
        print(f"  target: peak memory <= {MEMORY_TARGET_GIB:g} GiB "
              f"({ours.peak_rss_gib:.2f} GiB): "
              f"{verdict(ours.peak_rss_gib <= MEMORY_TARGET_GIB)}")
    lines, ok = agreement(ours.runs, theirs.runs)
    print(
        f"  agreement : {'yes' if ok else 'NO'} (optimal LR within one grid step; best losses "
        f"within 2 standard errors of seed noise or {LOSS_TOL})"
    )
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_STEPS} steps and widths up to {QUICK_MAX_WIDTH} (a smoke run)",
    )
    parser.add_argument("--sweep", choices=("interactive", "canonical", "both"), default="both")
    parser.add_argument("--loop", help=argparse.SUPPRESS)  # the loop's own process: widths
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop:
        done = mup_loop([int(w) for w in args.loop.split(",")], args.steps)
        Path(args.result).write_text(json.dumps(done))
        return

    steps = QUICK_STEPS if args.quick else STEPS
    names = list(SWEEPS) if args.sweep == "both" else [args.sweep]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mup {metadata.version('mup')}, {os.cpu_count()} cores")  # fmt: skip
    load_task(TASK)  # generate or read the cached data set before anything is timed
    for i, name in enumerate(names):
        widths = SWEEPS[name]
        if args.quick:
            widths = tuple(w for w in widths if w <= QUICK_MAX_WIDTH)
        run_sweep(name, widths, steps, loop_first=i % 2 == 1)


if __name__ == "__main__":
    main()
