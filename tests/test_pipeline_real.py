"""The README's main job with the real embedded models: ``sleuth calibrate`` then ``sleuth detect
--report`` as a user runs them (packaged LLM for induction and explanations, MiniLM, structured
captioner, proposer), on synthetic footage so the test needs no data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic_video import Mover, render, write_video

pytestmark = pytest.mark.slow

WALKERS = [Mover(5, 30, 10, 20, vx=12), Mover(140, 75, 10, 20, vx=-12)]
FAST = Mover(-220, 50, 10, 20, vx=70)


def sleuth(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sleuth.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=dict(os.environ))


def test_calibrate_then_detect_writes_a_report(tmp_path: Path) -> None:
    normal = render(WALKERS, n_frames=80)
    unusual = render(WALKERS, n_frames=30) + render([*WALKERS, FAST], n_frames=60)[30:]
    video = write_video(tmp_path / "camera.mp4", normal + unusual)

    result = sleuth("calibrate", "--scene", "gate", "--video", str(video), "--stop", "80", "--epochs", "1",
                    "--caption-frames", "20")
    assert result.returncode == 0, result.stderr
    assert "scene 'gate' calibrated" in result.stderr and "rules: v1" in result.stderr

    report, data = tmp_path / "out" / "report.html", tmp_path / "out" / "report.json"
    result = sleuth("detect", str(video), "--scene", "gate", "--start", "80", "--report", str(report),
                    "--json", str(data))
    assert result.returncode == 0, result.stderr
    assert "event(s) in 60 frames" in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"Report: {report.resolve()}")  # the last line says where
    saved = json.loads(data.read_text())
    assert len(saved["frames"]) == 60 and saved["frames"][0]["index"] == 80
    assert saved["models"]["llm"] == "qwen2.5-coder-0.5b" and saved["rules_version"] == 1
    page = report.read_text()
    assert "data:image/png;base64," in page and saved["trace_id"] in page

    again = sleuth("detect", str(video), "--scene", "gate", "--start", "80")  # finished: served from the checkpoint
    assert again.returncode == 0 and again.stdout.splitlines()[0] == result.stdout.splitlines()[0]
