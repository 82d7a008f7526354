"""The web chat (`sleuth ui`): events to chat messages, uploads, the port check, and one real browser session.

The investigator is a fake that yields scripted ChatEvents (control flow only); the browser test
drives Debian's chromium through Playwright against the real Gradio server.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import typer
from PIL import Image
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.graphs.investigate import ChatEvent
from typer.testing import CliRunner

webchat = pytest.importorskip("sleuth.serve.webchat")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "videos").mkdir()
    return load_settings(data_dir=tmp_path / "data", data_dirs=[tmp_path / "videos"])


@pytest.fixture
def outputs(settings: Settings) -> dict[str, str]:
    """A frame and a report where the agent writes its files (<data_dir>/chat/<thread>)."""
    folder = Path(settings.data_dir) / "chat" / "t1"
    folder.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "frame_12.0s.png")
    (folder / "report.html").write_text("<html><body>report</body></html>")
    return {"png": str(folder / "frame_12.0s.png"), "html": str(folder / "report.html")}


class FakeInvestigator:
    """Scripted events: a question gets a streamed answer with a frame; "detect ..." asks for approval first."""

    def __init__(self, outputs: dict[str, str], delay_s: float = 0.0) -> None:
        self.outputs = outputs
        self.delay_s = delay_s
        self.calls: list[tuple[str, str, Any]] = []
        self.threads = 0
        self.waiting: dict[str, ChatEvent] = {}

    def new_thread(self) -> str:
        self.threads += 1
        return f"thread{self.threads:03d}"

    def _tokens(self, thread_id: str, text: str) -> Iterator[ChatEvent]:
        for word in text.split(" "):
            time.sleep(self.delay_s)
            yield ChatEvent(type="token", thread_id=thread_id, text=word + " ")

    def send(self, thread_id: str, text: str, *, attachments: Sequence[str] = ()) -> Iterator[ChatEvent]:
        self.calls.append(("send", thread_id, (text, list(attachments))))
        if text.startswith("detect"):
            args = {"video": "vtest.avi", "scene": "demo"}
            self.waiting[thread_id] = ChatEvent(type="interrupt", thread_id=thread_id, tool="detect", args=args,
                                                text="Run detect on vtest.avi (scene demo)?")
            yield self.waiting[thread_id]
            return
        yield ChatEvent(type="tool_start", thread_id=thread_id, tool="show_frame",
                        args={"video": "vtest.avi", "time_s": 12.0})
        yield ChatEvent(type="tool_end", thread_id=thread_id, tool="show_frame", result="frame at 00:12.0",
                        files=[self.outputs["png"]])
        yield from self._tokens(thread_id, "A cyclist crosses the walkway at 00:12.0 (frame 300).")
        yield ChatEvent(type="answer", thread_id=thread_id, files=[self.outputs["png"]],
                        text="A cyclist crosses the walkway at 00:12.0 (frame 300).")

    def resume(self, thread_id: str, approved: bool) -> Iterator[ChatEvent]:
        self.calls.append(("resume", thread_id, approved))
        self.waiting.pop(thread_id)
        if not approved:
            yield ChatEvent(type="answer", thread_id=thread_id, text="Skipped detect.")
            return
        yield ChatEvent(type="tool_start", thread_id=thread_id, tool="detect",
                        args={"video": "vtest.avi", "scene": "demo"})
        yield ChatEvent(type="progress", thread_id=thread_id, progress={"stage": "score", "done": 1, "total": 2})
        yield ChatEvent(type="tool_end", thread_id=thread_id, tool="detect", result="2 events",
                        files=[self.outputs["html"]])
        yield from self._tokens(thread_id, "Detect found 2 events; see the report.")
        yield ChatEvent(type="answer", thread_id=thread_id, text="Detect found 2 events; see the report.",
                        files=[self.outputs["html"]])

    def pending(self, thread_id: str) -> ChatEvent | None:
        return self.waiting.get(thread_id)

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        return []


def _render(events: Sequence[ChatEvent], roots: Sequence[Path]) -> tuple[list[dict[str, Any]], ChatEvent | None]:
    messages: list[dict[str, Any]] = []
    renderer = webchat.ChatRenderer(messages, roots)
    waiting = None
    for event in events:
        waiting = renderer.apply(event) or waiting
    renderer.close_steps()
    return messages, waiting


def test_events_become_streamed_text_tool_steps_and_inline_images(settings: Settings,
                                                                  outputs: dict[str, str]) -> None:
    fake = FakeInvestigator(outputs)
    messages, waiting = _render(list(fake.send("t", "what happens at 12 s?")), webchat.served_roots(settings))
    assert waiting is None
    step, image, answer = messages
    assert step["metadata"]["title"] == '🔧 show_frame(video="vtest.avi", time_s=12.0)'
    assert step["metadata"]["status"] == "done" and "frame at 00:12.0" in step["content"]
    assert image["content"]["path"] == outputs["png"]  # shown inline, once although the answer lists it too
    assert answer == {"role": "assistant", "content": "A cyclist crosses the walkway at 00:12.0 (frame 300)."}


def test_interrupt_and_resume_show_the_question_progress_and_the_report(settings: Settings,
                                                                        outputs: dict[str, str]) -> None:
    fake = FakeInvestigator(outputs)
    messages, waiting = _render(list(fake.send("t", "detect vtest.avi")), webchat.served_roots(settings))
    assert waiting is not None and waiting.text == "Run detect on vtest.avi (scene demo)?"
    assert "Run detect on vtest.avi" in messages[-1]["content"]
    messages, _ = _render(list(fake.resume("t", True)), webchat.served_roots(settings))
    assert messages[0]["metadata"]["status"] == "done" and "log" not in messages[0]["metadata"]
    assert messages[1]["content"] == {"path": outputs["html"]}  # a link to the report
    assert messages[2]["content"] == "Detect found 2 events; see the report."


def test_files_outside_the_served_folders_are_named_not_served(settings: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.png"
    Image.new("RGB", (4, 4)).save(secret)
    events = [ChatEvent(type="tool_end", thread_id="t", tool="show_frame", files=[str(secret)]),
              ChatEvent(type="error", thread_id="t", text="the video is unreadable")]
    messages, _ = _render(events, webchat.served_roots(settings))
    assert messages[1] == {"role": "assistant", "content": f"wrote `{secret}`"}
    assert messages[2]["content"] == "⚠️ the video is unreadable"


def test_uploads_are_copied_into_the_uploads_folder(settings: Settings, tmp_path: Path) -> None:
    upload = tmp_path / "gradio-tmp" / "my clip (1).MP4"
    upload.parent.mkdir()
    upload.write_bytes(b"video")
    saved = [Path(path) for path in webchat.save_uploads(settings, [str(upload)])]
    assert saved[0].parent == Path(settings.data_dir) / "uploads" and saved[0].suffix == ".mp4"
    assert saved[0].read_bytes() == b"video" and saved[0].name.startswith("my_clip_1-")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SleuthError, match="notes.txt is not a video"):
        webchat.save_uploads(settings, [str(tmp_path / "notes.txt")])


def test_a_busy_port_is_a_one_line_error(settings: Settings) -> None:
    from sleuth.cli.ui import ui

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SleuthError, match=f"cannot listen on 127.0.0.1:{port}"):
            webchat.launch_ui(settings, port=port, investigator_factory=lambda: None)
        app = typer.Typer()
        app.command()(ui)
        result = CliRunner().invoke(app, ["--port", str(port)])
    assert result.exit_code == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.output and "--port" in result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_browser_chat_streams_tools_images_and_approval(settings: Settings, outputs: dict[str, str],
                                                        tmp_path: Path) -> None:
    """A real chromium: send, see the streamed answer, the tool step and the frame; approve a detect."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it as root with apt-get)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")

    fake = FakeInvestigator(outputs, delay_s=0.05)
    demo = webchat.launch_ui(settings, port=_free_port(), investigator_factory=lambda: fake)
    external: list[str] = []
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
            page = browser.new_page()

            def offline(route: Any) -> None:  # the page must work without the internet
                if route.request.url.startswith(demo.local_url.rstrip("/")):
                    route.continue_()
                else:
                    external.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.set_default_timeout(15_000)
            page.goto(demo.sleuth_url)  # the address `sleuth ui` prints, with its token
            expect = sync_api.expect
            expect(page.locator("#sleuth-thread")).to_contain_text("thread001")

            box = page.locator("#sleuth-input textarea")
            page.locator("#sleuth-input input[type=file]").set_input_files(str(clip))
            expect(page.locator("#sleuth-input").get_by_role("listitem", name="File thumbnail")).to_be_visible()
            box.fill("what happens at 12 s?")
            box.press("Enter")
            chat = page.locator("#sleuth-chat")
            expect(chat).to_contain_text("A cyclist crosses the walkway at 00:12.0 (frame 300).")
            expect(chat).to_contain_text("🔧 show_frame(")
            frame = chat.locator("img[src*='frame_12.0s']").first
            expect(frame).to_be_visible()
            assert frame.evaluate("img => img.complete && img.naturalWidth") == 64  # really served

            box.fill("detect vtest.avi")
            box.press("Enter")
            expect(page.locator("#sleuth-confirm")).to_contain_text("Run detect on vtest.avi (scene demo)?")
            expect(box).to_be_disabled()
            page.locator("#sleuth-approve").click()
            expect(chat).to_contain_text("Detect found 2 events; see the report.")
            expect(chat).to_contain_text("report.html")
            expect(page.locator("#sleuth-confirm")).to_be_hidden()
            expect(box).to_be_enabled()

            page.locator("#sleuth-new-thread").click()
            expect(page.locator("#sleuth-thread")).to_contain_text("thread002")
            expect(chat).not_to_contain_text("cyclist")
            browser.close()
    finally:
        demo.close()

    (kind, thread, (text, attachments)), second, resumed = fake.calls
    assert (kind, thread, text) == ("send", "thread001", "what happens at 12 s?")
    assert Path(attachments[0]).parent == Path(settings.data_dir) / "uploads"
    assert Path(attachments[0]).read_bytes() == clip.read_bytes()
    assert second[:2] == ("send", "thread001") and resumed == ("resume", "thread001", True)
    assert external == []
