"""End to end on real data with the real packaged models: `sleuth eval captions` on a Ped2 slice.

Needs ../shared/data beside the repository (as in CI); skipped where it is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomalyruler" / "ped2"
SLEUTH = shutil.which("sleuth", path=str(Path(sys.executable).parent)) or "sleuth"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} not present")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SLEUTH, "eval", "captions", "--data", str(DATA), *args], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ), stdin=subprocess.DEVNULL)


@needs_data
def test_rules_mode_on_a_ped2_slice(tmp_path: Path) -> None:
    out = tmp_path / "rules"
    result = run("--rules", str(DATA / "rules.txt"), "--videos", "04", "--max-frames", "80", "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "result.json").read_text())
    assert report["metrics"]["auc"] > 0.8
    assert report["cost"]["llm_calls_per_frame"] <= 0.3
    assert report["model"] == "qwen2.5-coder-0.5b"
    assert (out / "plots" / "video_04.png").stat().st_size > 1000
    assert "Traceback" not in result.stderr


@needs_data
def test_induced_mode_reads_no_rules_file(tmp_path: Path) -> None:
    out = tmp_path / "induced"
    result = run("--induce", "--videos", "04,05", "--max-frames", "40", "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "result.json").read_text())
    assert report["rules"]["source"] == "induced" and report["rules"]["anomaly_rules"] >= 1
    assert report["cost"]["llm_calls_per_frame"] <= 0.3 + report["cost"].get("induce_llm_calls", 0) / 80
    assert (out / "rules.txt").read_text().strip()
