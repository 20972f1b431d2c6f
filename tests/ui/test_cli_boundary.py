"""Every user mistake and environment fault at the command line ends in one line on
stderr naming the value or path, exit status 2 (130 for Ctrl-C), never a traceback,
and nothing already written is lost."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.store import Store
from toolkit.ui.cli import main


def _one_line_error(argv: list[str], needle: str, capsys) -> str:
    status = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    return lines[0]


SWEEP = ["sweep", "--task", "digits", "--steps", "1", "--quiet", "--dry-run"]
COORD = ["coord-check", "--task", "digits"]
INTRINSIC = ["intrinsic-dim", "--task", "digits", "--widths", "16", "--steps", "2"]
SPECTRA = ["spectra", "--task", "digits", "--steps", "1"]

BAD_INPUTS = [
    # sweep: every kind of flag value
    (SWEEP + ["--widths", "0"], "widths=0"),
    (SWEEP + ["--widths", "-8"], "widths=-8"),
    (SWEEP + ["--widths", "16.0"], "'16.0'"),
    (SWEEP + ["--widths", "a,b"], "'a,b'"),
    (SWEEP + ["--widths", ""], "empty"),
    (SWEEP + ["--depths", "0"], "depths=0"),
    (SWEEP + ["--seeds", "1,2"], "takes one value"),
    (SWEEP + ["--parametrization", "mupp"], "'mupp'"),
    (SWEEP + ["--depth-rule", "deep"], "'deep'"),
    (SWEEP + ["--optimizer", "lion"], "'lion'"),
    (SWEEP + ["--model", "cnn"], "'cnn'"),
    (SWEEP + ["--task", "imagenet"], "'imagenet'"),
    (SWEEP + ["--model", "transformer", "--task", "digits"], "task='digits'"),
    (SWEEP + ["--lrs", "0"], "lrs=0.0"),
    (SWEEP + ["--lrs=-1e-3"], "lrs=-0.001"),
    (SWEEP + ["--lrs", "inf"], "lrs=inf"),
    (SWEEP + ["--lrs", "nan"], "lrs=nan"),
    (SWEEP + ["--lrs", "2^-2:2^-14:3"], "a <= b"),
    (SWEEP + ["--lrs", "2^0:2^5000:3"], "overflows"),
    (SWEEP + ["--lrs", "fast"], "'fast'"),
    (SWEEP + ["--weight-decays", "-1"], "weight_decays=-1.0"),
    (SWEEP + ["--init-sigmas", "0"], "init_sigmas=0.0"),
    (SWEEP + ["--input-alphas", "-2"], "input_alphas=-2.0"),
    (SWEEP + ["--output-alphas", "x"], "'x'"),
    (SWEEP + ["--momentums", "1"], "momentums=1.0"),
    (SWEEP + ["--eps", "0"], "eps=0.0"),
    (SWEEP + ["--batch-size", "32.5"], "'32.5'"),
    (SWEEP + ["--batch-size", "0"], "batch_size=0"),
    (SWEEP + ["--steps", "0"], "steps=0"),
    (SWEEP + ["--warmup-steps", "10"], "warmup_steps=10"),
    (SWEEP + ["--schedule", "step"], "'step'"),
    (SWEEP + ["--activation", "swish"], "'swish'"),
    (SWEEP + ["--readout-zero-init", "yes"], "'yes'"),
    (SWEEP + ["--biases", "maybe"], "'maybe'"),
    (SWEEP + ["--weight-decay-scaling", "linear"], "'linear'"),
    (SWEEP + ["--depth-alpha", "0"], "depth_alpha=0.0"),
    (SWEEP + ["--attn-alpha", "-1"], "attn_alpha=-1.0"),
    (SWEEP + ["--head-dim", "0"], "head_dim=0"),
    (SWEEP + ["--eval-examples", "0"], "eval_examples=0"),
    (SWEEP + ["--divergence-factor", "0"], "divergence_factor=0.0"),
    (SWEEP + ["--seeds", "0"], "seeds=0"),
    (SWEEP + ["--seed", "-1"], "seed=-1"),
    (SWEEP + ["--base-width", "0"], "base_width=0"),
    (SWEEP + ["--base-depth", "0"], "base_depth=0"),
    (SWEEP + ["--eval-every", "0"], "eval_every=0"),
    (SWEEP + ["--probes", "curvature"], "'curvature'"),
    (SWEEP + ["--probe-points", "0"], "probe_points=0"),
    (SWEEP + ["--probe-steps", "-1"], "probe_steps=-1"),
    (SWEEP + ["--max-members", "0"], "max_members=0"),
    (SWEEP + ["--memory-budget-gb", "-1"], "memory_budget_gb=-1.0"),
    (SWEEP + ["--max-runs", "0"], "max_runs=0"),
    (SWEEP + ["--max-hours", "0"], "max_hours=0.0"),
    (SWEEP + ["--executor", "dask"], "'dask'"),
    (SWEEP + ["--device", "foo"], "device='foo'"),
    (SWEEP + ["--device", "cuda:99"], "device='cuda:99'"),
    (SWEEP + ["--widths", "1000000000"], "width=1000000000"),
    (SWEEP + ["--steps", "1000000000000"], "steps=1000000000000"),
    (SWEEP + ["--batch-size", "1000000000"], "batch_size=1000000000"),
    (SWEEP + ["--spec", "/nonexistent/spec.toml"], "does not exist"),
    (SWEEP + ["--spec", "/tmp"], "is a directory"),
    (SWEEP + ["--bogus"], "--bogus"),
    (["sweep", "--task", "digits", "--steps", "1"], "--out"),
    # the other verbs
    ([], "verb"),
    (["train"], "'train'"),
    (["report"], "store"),
    (["report", "/nonexistent/store"], "does not exist"),
    (["store", "/nonexistent/store"], "does not exist"),
    (["figures", "--format", "gif"], "'gif'"),
    (["figures", "--width", "half"], "'half'"),
    (COORD + ["--widths", "0,128"], "widths=0"),
    (COORD + ["--lrs", "0.1,0.2"], "one value"),
    (COORD + ["--device", "tpu"], "device='tpu'"),
    (INTRINSIC + ["--threshold", "1.5"], "threshold=1.5"),
    (INTRINSIC + ["--projection", "fft"], "'fft'"),
    (INTRINSIC + ["--subspace-lrs", "-1"], "subspace_lrs=-1.0"),
    (INTRINSIC + ["--device", "foo"], "device='foo'"),
    (SPECTRA + ["--widths", "0"], "widths=0"),
    (
        SPECTRA + ["--device", "cuda"]
        if not __import__("torch").cuda.is_available()
        else SPECTRA + ["--device", "foo"],
        "device=",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("argv", "needle"), BAD_INPUTS, ids=[" ".join(a[-2:]) for a, _ in BAD_INPUTS]
)
def test_a_bad_input_exits_2_with_one_line_naming_it(argv, needle, capsys):
    _one_line_error(argv, needle, capsys)


BAD_SPECS = [
    ("widths = [16.0]\n", "widths=16.0"),
    ('readout_zero_init = "false"\n', "readout_zero_init='false'"),
    ("batch_sizes = [32.0]\n", "batch_sizes=32.0"),
    ("weight_decays = []\n", "empty"),
    ("grid = 5\n", "grid=5"),
    ("widht = [16]\n", "'widht'"),
    ("[smoke]\nwidht = [16]\n", "'widht'"),
    ("steps = 5\nwarmup_steps = 10\n", "warmup_steps=10"),
    ('kind = "poem"\n', "kind='poem'"),
    ("widths = [16,\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_SPECS)
def test_a_bad_spec_file_exits_2_naming_the_file_and_the_value(text, needle, tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    line = _one_line_error(["sweep", "--spec", str(spec), "--dry-run"], needle, capsys)
    assert "bad.toml" in line


def test_a_non_utf8_spec_is_named(tmp_path, capsys):
    spec = tmp_path / "latin1.toml"
    spec.write_bytes("study = 'caf\u00e9'\n".encode("latin-1"))
    _one_line_error(["sweep", "--spec", str(spec), "--dry-run"], "latin1.toml", capsys)


def _small_store(path: Path) -> Path:
    assert main(["sweep", "--task", "digits", "--widths", "16", "--depths", "1", "--lrs",
                 "0.01,0.1", "--steps", "3", "--out", str(path), "--quiet"]) == 0  # fmt: skip
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _small_store(tmp_path_factory.mktemp("trained") / "store")


def _snapshot(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != ".writers"}  # fmt: skip


def _more(store: Path) -> list[str]:
    return ["sweep", "--task", "digits", "--widths", "16,24", "--depths", "1", "--lrs",
            "0.01,0.1", "--steps", "3", "--out", str(store), "--quiet"]  # fmt: skip


def _failing_writes(monkeypatch, code: int, reason: str) -> None:
    """Every atomic write fails as a full disk or a read-only file system would."""
    import toolkit.io

    def fail(path, write):
        raise OSError(code, reason, str(path))

    monkeypatch.setattr(toolkit.io, "_stage", fail)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system"),
     (errno.EACCES, "Permission denied")],
)  # fmt: skip
def test_a_failing_disk_exits_2_and_keeps_what_was_written(code, reason, trained, tmp_path,
                                                           monkeypatch, capsys):  # fmt: skip
    import shutil

    store = tmp_path / "store"
    shutil.copytree(trained, store)
    before = _snapshot(store)
    _failing_writes(monkeypatch, code, reason)
    line = _one_line_error(_more(store), reason, capsys)
    assert str(store) in line
    monkeypatch.undo()
    assert _snapshot(store) == before
    assert Store(store).check() == [] and not any((store / "claims").iterdir())


@pytest.mark.parametrize(
    "fault",
    ["out_under_a_file", "runs_is_a_file", "cache_under_a_file", "figures_out_under_a_file",
     "intrinsic_out_under_a_file", "out_is_a_file", "report_runs_is_a_file",
     "store_runs_is_a_file", "spec_under_a_file"],
)  # fmt: skip
def test_an_environment_fault_exits_2_with_one_line(fault, tmp_path, monkeypatch, capsys):
    sweep = ["sweep", "--task", "digits", "--widths", "16", "--depths", "1", "--lrs", "0.01",
             "--steps", "2", "--quiet", "--out"]  # fmt: skip
    store = tmp_path / "s"
    if fault in ("runs_is_a_file", "report_runs_is_a_file", "store_runs_is_a_file"):
        Store(store)
        (store / "runs").write_text("a file")
    argv, needle = {
        "out_under_a_file": ([*sweep, "/dev/null/x"], "/dev/null/x: Not a directory"),
        "runs_is_a_file": ([*sweep, str(store)], str(store / "runs")),
        "cache_under_a_file": ([*sweep[:2], "mnist1d", *sweep[3:], str(store)], "/dev/null/c"),
        "figures_out_under_a_file": (["figures", "--out", "/dev/null/x"], "/dev/null/x"),
        "intrinsic_out_under_a_file": ([*INTRINSIC, "--out", "/dev/null/x"], "/dev/null/x"),
        "out_is_a_file": ([*sweep, "/dev/null"], "/dev/null is not a directory"),
        "report_runs_is_a_file": (["report", str(store)], "cannot be listed"),
        "store_runs_is_a_file": (["store", str(store)], "cannot be listed"),
        "spec_under_a_file": (["sweep", "--spec", "/dev/null/s.toml"], "cannot be read"),
    }[fault]
    if fault == "cache_under_a_file":
        monkeypatch.setenv("TOOLKIT_CACHE", "/dev/null/c")
    _one_line_error(argv, needle, capsys)


def test_ctrl_c_exits_130_with_one_line_and_the_store_resumes(tmp_path):
    out = tmp_path / "store"
    argv = [sys.executable, "-m", "toolkit", "sweep", "--task", "digits", "--widths", "16,32,48",
            "--depths", "1", "--lrs", "0.01,0.1", "--steps", "20000", "--out", str(out),
            "--quiet"]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "claims").exists() or not any((out / "claims").iterdir()):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and "interrupted" in err
    assert Store(out).check() == []
    assert not any((out / "claims").iterdir())


REFUSED_BEFORE_TORCH = """
import sys
from toolkit.ui.cli import main
status = main(sys.argv[1:])
print("torch" in sys.modules)
sys.exit(status)
"""


def test_a_run_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path):
    """Refused from the settings alone: one line, exit 2, no store made, and torch never
    imported (its import alone is most of the 2-second target, which
    ``benchmarks/size_guard.py`` measures on the whole command)."""
    for extra in (["--dry-run"], ["--out", str(tmp_path / "s")]):
        argv = ["sweep", "--widths", "1000000000", *extra]
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-c", REFUSED_BEFORE_TORCH, *argv],
                                capture_output=True, text=True)  # fmt: skip
        assert time.monotonic() - start < 30
        assert result.returncode == 2 and "width=1000000000" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stdout.strip() == "False", "torch was imported to refuse the run"
    assert not (tmp_path / "s").exists()


@pytest.fixture
def shipped_stores(tmp_path, monkeypatch) -> Path:
    """Smoke mode, with the shipped stores' directory moved to a scratch copy of one store
    (were the refusal to fail, the runs would land there, not in the repository)."""
    import shutil

    from toolkit import paths

    data = tmp_path / "data"
    shutil.copytree(paths.DATA / "intrinsic_toy", data / "intrinsic_toy")
    monkeypatch.setattr(paths, "DATA", data)
    monkeypatch.setenv("TOOLKIT_SMOKE", "1")
    return data


def _listing(directory: Path) -> list:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*"))


@pytest.mark.parametrize("spec", ["width_transfer", "intrinsic_toy"])  # a sweep, a study
def test_smoke_runs_are_refused_in_the_shipped_stores_which_stay_untouched(spec, shipped_stores,
                                                                          capsys):
    from toolkit.paths import STUDIES

    before = _listing(shipped_stores)
    for out in (shipped_stores / "intrinsic_toy", shipped_stores / "x" / ".." / "new"):
        _one_line_error(["sweep", "--spec", str(STUDIES / f"{spec}.toml"), "--out", str(out),
                         "--quiet"], "TOOLKIT_SMOKE=1", capsys)  # fmt: skip
    assert _listing(shipped_stores) == before


def test_smoke_intrinsic_measurements_are_refused_in_the_shipped_stores(shipped_stores, capsys):
    before = _listing(shipped_stores)
    _one_line_error(INTRINSIC + ["--out", str(shipped_stores / "intrinsic_toy")],
                    "inside the shipped stores", capsys)  # fmt: skip
    assert _listing(shipped_stores) == before
