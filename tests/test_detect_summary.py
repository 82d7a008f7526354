"""The last line of ``sleuth detect``: where the report is and what it found, never contradicting the scores."""

from __future__ import annotations

from pathlib import Path

from sleuth.cli.pipeline import summary_line
from sleuth.graphs.detect import DetectReport, FrameScore, VideoEvent
from sleuth.reports import render_html


def frames(scores: list[float], fps: float = 10.0) -> list[FrameScore]:
    return [FrameScore(index=i, time_s=i / fps, score=s, proposer=s, gated=True, anomalous=s > 0.5)
            for i, s in enumerate(scores)]


def test_no_event_names_the_report_and_the_highest_score_under_the_threshold(tmp_path: Path) -> None:
    result = DetectReport(video="cam.mp4", scene="demo", threshold=0.5, gate_threshold=1.0,
                          frames=frames([0.1, 0.42, 0.2]), events=[])
    line = summary_line(result, tmp_path / "report.html")
    assert line.startswith(f"Report: {tmp_path / 'report.html'}:")
    assert "no anomalous event in 3 frames" in line and "0.42 at 00:00.1" in line and "threshold 0.50" in line


def test_events_name_the_strongest_with_its_time(tmp_path: Path) -> None:
    scores = [0.1] * 20 + [0.9] * 5 + [0.1] * 10 + [0.7] * 3
    events = [VideoEvent(id=1, start_frame=20, end_frame=24, start_s=2.0, end_s=2.4, peak_frame=22, peak_s=2.2,
                         peak_score=0.9),
              VideoEvent(id=2, start_frame=35, end_frame=37, start_s=3.5, end_s=3.7, peak_frame=36, peak_s=3.6,
                         peak_score=0.7)]
    result = DetectReport(video="cam.mp4", scene="demo", threshold=0.5, gate_threshold=1.0,
                          frames=frames(scores), events=events)
    line = summary_line(result, tmp_path / "r.json")
    assert "2 anomalous event(s) in 38 frames" in line
    assert "#1 at 00:02.0-00:02.4, peaks at 0.90" in line and "threshold 0.50" in line


def test_frames_over_the_threshold_without_rule_support_are_not_called_under_it(tmp_path: Path) -> None:
    """The main job's case on vtest.avi: a proposer peak of 0.52 over a 0.50 threshold, no rule broken."""
    scored = frames([0.1, 0.52, 0.3])
    scored = [frame.model_copy(update={"rule_score": 0.2, "anomalous": False}) for frame in scored]
    result = DetectReport(video="cam.mp4", scene="demo", threshold=0.5, gate_threshold=1.0, frames=scored, events=[])
    line = summary_line(result, tmp_path / "report.html")
    assert "stays under" not in line
    assert "1 frame(s) scored above the threshold 0.50 (highest 0.52 at 00:00.1)" in line
    assert "no rule of the scene supported them" in line
    page = render_html(result)
    assert "No anomalous event in 3 frames" in page and "no rule of the scene supported them" in page
