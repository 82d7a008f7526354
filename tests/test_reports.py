"""The investigation report: a self-contained HTML page and JSON that round-trips, with one-line load errors."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from sleuth.cli.report import report as report_command
from sleuth.errors import SleuthError
from sleuth.graphs.detect.state import Cost, DetectReport, FrameScore, VideoEvent
from sleuth.graphs.explain.state import Explanation, Judgment
from sleuth.reports import (
    load_report,
    render_html,
    score_plot_png,
    thumbnail,
    write_html,
    write_json,
    write_report,
)
from sleuth.reports.summary import findings
from typer.testing import CliRunner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
FPS = 10.0


def frame_image(seed: int, height: int = 240, width: int = 320) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_report(*, events: bool = True, reason: str = "A cyclist rides across the pedestrian walkway.",
                frames: int = 300) -> DetectReport:
    """300 frames sampled every 2nd source frame; two events (the first at 01:05 into the video)."""
    scores = [FrameScore(index=2 * i, time_s=2 * i / FPS + 60.0, score=0.05, proposer=0.3, gated=i % 7 == 0,
                         anomalous=False) for i in range(frames)]
    spans = [(25, 40, 0.91), (200, 210, 0.77)] if events else []
    for first, last, peak in spans:
        for i in range(first, last + 1):
            scores[i] = scores[i].model_copy(update={"score": peak, "proposer": 0.8, "gated": True, "anomalous": True,
                                                     "caption": "a person on a bicycle <b>fast</b>"})
    detected = [VideoEvent(id=n + 1, start_frame=scores[first].index, end_frame=scores[last].index,
                           start_s=scores[first].time_s, end_s=scores[last].time_s,
                           peak_frame=scores[first + 2].index, peak_s=scores[first + 2].time_s, peak_score=peak,
                           broken_rules=["no cycling on the walkway"] if n == 0 else ["no running", "no vehicles"],
                           reason=reason if n == 0 else "A cart drives onto the lawn.",
                           key_frames=[scores[first].index, scores[first + 2].index])
                for n, (first, last, peak) in enumerate(spans)]
    thumbnails = {index: thumbnail(frame_image(index)) for event in detected for index in event.key_frames}
    clip = Judgment(level="clip", start_s=65.0, end_s=68.0, frames=[50, 54, 58], anomalous=True,
                    judgment="A cyclist crosses the walkway.", description="A person rides in from the left.",
                    analysis="Cycling breaks 'no cycling on the walkway' (frame 54).")
    explanation = Explanation(
        video="walkway_01.avi", scene="campus", sampled_frames=[50, 54, 58, 400], source="captions",
        clips=[clip, clip.model_copy(update={"start_s": 100.0, "end_s": 103.0, "frames": [400], "anomalous": False,
                                             "judgment": "People walk by."})],
        events=[clip.model_copy(update={"level": "event", "event_id": 1})],
        video_judgment=clip.model_copy(update={"level": "video", "start_s": 60.0, "end_s": 119.8,
                                               "judgment": "One cyclist on the walkway; otherwise normal."}),
        llm_calls=4, model="qwen2.5-0.5b-instruct")
    return DetectReport(
        video="walkway_01.avi", scene="campus", fps=FPS / 2, threshold=0.5, gate_threshold=1.5, rules_version=3,
        rules=["anomaly: no cycling on the walkway", "anomaly: no vehicles", "normal: people walk"],
        frames=scores, events=detected,
        models={"llm": "qwen2.5-0.5b-instruct", "embedder": "all-MiniLM-L6-v2", "proposer": "campus@v2"},
        cost=Cost(frames=frames, gated_frames=sum(f.gated for f in scores), llm_calls=42, prompt_tokens=9000,
                  completion_tokens=700, seconds=12.5, seconds_by_stage={"proposer": 3.0, "caption": 8.0}),
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", thumbnails=thumbnails, explanation=explanation,
        created="2025-01-02T03:04:05Z")


def data_images(page: str, kind: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(rf'src="data:image/{kind};base64,([^"]+)"', page)]


def test_the_html_report_is_self_contained_and_shows_the_investigation(tmp_path: Path) -> None:
    path = write_html(make_report(), tmp_path / "out" / "report.html")
    page = path.read_text(encoding="utf-8")
    for external in ('src="http', "src='http", 'href="http', "<link", "<script src", "url(http", "@import"):
        assert external not in page
    plots = data_images(page, "png")
    assert len(plots) == 1 and plots[0].startswith(PNG_MAGIC)
    thumbs = data_images(page, "jpeg")
    assert len(thumbs) == 4 and all(thumb.startswith(JPEG_MAGIC) for thumb in thumbs)
    assert "walkway_01.avi" in page and "campus" in page
    assert "2 events" in page and "300 frames" in page and "42 LLM calls (0.14 per frame)" in page
    # event 1: frames 25..40 of the list -> source frames 50..80, 65.0 s .. 68.0 s; peak at 65.4 s
    assert "01:05.0 – 01:08.0" in page and "frames 50–80" in page and "peak 0.91 at 01:05.4" in page
    assert "01:05.0 · frame 50" in page  # time under the key-frame thumbnail
    assert "no cycling on the walkway" in page and "no running" in page
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in page and "2025-01-02T03:04:05Z" in page
    assert "qwen2.5-0.5b-instruct" in page and "all-MiniLM-L6-v2" in page and "campus@v2" in page
    assert "rules version 3" in page and "Anomaly (2)" in page and "Normal (1)" in page
    assert "One cyclist on the walkway; otherwise normal." in page and "People walk by." in page
    assert "3 frames: 50 (01:05.0), 54 (01:05.4), 58 (01:05.8)" in page  # a clip's frames with their times
    assert "caption" in page and "8.00 s" in page  # cost by stage


def test_model_and_user_text_is_escaped() -> None:
    page = render_html(make_report(reason="<script>alert('x')</script> & more"))
    assert "<script>alert" not in page and "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "<b>fast</b>" not in page and "&lt;b&gt;fast&lt;/b&gt;" in page  # a caption


def test_a_report_without_events_says_so(tmp_path: Path) -> None:
    quiet = make_report(events=False).model_copy(update={"explanation": None})
    page = write_report(quiet, tmp_path / "quiet.html").read_text(encoding="utf-8")
    assert "No anomalous event in" in page and "0 events" in page
    assert "Explanation" not in page


@pytest.mark.parametrize("frames", [1, 0])
def test_the_plot_draws_a_single_frame_or_none(frames: int) -> None:
    png = score_plot_png(make_report(events=False, frames=frames))
    assert png.startswith(PNG_MAGIC)


def test_the_plot_draws_a_long_video() -> None:
    long = make_report(frames=20_000)
    assert score_plot_png(long).startswith(PNG_MAGIC)


def test_thumbnail_is_a_small_base64_jpeg() -> None:
    import io

    from PIL import Image

    data = base64.b64decode(thumbnail(frame_image(1, 480, 640), width=160), validate=True)
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "JPEG" and picture.size == (160, 120)
    with pytest.raises(ValueError, match="shape"):
        thumbnail(np.zeros((4, 4, 2), dtype=np.uint8))


def test_json_round_trip(tmp_path: Path) -> None:
    original = make_report()
    path = write_report(original, tmp_path / "nested" / "result.json")
    assert load_report(path) == original
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temporary file left behind
    assert path.read_text().startswith('{\n "video"')  # indent 1
    assert path.stat().st_mode & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044  # others may read a report


def test_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SleuthError, match=r"\.pdf.*\.html.*\.json"):
        write_report(make_report(), tmp_path / "report.pdf")


@pytest.mark.parametrize(("content", "fragments"), [
    (None, ["not found", "sleuth detect"]),
    ('{"video": "a.avi", "frames": [', ["not valid JSON", "line 1"]),
    ('{"video": "a.avi", "scene": "campus"}', ["not a detect report", "threshold", "sleuth detect"]),
    ("[1, 2, 3]", ["not a detect report"]),
])
def test_load_errors_are_one_line(tmp_path: Path, content: str | None, fragments: list[str]) -> None:
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SleuthError) as caught:
        load_report(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.callback()(lambda: None)  # a group, so the command is called by name as under `sleuth`
    app.command("report")(report_command)
    return app


def test_cli_writes_the_html_from_the_json(tmp_path: Path) -> None:
    result_json = write_json(make_report(), tmp_path / "result.json")
    target = tmp_path / "pages" / "report.html"
    result = CliRunner().invoke(cli(), ["report", str(result_json), "--html", str(target)])
    assert result.exit_code == 0, result.output
    assert target.is_file() and str(target) in result.output
    assert "data:image/png;base64," in target.read_text(encoding="utf-8")


def test_cli_with_a_corrupt_json_prints_one_error_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "result.json"
    corrupt.write_text('{"video": ')
    target = tmp_path / "report.html"
    result = CliRunner().invoke(cli(), ["report", str(corrupt), "--html", str(target)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not valid JSON" in errors[0], result.output
    assert not target.exists()


def test_a_dismissed_candidate_is_shown_apart_and_never_as_an_event(tmp_path: Path) -> None:
    report = make_report()
    first = report.events[0]
    candidate = first.model_copy(update={"id": 3, "verdict": "dismissed", "anomaly_probability": 0.12,
                                         "reason": "Dismissed: the LLM judged frame 54 normal against the rules."})
    report = report.model_copy(update={"events": report.events[1:], "dismissed": [candidate]})
    page = render_html(report)
    events, dismissed = page.split('class="events dismissed"', 1)
    assert "Dismissed candidate #3" in dismissed and "dismissed by the LLM: P(anomaly) 0.12" in dismissed
    assert "before dismissal" in dismissed and "Rules its frames matched" in dismissed
    assert "Dismissed candidate" not in events and "Events (1)" in events
    assert "the LLM dismissed 1 other candidate(s)" in findings(report)
    no_events = report.model_copy(update={"events": []})
    said = findings(no_events)
    assert said.startswith("no anomalous event in 300 frames (") and \
        "); the LLM dismissed 1 candidate event(s) against the scene's rules; " in said
