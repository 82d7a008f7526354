"""The HTTP API: keys, uploads, path safety, detect jobs (and their persistence), chat over SSE, limits.

Control-flow tests use a fake detect function in the job store and a fake investigator that
yields scripted :class:`ChatEvent` objects; one test runs the real detect graph through the API
(scripted LLM, real MiniLM and proposer), and one deploys the Ray Serve ingress (slow).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.detect import DetectReport, FrameScore, VideoEvent
from sleuth.graphs.investigate import ChatEvent
from sleuth.serve.access import Access
from sleuth.serve.api import ApiLimits, create_api
from sleuth.serve.jobs import DetectJobRequest, JobStore

from tests.synthetic_video import Mover, render, write_video

KEY = "s3cret-key"


# -- fakes --------------------------------------------------------------------------------------

class FakeDetect:
    """Stands in for detect_video: reports progress, optionally waits to be released, returns a report."""

    def __init__(self, *, block: bool = False, error: Exception | None = None) -> None:
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.started = threading.Event()
        self.error = error
        self.requests: list[DetectJobRequest] = []

    def __call__(self, request: DetectJobRequest, progress: Any) -> DetectReport:
        self.requests.append(request)
        progress("caption", 1, 4)
        self.started.set()
        assert self.release.wait(10)
        if self.error is not None:
            raise self.error
        progress("caption", 4, 4)
        return make_report(request.video, request.scene)


def make_report(video: str, scene: str) -> DetectReport:
    frames = [FrameScore(index=i, time_s=i / 10, score=0.9 if 4 <= i <= 6 else 0.1, proposer=0.4, gated=True,
                         anomalous=4 <= i <= 6, caption="a person") for i in range(10)]
    event = VideoEvent(id=1, start_frame=4, end_frame=6, start_s=0.4, end_s=0.6, peak_frame=5, peak_s=0.5,
                       peak_score=0.9, broken_rules=["Riding a bicycle"], reason="A bicycle on the path.")
    return DetectReport(video=video, scene=scene, threshold=0.5, gate_threshold=1.0, rules_version=2,
                        rules=["anomaly: Riding a bicycle"], frames=frames, events=[event])


class FakeInvestigator:
    """The Investigator's methods over scripted turns: a detect request pauses for confirmation."""

    def __init__(self) -> None:
        self.threads: dict[str, list[dict[str, Any]]] = {}
        self.waiting: dict[str, ChatEvent] = {}
        self.sent: list[tuple[str, str, list[str]]] = []
        self.crash = False
        self.count = 0

    def new_thread(self) -> str:
        self.count += 1
        return f"thread{self.count}"

    def send(self, thread_id: str, text: str, *, attachments: Sequence[str] = ()) -> Iterator[ChatEvent]:
        self.sent.append((thread_id, text, list(attachments)))
        self.threads.setdefault(thread_id, []).append({"role": "user", "content": text})
        if self.crash:
            yield ChatEvent(type="token", thread_id=thread_id, text="Let")
            raise RuntimeError("boom\nTraceback (most recent call last): secret internals")
        for piece in ("Let me ", "look."):
            yield ChatEvent(type="token", thread_id=thread_id, text=piece)
        yield ChatEvent(type="tool_start", thread_id=thread_id, tool="list_scenes", args={})
        yield ChatEvent(type="tool_end", thread_id=thread_id, tool="list_scenes", result="- gate")
        pause = ChatEvent(type="interrupt", thread_id=thread_id, text="Run detect on gate.mp4 (scene gate)?",
                          tool="detect", args={"video": "gate.mp4", "scene": "gate"})
        self.waiting[thread_id] = pause
        yield pause

    def resume(self, thread_id: str, approved: bool) -> Iterator[ChatEvent]:
        self.waiting.pop(thread_id)
        answer = "Event 1 at 0:00.4-0:00.6 breaks 'Riding a bicycle'." if approved else "Not running detect."
        self.threads[thread_id].append({"role": "assistant", "content": answer})
        yield ChatEvent(type="answer", thread_id=thread_id, text=answer, files=["/tmp/report.html"] if approved else [])

    def pending(self, thread_id: str) -> ChatEvent | None:
        return self.waiting.get(thread_id)

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        return list(self.threads.get(thread_id, []))


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    videos = tmp_path / "videos"
    videos.mkdir()
    video = write_video(videos / "gate.mp4", render([Mover(0, 10, 16, 40, vx=30.0)], n_frames=12))
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(video.read_bytes())
    (videos / "link.mp4").symlink_to(secret)
    monkeypatch.setenv("SLEUTH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SLEUTH_DATA_DIRS", json.dumps([str(videos)]))
    return {"videos": videos, "video": video, "secret": secret, "data": tmp_path / "data"}


@pytest.fixture
def settings(folders: dict[str, Path]) -> Settings:
    return load_settings()


def client_for(settings: Settings, *, detect: Any = None, investigator: Any = None,
               limits: ApiLimits | None = None, keyed: bool = True) -> tuple[TestClient, JobStore]:
    """A client of an API whose key is KEY; it sends the key unless ``keyed`` is False."""
    jobs = JobStore(settings, detect=detect or FakeDetect())
    app = create_api(settings, jobs=jobs, investigator=investigator or FakeInvestigator(), limits=limits,
                     access=Access(token=KEY))
    return TestClient(app, base_url="http://127.0.0.1:8080", headers={"X-API-Key": KEY} if keyed else None), jobs


def wait_for(client: TestClient, job_id: str, status: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] == status:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never became {status}: {job}")


def sse(response: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a text/event-stream body."""
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


# -- keys ---------------------------------------------------------------------------------------

def test_every_endpoint_but_health_needs_the_key(settings: Settings) -> None:
    client, _ = client_for(settings, keyed=False)
    health = client.get("/v1/health")
    assert health.status_code == 200 and health.json()["auth"] is True
    for method, path in (("get", "/v1/scenes"), ("get", "/v1/jobs"), ("post", "/v1/jobs"), ("post", "/v1/chat"),
                         ("post", "/v1/videos"), ("get", "/v1/chat/t1"), ("get", "/v1/jobs/abc/report"),
                         ("get", "/v1/files?path=x.json")):
        answer = client.request(method, path)
        assert answer.status_code == 401, path
        assert answer.json()["error"] == "this API needs a key" and "Bearer" in answer.json()["hint"]
    wrong = client.get("/v1/scenes", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "missing or wrong API key"
    assert client.get("/v1/scenes", headers={"X-API-Key": KEY + "x"}).status_code == 401
    assert client.get("/v1/scenes", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert client.get("/v1/scenes", headers={"X-API-Key": KEY}).status_code == 200


def test_without_sleuth_api_key_a_key_is_generated_and_needed(settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: the key-less API was open to any page the analyst visits."""
    monkeypatch.delenv("SLEUTH_API_KEY", raising=False)
    access = Access.for_server()
    assert access.generated and len(access.token) >= 32
    assert Access.for_server().token != access.token  # a new one per run
    client = TestClient(create_api(settings, jobs=JobStore(settings, detect=FakeDetect()), access=access),
                        base_url="http://127.0.0.1:8080")
    assert client.get("/v1/scenes").status_code == 401
    assert client.get("/v1/scenes", headers={"X-API-Key": access.token}).status_code == 200
    monkeypatch.setenv("SLEUTH_API_KEY", KEY)
    assert Access.for_server().token == KEY and not Access.for_server().generated


def test_calibrated_scenes_are_listed(settings: Settings) -> None:
    from sleuth.memory.scenes import SceneProfile, SceneStore

    SceneStore(settings).save(SceneProfile(scene="gate", footage=["/videos/normal.mp4"], fps=10.0, frames=80,
                                           rules_version=3))
    client, _ = client_for(settings)
    scenes = client.get("/v1/scenes").json()["scenes"]
    assert [(s["scene"], s["rules_version"], s["frames"]) for s in scenes] == [("gate", 3, 80)]


# -- uploads ------------------------------------------------------------------------------------

def test_an_upload_is_stored_under_a_generated_name_and_can_be_detected(
        settings: Settings, folders: dict[str, Path]) -> None:
    client, _ = client_for(settings)
    data = folders["video"].read_bytes()
    answer = client.post("/v1/videos", files={"file": ("../../evil name.mp4", data, "video/mp4")})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    stored = Path(body["path"])
    assert stored.parent == (folders["data"] / "uploads").resolve() and stored.suffix == ".mp4"
    assert "evil" not in stored.name and stored.read_bytes() == data
    assert body["filename"] == "evil name.mp4" and body["bytes"] == len(data)
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no partial file left
    job = client.post("/v1/jobs", json={"video": body["path"], "scene": "gate"})
    assert job.status_code == 202
    assert wait_for(client, job.json()["id"], "done")["request"]["video"] == str(stored)


def test_uploads_over_the_limit_or_not_videos_are_refused(settings: Settings, folders: dict[str, Path]) -> None:
    client, _ = client_for(settings, limits=ApiLimits(max_upload_mb=0.01))  # about 10 KB
    big = client.post("/v1/videos", files={"file": ("big.mp4", os.urandom(20_000), "video/mp4")})
    assert big.status_code == 413
    assert big.json()["error"] == "the video is over the 0.01 MB upload limit"
    assert "SLEUTH_API_MAX_UPLOAD_MB" in big.json()["hint"]
    huge = client.post("/v1/videos", files={"file": ("huge.mp4", os.urandom(200_000), "video/mp4")})
    assert huge.status_code == 413  # refused from its declared length, before reading it
    text = client.post("/v1/videos", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 415 and text.json()["error"] == "'notes.txt' is not a video file"
    fake = client.post("/v1/videos", files={"file": ("fake.mp4", b"not a video at all", "video/mp4")})
    assert fake.status_code == 415 and "not a readable video" in fake.json()["error"]
    empty = client.post("/v1/videos", data={"note": "no file"}, files={"other": ("", b"", "text/plain")})
    assert empty.status_code in (415, 422)
    raw = client.post("/v1/videos", content=b"xx", headers={"content-type": "application/octet-stream"})
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["error"]
    uploads = folders["data"] / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []


# -- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_paths_outside_the_data_folders_are_forbidden(settings: Settings, folders: dict[str, Path],
                                                      kind: str) -> None:
    path = {"dotdot": str(folders["videos"] / ".." / "secret.mp4"), "absolute": str(folders["secret"]),
            "symlink": str(folders["videos"] / "link.mp4")}[kind]
    investigator = FakeInvestigator()
    client, jobs = client_for(settings, investigator=investigator)
    job = client.post("/v1/jobs", json={"video": path, "scene": "gate"})
    assert job.status_code == 403 and job.json()["error"] == f"{path} is outside the data folders"
    assert str(folders["videos"]) in job.json()["hint"]
    chat = client.post("/v1/chat", json={"message": "look at this", "attachments": [path]})
    assert chat.status_code == 403 and "outside the data folders" in chat.json()["error"]
    assert jobs.recent() == [] and investigator.sent == []
    relative = client.post("/v1/jobs", json={"video": "../../../../etc/passwd", "scene": "gate"})
    assert relative.status_code == 403
    read = client.get("/v1/files", params={"path": str(folders["secret"])})
    assert read.status_code == 403


def test_a_missing_video_is_404_and_bad_fields_are_422_with_a_clear_message(
        settings: Settings, folders: dict[str, Path]) -> None:
    client, _ = client_for(settings)
    missing = client.post("/v1/jobs", json={"video": str(folders["videos"] / "nope.mp4"), "scene": "gate"})
    assert missing.status_code == 404 and missing.json()["error"].startswith("video not found: ")
    backwards = client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "gate",
                                              "start_s": 5, "end_s": 2})
    assert backwards.status_code == 422 and backwards.json()["error"] == "end_s (2.0) must be after start_s (5.0)"
    bad_scene = client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "../../etc"})
    assert bad_scene.status_code == 422 and bad_scene.json()["error"].startswith("scene: ")
    no_scene = client.post("/v1/jobs", json={"video": str(folders["video"])})
    assert no_scene.status_code == 422 and no_scene.json()["error"] == "scene: Field required"
    not_json = client.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and "Traceback" not in not_json.text


def test_a_body_over_the_limit_is_413(settings: Settings, folders: dict[str, Path]) -> None:
    client, _ = client_for(settings, limits=ApiLimits(max_body_kb=4))
    body = {"video": str(folders["video"]), "scene": "gate", "pad": "x" * 5000}
    answer = client.post("/v1/jobs", json=body)
    assert answer.status_code == 413 and answer.json()["error"] == "the request body is over the 4 KB limit"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"message": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = client.post("/v1/chat", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"] == "the request body is over the 4 KB limit"
    assert "SLEUTH_API_MAX_BODY_KB" in streamed.json()["hint"]


# -- jobs ---------------------------------------------------------------------------------------

def test_a_job_runs_in_the_background_and_serves_its_events_and_report(
        settings: Settings, folders: dict[str, Path]) -> None:
    detect = FakeDetect(block=True)
    client, _ = client_for(settings, detect=detect)
    created = client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "gate", "start_s": 0.2})
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert created.json()["status"] == "queued" and created.headers["location"].endswith(f"/v1/jobs/{job_id}")
    assert detect.started.wait(10)
    running = client.get(f"/v1/jobs/{job_id}").json()
    assert running["status"] == "running"
    assert running["progress"] == {"stage": "caption", "done": 1, "total": 4}
    early = client.get(f"/v1/jobs/{job_id}/events")
    assert early.status_code == 409 and early.json()["error"] == f"job {job_id} has no report: it is running"
    assert client.get(f"/v1/jobs/{job_id}/report").status_code == 409
    detect.release.set()
    done = wait_for(client, job_id, "done")
    assert done["events"] == 1 and done["error"] is None and done["finished"]
    assert detect.requests[0].start_s == 0.2 and detect.requests[0].video == str(folders["video"].resolve())
    events = client.get(f"/v1/jobs/{job_id}/events").json()
    assert events["scene"] == "gate" and events["rules_version"] == 2
    assert [(e["id"], e["start_s"], e["broken_rules"]) for e in events["events"]] == [(1, 0.4, ["Riding a bicycle"])]
    page = client.get(f"/v1/jobs/{job_id}/report")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Riding a bicycle" in page.text and "data:image/png;base64," in page.text
    data = client.get(f"/v1/jobs/{job_id}/report.json")
    assert DetectReport.model_validate(data.json()).events[0].reason == "A bicycle on the path."
    assert [job["id"] for job in client.get("/v1/jobs").json()["jobs"]] == [job_id]


def test_unknown_jobs_are_404(settings: Settings) -> None:
    client, _ = client_for(settings)
    for path in ("/v1/jobs/{}", "/v1/jobs/{}/events", "/v1/jobs/{}/report", "/v1/jobs/{}/report.json"):
        for job_id in ("0" * 32, "..%2F..%2Fetc", "x"):
            answer = client.get(path.format(job_id))
            assert answer.status_code == 404, (path, job_id)
            assert answer.json()["error"].startswith("no job") or answer.json()["error"] == "Not Found"


def test_finished_jobs_survive_a_restart_and_unfinished_ones_fail_clearly(
        settings: Settings, folders: dict[str, Path]) -> None:
    client, jobs = client_for(settings)
    done_id = client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "gate"}).json()["id"]
    wait_for(client, done_id, "done")
    stuck = FakeDetect(block=True)
    stuck_client, stuck_jobs = client_for(settings, detect=stuck)
    stuck_id = stuck_client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "gate"}).json()["id"]
    assert stuck.started.wait(10)

    restarted, _ = client_for(settings)  # a new server over the same data folder
    assert restarted.get(f"/v1/jobs/{done_id}").json()["status"] == "done"
    assert restarted.get(f"/v1/jobs/{done_id}/events").json()["events"][0]["peak_frame"] == 5
    assert "Riding a bicycle" in restarted.get(f"/v1/jobs/{done_id}/report").text
    lost = restarted.get(f"/v1/jobs/{stuck_id}").json()
    assert lost["status"] == "failed" and "server stopped before this job finished" in lost["error"]
    gone = restarted.get(f"/v1/jobs/{stuck_id}/events")
    assert gone.status_code == 409 and "it failed: the server stopped" in gone.json()["error"]
    stuck.release.set()
    stuck_jobs.shutdown()
    jobs.shutdown()


def test_a_failing_detect_fails_the_job_in_one_line(settings: Settings, folders: dict[str, Path]) -> None:
    error = SleuthError("scene 'gate' is not calibrated (calibrated scenes: none)", hint="run `sleuth calibrate`")
    client, _ = client_for(settings, detect=FakeDetect(error=error))
    job_id = client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "gate"}).json()["id"]
    failed = wait_for(client, job_id, "failed")
    assert failed["error"] == error.one_line()
    crash_client, _ = client_for(settings, detect=FakeDetect(error=ValueError("bad\nframe 3 details")))
    crash_id = crash_client.post("/v1/jobs", json={"video": str(folders["video"]), "scene": "gate"}).json()["id"]
    assert wait_for(crash_client, crash_id, "failed")["error"] == "unexpected ValueError: bad (see the server log)"


# -- chat ---------------------------------------------------------------------------------------

def test_chat_streams_events_pauses_for_confirmation_and_resumes(settings: Settings,
                                                                 folders: dict[str, Path]) -> None:
    investigator = FakeInvestigator()
    client, _ = client_for(settings, investigator=investigator)
    answer = client.post("/v1/chat", json={"message": "any bikes in gate.mp4?", "attachments": [str(folders["video"])]})
    assert answer.status_code == 200
    events = sse(answer)
    assert [name for name, _ in events] == ["token", "token", "tool_start", "tool_end", "interrupt"]
    assert all(name == data["type"] for name, data in events)
    thread = events[0][1]["thread_id"]
    assert thread == "thread1" and all(data["thread_id"] == thread for _, data in events)
    assert "".join(data["text"] for name, data in events if name == "token") == "Let me look."
    assert events[-1][1]["tool"] == "detect" and events[-1][1]["args"] == {"video": "gate.mp4", "scene": "gate"}
    assert investigator.sent == [(thread, "any bikes in gate.mp4?", [str(folders["video"].resolve())])]

    history = client.get(f"/v1/chat/{thread}").json()
    assert history["messages"] == [{"role": "user", "content": "any bikes in gate.mp4?"}]
    assert history["pending"]["text"] == "Run detect on gate.mp4 (scene gate)?"
    busy = client.post("/v1/chat", json={"thread_id": thread, "message": "hello?"})
    assert busy.status_code == 409 and "waits for a confirmation" in busy.json()["error"]

    resumed = sse(client.post(f"/v1/chat/{thread}/confirm", json={"approved": True}))
    assert [name for name, _ in resumed] == ["answer"]
    assert "Riding a bicycle" in resumed[0][1]["text"] and resumed[0][1]["files"] == ["/tmp/report.html"]
    again = client.post(f"/v1/chat/{thread}/confirm", json={"approved": False})
    assert again.status_code == 409 and again.json()["error"] == f"nothing in thread {thread} waits for a confirmation"
    assert client.get(f"/v1/chat/{thread}").json()["pending"] is None


def test_chat_input_errors_are_clear(settings: Settings, folders: dict[str, Path]) -> None:
    client, _ = client_for(settings, limits=ApiLimits(max_message_chars=50))
    long = client.post("/v1/chat", json={"message": "x" * 51})
    assert long.status_code == 422
    assert long.json()["error"] == "the message is 51 characters, over the limit of 50"
    assert client.post("/v1/chat", json={"message": ""}).status_code == 422
    assert client.post("/v1/chat", json={"message": "hi", "thread_id": "../x"}).status_code == 422
    missing = client.post("/v1/chat", json={"message": "hi", "attachments": [str(folders["videos"] / "none.mp4")]})
    assert missing.status_code == 404
    unknown = client.get("/v1/chat/nosuchthread")
    assert unknown.status_code == 404 and unknown.json()["error"] == "no chat thread 'nosuchthread'"
    assert client.post("/v1/chat/nosuchthread/confirm", json={"approved": True}).status_code == 409
    assert client.post("/v1/chat/t1/confirm", json={"approved": "maybe"}).status_code == 422


def test_an_agent_crash_ends_the_stream_with_one_error_line(settings: Settings) -> None:
    investigator = FakeInvestigator()
    investigator.crash = True
    client, _ = client_for(settings, investigator=investigator)
    answer = client.post("/v1/chat", json={"message": "hi"})
    events = sse(answer)
    assert [name for name, _ in events] == ["token", "error"]
    assert events[-1][1]["text"] == "unexpected RuntimeError in the agent (see the server log)"
    assert "Traceback" not in answer.text and "secret" not in answer.text
    assert sse(client.post("/v1/chat", json={"thread_id": "thread1", "message": "again"}))  # the thread is free


def test_the_real_investigator_is_built_on_first_chat_use(scripted_openai: Any, folders: dict[str, Path]) -> None:
    scripted_openai.replies = ["There is no calibrated scene yet."]
    settings = load_settings()  # after the scripted endpoint became the llm role
    assert settings.llm.model == "openai/scripted"
    app = create_api(settings, jobs=JobStore(settings, detect=FakeDetect()), access=Access(token=KEY))
    client = TestClient(app, base_url="http://localhost:8080", headers={"Authorization": f"Bearer {KEY}"})
    assert client.get("/v1/chat/abc").status_code == 404  # built now, from the settings
    events = sse(client.post("/v1/chat", json={"message": "which scenes are there?"}))
    assert events[-1][0] == "answer" and events[-1][1]["text"] == "There is no calibrated scene yet."
    thread = events[-1][1]["thread_id"]
    history = client.get(f"/v1/chat/{thread}").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_files_the_agent_wrote_can_be_fetched_and_nothing_else(settings: Settings, folders: dict[str, Path]) -> None:
    client, _ = client_for(settings)
    image = folders["data"] / "chat" / "thread1" / "frame-1.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"\xff\xd8jpeg")
    assert client.get("/v1/files", params={"path": str(image)}).content == b"\xff\xd8jpeg"
    for path in (str(folders["video"]), str(image.parent / ".." / ".." / "checkpoints.sqlite"),
                 str(image.with_suffix(".py"))):
        assert client.get("/v1/files", params={"path": path}).status_code == 403, path
    assert client.get("/v1/files", params={"path": str(image.with_name("gone.jpg"))}).status_code == 404


def test_the_cli_command_serves_on_loopback_with_a_key_and_warns_off_loopback(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    import uvicorn
    from sleuth.cli.api import api
    from typer.testing import CliRunner

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    monkeypatch.delenv("SLEUTH_API_KEY", raising=False)
    cli = typer.Typer()
    cli.command()(api)
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 0, result.output
    assert served["host"] == "127.0.0.1" and served["port"] == 8080
    key = re.search(r"API key for this run \(no SLEUTH_API_KEY set\): (\S+)", result.output)
    assert key is not None and "warning" not in result.output
    client = TestClient(served["app"], base_url="http://127.0.0.1:8080")
    assert client.get("/v1/scenes").status_code == 401
    assert client.get("/v1/scenes", headers={"X-API-Key": key.group(1)}).status_code == 200
    result = CliRunner().invoke(cli, ["--host", "0.0.0.0", "--port", "9000"])
    assert served["host"] == "0.0.0.0" and "warning: listening on 0.0.0.0" in result.output
    monkeypatch.setenv("SLEUTH_API_KEY", KEY)
    result = CliRunner().invoke(cli, ["--host", "0.0.0.0"])
    assert result.exit_code == 0 and "for this run" not in result.output and KEY not in result.output
    assert TestClient(served["app"], base_url="http://127.0.0.1:8080").get("/v1/scenes").status_code == 401


# -- spec ---------------------------------------------------------------------------------------

def test_the_openapi_spec_lists_the_endpoints_and_the_key(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLEUTH_API_KEY", KEY)
    client, _ = client_for(settings)
    spec = client.get("/v1/openapi.json").json()  # readable without the key, like /docs
    paths = spec["paths"]
    for path, method in (("/v1/health", "get"), ("/v1/scenes", "get"), ("/v1/videos", "post"), ("/v1/jobs", "post"),
                         ("/v1/jobs/{job_id}", "get"), ("/v1/jobs/{job_id}/events", "get"),
                         ("/v1/jobs/{job_id}/report", "get"), ("/v1/jobs/{job_id}/report.json", "get"),
                         ("/v1/chat", "post"), ("/v1/chat/{thread_id}/confirm", "post"),
                         ("/v1/chat/{thread_id}", "get")):
        assert method in paths[path], path
    assert "text/event-stream" in paths["/v1/chat"]["post"]["responses"]["200"]["content"]
    assert "multipart/form-data" in paths["/v1/videos"]["post"]["requestBody"]["content"]
    assert paths["/v1/jobs"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "JobCreated")
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])
    assert "security" not in paths["/v1/health"]["get"] and paths["/v1/scenes"]["get"]["security"]
    assert client.get("/docs").status_code == 200


# -- the real detect --------------------------------------------------------------------------

@pytest.mark.slow  # the real MiniLM embedder (about 5 s in all)
def test_a_job_runs_the_real_detect_graph(scripted_openai: Any, folders: dict[str, Path]) -> None:
    """Calibrated with given rules (scripted LLM, real MiniLM, tiny proposer), then detect through the API."""
    from sleuth.agents.schemas import Rule, RuleSet
    from sleuth.graphs.calibrate import CalibrateConfig, calibrate
    from sleuth.graphs.runtime import Runtime

    scripted_openai.responder = lambda body: (json.dumps({"verdict": "anomaly", "broken_rules": [1],
                                                          "reason": "An object moves very fast."}), None)
    started = time.monotonic()
    walkers = [Mover(5, 30, 10, 20, vx=12), Mover(140, 75, 10, 20, vx=-12)]
    normal = write_video(folders["videos"] / "normal.mp4", render(walkers, n_frames=40))
    test = write_video(folders["videos"] / "test.mp4",
                       render(walkers, n_frames=10) + render([*walkers, Mover(-100, 50, 10, 20, vx=70)],
                                                             n_frames=30)[10:])
    settings = load_settings()
    runtime = Runtime.from_settings(settings)
    rules = RuleSet(scene="cam1", rules=[Rule(text="an object moving very fast", kind="anomaly"),
                                         Rule(text="2 moving objects", kind="normal")])
    config = CalibrateConfig(proposer={"epochs": 1, "samples_per_epoch": 64, "batch_size": 16, "memory_slots": 8},
                             caption_frames=10)
    calibrate([normal], scene="cam1", config=config, runtime=runtime, rules=rules)
    runtime.close()
    jobs = JobStore(settings)  # the default detect: detect_video on a runtime built from the settings
    client = TestClient(create_api(settings, jobs=jobs, investigator=FakeInvestigator(), access=Access(token=KEY)),
                        base_url="http://127.0.0.1:8080", headers={"X-API-Key": KEY})
    job_id = client.post("/v1/jobs", json={"video": str(test), "scene": "cam1", "end_s": 2.0}).json()["id"]
    deadline = time.monotonic() + 60
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["status"] == "done", job["error"]
    report = DetectReport.model_validate(client.get(f"/v1/jobs/{job_id}/report.json").json())
    assert len(report.frames) == 21 and report.frames[0].index == 0 and report.rules_version == 1
    assert "an object moving very fast" in " ".join(report.rules)
    assert client.get(f"/v1/jobs/{job_id}/report").status_code == 200
    jobs.shutdown()
    print(f"real detect through the API: {time.monotonic() - started:.1f} s")


# -- Ray Serve ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_ray_serve_ingress_answers_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import socket
    import tempfile
    import urllib.error
    import urllib.request

    import ray
    from ray import serve
    from sleuth.serve.api_ingress import build_api_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="sa-", dir="/tmp"))  # Ray's socket paths must stay short
    monkeypatch.setenv("SLEUTH_API_KEY", KEY)  # the replicas of this local Ray inherit the environment
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=str(temp / "ray"), log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_api_app({"settings": {"data_dir": str(tmp_path / "data")}})
        serve.run(app, name="sleuth-api-test", route_prefix="/", blocking=False)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "the API never answered"
                time.sleep(0.5)
        assert body["status"] == "ok" and body["auth"] is True
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/scenes", timeout=5)
        assert refused.value.code == 401
        keyed = urllib.request.Request(f"http://127.0.0.1:{port}/v1/scenes", headers={"X-API-Key": KEY})
        with urllib.request.urlopen(keyed, timeout=5) as response:
            assert json.loads(response.read()) == {"scenes": []}
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
