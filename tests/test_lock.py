"""Reproducible installs: locks/*.txt satisfy pyproject.toml, and the environment the tests run in is the lock."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LOCK_SCRIPT = ROOT / "scripts" / "lock.py"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LOCK_SCRIPT), "check", *args], capture_output=True, text=True,
                          timeout=60)


def test_the_locks_agree_with_pyproject() -> None:
    result = check()
    assert result.returncode == 0, result.stderr


def test_a_range_the_lock_does_not_satisfy_fails_the_check(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    moved = re.sub(r'"litellm>=[^"]*"', '"litellm>=99"', pyproject)
    assert moved != pyproject
    (tmp_path / "pyproject.toml").write_text(moved)
    result = check("--pyproject", str(tmp_path / "pyproject.toml"))
    assert result.returncode == 1
    assert "litellm" in result.stderr and "refresh" in result.stderr


def test_a_new_dependency_missing_from_the_lock_fails_the_check(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text().replace('"pyyaml>=6",', '"pyyaml>=6", "left-pad-9000>=1",')
    (tmp_path / "pyproject.toml").write_text(pyproject)
    result = check("--pyproject", str(tmp_path / "pyproject.toml"))
    assert result.returncode == 1 and "left-pad-9000 is in pyproject.toml but not locked" in result.stderr


@pytest.mark.skipif(not (Path(sys.prefix) / ".sleuth-setup").exists(), reason="not in an environment made by setup.sh")
def test_the_test_environment_is_exactly_the_lock() -> None:
    lock = ROOT / "locks" / ("cpu-dev.txt" if torch.__version__.endswith("+cpu") else "gpu-dev.txt")
    wrong = []
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            name, version = match.groups()
            try:
                installed = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                installed = "missing"
            if installed != version:
                wrong.append(f"{name}: locked {version}, installed {installed}")
    assert not wrong, wrong
