"""The package installs under the one name ``sleuth`` and the CLI lists its commands."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sleuth.cli.main import app
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["agents", "tools", "graphs", "prompts", "evals", "serve", "llm", "cli"])
def test_every_folder_imports_under_sleuth(name: str) -> None:
    module = importlib.import_module(f"sleuth.{name}")
    assert Path(module.__file__).resolve().parent == ROOT / name


def test_wheel_puts_nothing_at_the_top_level_but_sleuth(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("sleuth-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert top_level == {"sleuth", "sleuth-0.1.0.dist-info"}
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [path.relative_to(ROOT) for path in ROOT.rglob("*.py")
               if not {".venv", "tests", "build", "scripts"} & set(path.relative_to(ROOT).parts)]
    missing = [str(path) for path in sources if f"sleuth/{path.as_posix()}" not in names]
    assert not missing, f"left out of the wheel (add the package to pyproject.toml): {missing}"
    prompts = [f"sleuth/prompts/{path.name}" for path in (ROOT / "prompts").glob("*.toml")]
    assert prompts and set(prompts) <= names
    assert not any(name.startswith("sleuth/tests/") for name in names)


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("doctor", "ask", "eval"):
        assert command in result.output
