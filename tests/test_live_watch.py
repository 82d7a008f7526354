# ruff: noqa: F811 - the fixtures imported from test_pipeline_graphs are parameters here
"""``sleuth watch`` and the streaming scorer on small synthetic footage: one decode in chunks gives the
whole-clip scores, a file and a live HTTP stream that drops give event alerts with evidence and key
frames, the gap is reported, the webhook receives what stdout shows, and bad sources fail in one line.

The LLM is a scripted endpoint and is not called by default (the reasons come from the rules and the
proposer); the embedder (MiniLM), proposer, object stage, captioner and rule memory are the real ones.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sleuth.live.watch as watch_module
from sleuth.errors import SleuthError
from sleuth.graphs.detect import VideoDetectConfig, detect_video
from sleuth.graphs.runtime import Runtime
from sleuth.live.alerts import AlertRouter, JsonLinesSink, WebhookSender
from sleuth.live.watch import WatchConfig, Watcher
from sleuth.tools.frames import FrameReader
from sleuth.tools.proposer import ProposerStore
from sleuth.tools.proposer.stream import StreamScorer

from tests.conftest import ScriptedOpenAI
from tests.synthetic_video import render, write_video
from tests.test_pipeline_graphs import FAST, SPEED_RULES, WALKERS, calibrated, embedder, footage, runtime  # noqa: F401


class Recorder:
    """An alert sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def send(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)

    def close(self, timeout_s: float = 5.0) -> int:
        return 0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["type"] == kind]


def test_streamed_chunks_cover_every_frame_once_with_the_whole_clip_scores(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    proposer = ProposerStore(runtime.settings).load("cam1")
    frames = FrameReader(footage["test"]).read()
    whole = proposer.score(frames)
    chunks = list(StreamScorer(proposer, chunk=16, context=8, lookahead=8).chunks(frames))
    assert [len(c.frames) for c in chunks] == [16, 16, 16, 12]
    assert [f.index for c in chunks for f in c.frames] == list(range(60))
    assert all(c.scores.frame_indices == [f.index for f in c.frames] for c in chunks)
    streamed = np.concatenate([c.scores.frame_scores for c in chunks])
    assert np.corrcoef(streamed, whole.frame_scores)[0, 1] > 0.9
    # the fast object (frames 30 on) scores above the walkers in both
    assert streamed[35:55].max() > streamed[:25].max()
    assert all(len(c.scores.tracked or []) == len(c.frames) for c in chunks)


def test_detect_reads_the_video_once_in_chunks_and_still_finds_the_event(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    opened: list[str] = []
    original = FrameReader.__iter__

    def counting(self: FrameReader) -> Any:
        opened.append(str(self.source))
        return original(self)

    monkeypatch.setattr(FrameReader, "__iter__", counting)
    report = detect_video(footage["test"], scene="cam1", runtime=runtime,
                          config=VideoDetectConfig(chunk_frames=16))
    assert len(report.frames) == 60 and [f.index for f in report.frames] == list(range(60))
    assert report.events and "an object moving very fast" in report.events[0].broken_rules
    # scores and captions in one decode; only the key frames' thumbnails read it again
    assert opened.count(str(footage["test"])) <= 2


def test_detect_with_explain_and_thumbnails_decodes_the_whole_video_once(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`detect --explain --report`: one full decode (scores and captions); the key frames' thumbnails
    and the frames explain describes are read around them only (seeking, as in an hour-long video:
    the seek distance is shortened here to fit the 6 s clip), and explain reuses the scorer's frame
    numbers and times instead of reading the video to learn them."""
    import sleuth.tools.frames as frames_module

    calibrated(runtime, footage, rules=SPEED_RULES)
    monkeypatch.setattr(frames_module, "SEEK_AFTER_S", 0.5)
    reads: list[int] = []
    original = FrameReader.__iter__

    def counting(self: FrameReader) -> Any:
        reads.append(0)
        slot = len(reads) - 1
        for frame in original(self):
            reads[slot] += 1
            yield frame

    monkeypatch.setattr(FrameReader, "__iter__", counting)
    report = detect_video(footage["test"], scene="cam1", runtime=runtime,
                          config=VideoDetectConfig(chunk_frames=16, explain=True))
    assert report.explanation is not None and report.thumbnails and report.events
    key_frames = {k for event in report.events for k in event.key_frames}
    assert set(report.thumbnails) == key_frames
    # the score pass; a read of a frame or so per key frame; one read of the frames explain captions (its
    # 16 sampled frames with 4 neighbours each cover most of this short clip), and no pass to learn the times
    assert reads[0] == 60 and len(reads) <= 2 + len(key_frames), reads
    assert all(count <= 2 for count in reads[1:-1]) and reads[-1] < 60, reads


def _watcher(runtime: Runtime, source: str, tmp_path: Path, recorder: Recorder, **config: Any) -> Watcher:
    return Watcher(source, scene="cam1", router=AlertRouter([recorder]), output=tmp_path / "watch",
                   config=WatchConfig(fps=10, **config), runtime=runtime, camera="gate-1")


def test_watching_a_file_raises_an_event_alert_with_evidence_reason_and_key_frame(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    calls_before = len(scripted_openai.requests)
    recorder = Recorder()
    writes: list[float] = []
    write = watch_module._atomic_write

    def counted(path: Path, text: str) -> None:
        if path.name == "watch.json":
            writes.append(time.monotonic())
        write(path, text)

    monkeypatch.setattr(watch_module, "_atomic_write", counted)
    started = time.monotonic()
    summary = _watcher(runtime, str(footage["test"]), tmp_path, recorder).run()
    elapsed = time.monotonic() - started

    assert [a["type"] for a in recorder.alerts][0] == "started" and recorder.alerts[-1]["type"] == "stopped"
    assert summary.frames == 60 and summary.events >= 1
    event = recorder.of("event")[0]
    assert event["camera"] == "gate-1" and 2.5 <= event["start_s"] <= 5.5  # the fast object: 3 s to 5.5 s
    assert event["source_time_s"] == pytest.approx(event["start_s"])  # a file: its own clock is the session's
    assert "an object moving very fast" in event["broken_rules"]
    assert event["reason"] and event["evidence"]["caption"]
    # the caption the reason quotes is the one shown with it (the event's evidence frame, maybe not its first)
    cited = event["evidence"]["reason_cites"]
    if "The caption says '" in event["reason"]:
        quoted = event["reason"].split("The caption says '", 1)[1].split("'", 1)[0]
        assert quoted.lower() in cited["caption"].lower()
    assert event["scores"]["score"] >= event["scores"]["threshold"]
    key = event["key_frames"][0]
    assert Path(key["path"]).is_file() and base64.b64decode(key["jpeg_base64"])[:2] == b"\xff\xd8"  # a JPEG
    ended = recorder.of("event_end")
    assert [e["id"] for e in ended] == [e["id"] for e in recorder.of("event")]
    assert all(e["end_s"] >= e["start_s"] for e in ended)
    # no LLM call by default: the reason comes from the matched rule and the proposer
    assert len(scripted_openai.requests) == calls_before and summary.llm_calls == 0
    report = json.loads((tmp_path / "watch" / "watch.json").read_text())
    assert report["frames"] == 60 and len(report["events"]) == summary.events
    # the rolling report is rewritten about once a second (and when an event opens or closes), not per chunk
    assert len(writes) <= elapsed / WatchConfig().report_every_s + 2 * summary.events + 2 < 60 / 3
    page = (tmp_path / "watch" / "watch.html").read_text()
    assert "Event 1" in page and "an object moving very fast" in page and "<svg" in page


class DroppingServer:
    """Serves one faststart mp4 over HTTP on loopback. A reader opens it twice per connection (a probe,
    then the frames): the first connection is cut off after a third of the file (the stream drops),
    the second gets the whole file; after ``serve`` requests, 503 (the camera is down)."""

    def __init__(self, clip: Path, serve: int = 4) -> None:
        data, counter = clip.read_bytes(), {"n": 0}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                counter["n"] += 1
                if counter["n"] > serve:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                cut = len(data) // 3 if counter["n"] <= 2 else len(data)
                try:
                    self.wfile.write(data[:cut])
                except OSError:
                    pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.mp4"
        self.requests = counter
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_live_stream_that_drops_is_reconnected_the_gap_reported_and_the_event_alerted(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    clip = write_video(tmp_path / "cam.mp4", render(WALKERS, n_frames=30) + render([*WALKERS, FAST], n_frames=60)[30:],
                       faststart=True)
    server = DroppingServer(clip)
    recorder = Recorder()
    watcher = _watcher(runtime, server.url, tmp_path, recorder, retry_base_s=0.05, retry_max_s=0.2)
    done, failed = threading.Event(), []

    def run() -> None:
        try:
            watcher.run()
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            failed.append(exc)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (server.requests["n"] > 4 and recorder.of("gap")):
            time.sleep(0.1)  # the 503s after the second connection: the camera is down
        watcher.stop.set()
        assert done.wait(60), "watch must stop when asked"
    finally:
        server.close()
    assert failed == []
    gaps = recorder.of("gap")
    assert gaps and gaps[0]["seconds"] >= 0 and gaps[0]["reason"]
    times = [a["start_s"] for a in recorder.of("event")]
    assert times == sorted(times)
    # where in the clip each event is: its session time less the (re)connection's start
    assert all(0 <= a["source_time_s"] <= a["start_s"] for a in recorder.of("event"))
    assert any("an object moving very fast" in e["broken_rules"] for e in recorder.of("event"))
    assert 60 < watcher.summary.frames < 120  # the cut first connection, then the whole clip
    assert recorder.alerts[-1]["type"] == "stopped"


def test_alerts_reach_stdout_and_the_webhook_alike(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    calibrated(runtime, footage, rules=SPEED_RULES)
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stdout = io.StringIO()
    try:
        webhook = WebhookSender(f"http://127.0.0.1:{server.server_address[1]}/alerts", tmp_path / "spool",
                                retry_base_s=0.05)
        summary = Watcher(str(footage["test"]), scene="cam1", router=AlertRouter([JsonLinesSink(stdout), webhook]),
                          output=tmp_path / "watch", config=WatchConfig(fps=10), runtime=runtime).run()
    finally:
        server.shutdown()
        server.server_close()
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert summary.pending_alerts == 0 and summary.events >= 1
    assert [a["type"] for a in received] == [a["type"] for a in lines]
    assert received == lines


def test_watch_fails_in_one_line_on_an_uncalibrated_scene_or_a_missing_file(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    with pytest.raises(SleuthError) as caught:
        Watcher(str(footage["test"]), scene="nowhere", router=AlertRouter([Recorder()]), output=tmp_path,
                runtime=runtime)
    assert "sleuth calibrate --scene nowhere" in str(caught.value) and "\n" not in str(caught.value)
    calibrated(runtime, footage, rules=SPEED_RULES)
    recorder = Recorder()
    with pytest.raises(SleuthError) as caught:
        _watcher(runtime, str(tmp_path / "missing.mp4"), tmp_path, recorder).run()
    assert "missing.mp4" in str(caught.value) and "\n" not in str(caught.value)
    assert recorder.alerts[-1]["type"] == "stopped"  # what was started is closed



def test_a_folder_source_reads_each_complete_video_that_arrives_as_the_next_segment(tmp_path: Path) -> None:
    from sleuth.live.sources import LiveFrames

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_video(inbox / "a.mp4", render(WALKERS, n_frames=12))
    (inbox / "notes.txt").write_text("not a video")
    frames = LiveFrames(str(inbox), fps=None, poll_s=0.02)
    seen = []
    for item in frames:
        seen.append(item)
        if len(seen) == 12:
            write_video(inbox / "b.mp4", render(WALKERS, n_frames=8))  # arrives while the first is read
        if len(seen) == 20:
            frames.stop.set()
    assert frames.kind == "folder" and [s.segment for s in seen] == [0] * 12 + [1] * 8
    assert [s.frame.index for s in seen] == list(range(20))
    times = [s.frame.time_s for s in seen]
    assert times == sorted(times)  # the second file continues the watch's clock


def test_several_cameras_are_watched_at_once_on_one_runtime(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    """Two cameras of a calibrated scene alert under their own names with their own reports; a camera of
    an uncalibrated scene is reported and left out, and stops nothing else."""
    from sleuth.live.cameras import CameraWatch, load_cameras

    calibrated(runtime, footage, rules=SPEED_RULES)
    config = tmp_path / "cameras.yaml"
    config.write_text(f"""cameras:
  - {{name: gate-1, source: "{footage['test']}", scene: cam1, fps: 10}}
  - {{name: gate-2, source: "{footage['test']}", scene: cam1, fps: 10}}
  - {{name: lobby, source: "{footage['test']}", scene: nowhere}}
""")
    recorder, logged = Recorder(), []
    group = CameraWatch(load_cameras(config), runtime=runtime, output=tmp_path / "watch", shared=[recorder],
                        log=logged.append)
    assert sorted(group.watchers) == ["gate-1", "gate-2"] and "nowhere" in group.errors["lobby"]
    assert any(line.startswith("[lobby] not watched: scene 'nowhere'") for line in logged)
    summaries = group.run()
    assert {name: s.frames for name, s in summaries.items()} == {"gate-1": 60, "gate-2": 60}
    for name in ("gate-1", "gate-2"):
        events = [a for a in recorder.of("event") if a["camera"] == name]
        assert events and any("an object moving very fast" in e["broken_rules"] for e in events)
        assert (tmp_path / "watch" / name / "watch.html").is_file()
        assert [a["type"] for a in recorder.alerts if a["camera"] == name][-1] == "stopped"


@pytest.mark.parametrize(("text", "message"), [
    ("cameras: []", "cameras: List should have at least 1 item"),
    ("cameras:\n  - {name: a, source: x.mp4}", "cameras.0.scene: Field required"),
    ("cameras:\n  - {name: a, source: x.mp4, scene: s}\n  - {name: a, source: y.mp4, scene: s}",
     "a appear more than once"),
    ("cameras:\n  - {name: ../a, source: x.mp4, scene: s}", "must be letters, digits"),
    ("cameras: [", "cannot read camera file"),
])
def test_a_bad_camera_file_fails_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    from sleuth.live.cameras import load_cameras

    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    with pytest.raises(SleuthError) as caught:
        load_cameras(path)
    assert message in caught.value.one_line() and "\n" not in caught.value.one_line()
    with pytest.raises(SleuthError, match="not found"):
        load_cameras(tmp_path / "none.yaml")


@pytest.mark.slow
def test_each_camera_can_run_as_its_own_process_with_alerts_merged(
        runtime: Runtime, footage: dict[str, Path], scripted_openai: ScriptedOpenAI, tmp_path: Path) -> None:
    """``sleuth watch --cameras`` (the default: one process per camera, the cores shared out): each
    child's alerts reach the one stdout under its camera's name; a camera whose scene is not calibrated
    fails alone, its one-line error logged under its name."""
    from sleuth.live.cameras import CameraProcesses, load_cameras

    calibrated(runtime, footage, rules=SPEED_RULES)
    runtime.close()  # the children open the rule memory themselves
    config = tmp_path / "cameras.yaml"
    config.write_text(f"""cameras:
  - {{name: gate-1, source: "{footage['test']}", scene: cam1, fps: 10}}
  - {{name: lobby, source: "{footage['test']}", scene: nowhere}}
""")
    recorder, logged = Recorder(), []
    group = CameraProcesses(load_cameras(config), data_dir=runtime.settings.data_dir, output=tmp_path / "watch",
                            shared=[recorder], log=logged.append)
    assert group.env["SLEUTH_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    codes = group.run()
    assert codes["gate-1"] == 0 and codes["lobby"] != 0
    assert any(line.startswith("[lobby] ") and "scene 'nowhere'" in line for line in logged)
    events = [a for a in recorder.of("event") if a["camera"] == "gate-1"]
    assert events and any("an object moving very fast" in e["broken_rules"] for e in events)
    assert [a["type"] for a in recorder.alerts if a["camera"] == "gate-1"][-1] == "stopped"
    report = json.loads((tmp_path / "watch" / "gate-1" / "watch.json").read_text())
    assert report["frames"] == 60 and report["camera"] == "gate-1"
