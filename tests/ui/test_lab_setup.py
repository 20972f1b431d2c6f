"""`make lab` opens the notebooks as any user (root included), passes LAB_ARGS on, and
installs only the `lab` extra, not the dev and Ray extras that `make test` uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> str:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def test_make_lab_passes_lab_args_and_allows_root_only_as_root(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    jupyter = venv / "bin" / "jupyter"
    jupyter.write_text('#!/bin/sh\necho "jupyter $*"\n')
    jupyter.chmod(0o755)
    (venv / ".lab-installed").touch()
    out = _make(f"VENV={venv}", "-o", f"{venv}/.lab-installed", "lab",
                "LAB_ARGS=--port 9999 --no-browser")  # fmt: skip
    (line,) = [line for line in out.splitlines() if line.startswith("jupyter ")]
    assert line.startswith("jupyter lab notebooks/")
    assert line.endswith("--port 9999 --no-browser")
    assert ("--allow-root" in line) == (os.geteuid() == 0)


def test_make_lab_installs_the_lab_extra_only_and_make_test_everything(tmp_path):
    lab = _make("-n", "-B", f"VENV={tmp_path}", f"{tmp_path}/.lab-installed")
    assert "-e '.[lab]'" in lab and "dev" not in lab and "ray" not in lab
    test = _make("-n", "-B", f"VENV={tmp_path}", f"{tmp_path}/.installed")
    assert "-e '.[dev,ray,lab]'" in test
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "jupyterlab" in extras["optional-dependencies"]["lab"]
    assert not any(dep.startswith("jupyterlab") for dep in extras["dependencies"])
