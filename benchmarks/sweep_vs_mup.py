"""A learning-rate sweep with the toolkit against the same sweep as a per-model ``mup`` loop.

Setting: MLP with 2 hidden layers (input layer, one hidden matrix, readout) on MNIST-1D,
muP with base width 32, Adam, 9 learning rates (every power of two from 2^-12 to 2^-4),
2 seeds, 300 steps of batch 128, constant LR, no weight decay.

* toolkit: ``run_local`` on a :class:`~toolkit.studies.sweep.SweepSpec` (planning, batched
  training of each width's runs as one ensemble, writing the store), results read back
  with ``toolkit.store.open``.
* mup loop: what a user of the ``mup`` package writes today, one model at a time: a plain
  ``nn.Sequential`` MLP with a ``mup.MuReadout``, ``mup.set_base_shapes`` against base
  shapes made once from models at widths 32 and 64, ``mup.MuAdam``, a seeded shuffle for
  the minibatches, then the loss on a fixed subset of 2048 training examples.

Sweeps:

* ``interactive``: widths 32, 64, 128. Target: toolkit at least 5x faster than the loop.
* ``canonical``: widths 32 to 512. Target: toolkit at 60% or more of the matmul peak.

Throughput counts useful training FLOPs only: 6 x matrix weights x batch x steps per run
(forward 2, backward 4), summed over runs and divided by the wall time. The peak is the
median rate of 2048x2048 fp32 matrix products measured in the same process, before and
after each width (their mean is that width's peak). The two sides run interleaved width by
width (this VM's speed drifts by up to 2x as other tenants come and go), and the fraction
of peak weighs each width's FLOPs against the peak measured next to them.

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
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata

import mup
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

import toolkit.store
from toolkit.engine.data import load_task
from toolkit.studies.sweep import SweepSpec, run_local

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

SWEEPS = {
    "interactive": ((32, 64, 128), "speed-up", 5.0),
    "canonical": ((32, 64, 128, 256, 512), "peak", 0.60),
}


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
class Result:
    seconds: float
    runs: pl.DataFrame  # width, lr, seed, final_train_loss (NaN if diverged)
    train_seconds: float | None = None  # training alone, where known


def run_toolkit(widths, steps: int) -> Result:
    spec = SweepSpec(
        task=TASK,
        model="mlp",
        parametrizations=("mup",),
        optimizers=("adam",),
        widths=tuple(widths),
        depths=(DEPTH,),
        lrs=LRS,
        seeds=SEEDS,
        steps=(steps,),
        batch_sizes=(BATCH_SIZE,),
        base_width=BASE_WIDTH,
        init_sigma=INIT_SIGMA,
        eval_every=steps,
    )
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_local(spec, out, quiet=True)
        seconds = time.perf_counter() - start
        runs = toolkit.store.open(out).runs().collect()
    # Every run records its group's training wall time; one group per width here.
    train_seconds = runs.select("width", "wall_s").unique()["wall_s"].sum()
    runs = runs.select(
        "width",
        "lr",
        "seed",
        pl.when(pl.col("status") == "ok")
        .then(pl.col("final_train_loss"))
        .otherwise(math.nan)
        .alias("final_train_loss"),
    )
    return Result(seconds, runs, train_seconds)


# --- mup loop -------------------------------------------------------------------------------


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


def run_mup_loop(widths, steps: int) -> Result:
    start = time.perf_counter()
    task = load_task(TASK)
    x, y = task.x_train, task.y_train
    # A fixed subset of the training set for the final loss (as the toolkit draws its own).
    subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))[:EVAL_EXAMPLES]
    x_eval, y_eval = x[subset], y[subset]
    base_shapes = mup.make_base_shapes(mup_mlp(BASE_WIDTH), mup_mlp(2 * BASE_WIDTH))
    rows = []
    for width in widths:
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
    seconds = time.perf_counter() - start
    return Result(seconds, pl.DataFrame(rows))


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


def rate_line(name: str, seconds: float, flops: float, at_peak: float, extra: str = "") -> str:
    """Wall time, rate and fraction of peak; ``at_peak`` is the time the FLOPs take at peak."""
    rate = flops / seconds / 1e9
    return (
        f"  {name:10s}: {seconds:7.1f} s  {rate:6.1f} GFLOP/s  ({at_peak / seconds:4.0%} of peak)"
        f"{extra}"
    )


def run_sweep(name: str, widths, steps: int, target: tuple[str, float]) -> None:
    """Time both sides of one sweep and print the report.

    The machine's speed drifts (other tenants), so the sides are interleaved width by
    width, alternating which goes first, and the matmul peak is measured before each
    width: both sides of a width see the same conditions, and each width's FLOPs are
    weighed against the peak measured next to them.
    """
    flops = training_flops(widths, steps)
    runs = len(widths) * len(LRS) * SEEDS
    print(
        f"{name} sweep (widths {','.join(map(str, widths))}; {runs} runs x {steps} steps; "
        f"{flops / 1e12:.2f} TFLOP)",
        flush=True,
    )
    results: dict[str, list[Result]] = {"toolkit": [], "mup loop": []}
    stalls = dict.fromkeys(results, 0.0)
    at_peak, peaks = 0.0, []
    sides = {"toolkit": run_toolkit, "mup loop": run_mup_loop}
    peak, steady = matmul_peak(), True
    for i, width in enumerate(widths):
        for side in sorted(sides, reverse=i % 2 == 1):
            before = cpu_stall_seconds()
            results[side].append(sides[side]([width], steps))
            after = cpu_stall_seconds()
            if before is not None and after is not None:
                stalls[side] += after - before
        following = matmul_peak()
        steady &= abs(following / peak - 1) <= DRIFT
        peaks.append((peak + following) / 2)
        at_peak += training_flops([width], steps) / peaks[-1] / 1e9
        peak = following
    ours, theirs = (
        Result(
            sum(r.seconds for r in parts),
            pl.concat([r.runs for r in parts]),
            sum(r.train_seconds or 0.0 for r in parts) if side == "toolkit" else None,
        )
        for side, parts in results.items()
    )
    spread = f" (min {min(peaks):.1f}, max {max(peaks):.1f})" if len(peaks) > 1 else ""
    drift = "" if steady else f"; it moved by more than {DRIFT:.0%} around a width: noisy timings"
    print(f"  matmul peak around each width: median {statistics.median(peaks):.1f} GFLOP/s"
          f"{spread}{drift}")  # fmt: skip
    print("    width  toolkit s  (of peak)  mup loop s  (of peak)  peak GFLOP/s")
    for width, peak, a, b in zip(widths, peaks, results["toolkit"], results["mup loop"],
                                 strict=True):  # fmt: skip
        ideal = training_flops([width], steps) / peak / 1e9
        print(f"    {width:5d}  {a.seconds:9.2f}  {ideal / a.seconds:8.0%}  {b.seconds:10.2f}  "
              f"{ideal / b.seconds:8.0%}  {peak:12.1f}")  # fmt: skip
    for side, result in (("toolkit", ours), ("mup loop", theirs)):
        extra = f"   [training alone {result.train_seconds:.1f} s]" if result.train_seconds else ""
        extra += f"   [cpu stall {stalls[side] / result.seconds:.0%}]"
        print(rate_line(side, result.seconds, flops, at_peak, extra), flush=True)

    speedup = theirs.seconds / ours.seconds
    fraction = at_peak / ours.seconds
    kind, goal = target
    line = f"  speed-up  : {speedup:.1f}x"
    if kind == "speed-up":
        line += f"   (target >= {goal:g}x)  {'PASS' if speedup >= goal else 'MISS'}"
    print(line)
    if kind == "peak":
        verdict = "PASS" if fraction >= goal else "MISS"
        print(f"  efficiency: toolkit at {fraction:.0%} of peak  (target >= {goal:.0%})  {verdict}")
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
    args = parser.parse_args()

    steps = QUICK_STEPS if args.quick else STEPS
    names = list(SWEEPS) if args.sweep == "both" else [args.sweep]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"mup {metadata.version('mup')}"
    )
    load_task(TASK)  # generate or read the cached data set before anything is timed
    for name in names:
        widths, kind, goal = SWEEPS[name]
        if args.quick:
            widths = tuple(w for w in widths if w <= QUICK_MAX_WIDTH)
        run_sweep(name, widths, steps, (kind, goal))


if __name__ == "__main__":
    main()
