"""``sleuth ui``: the investigate agent as a browser chat (Gradio).

Every browser session keeps its own thread id (shown at the top; "New thread" starts another,
``?thread=ID`` in the address resumes one). A message (with optional video uploads, copied into
:func:`sleuth.datapaths.uploads_dir` and passed as attachments) streams the
:class:`~sleuth.graphs.investigate.ChatEvent` s of :meth:`Investigator.send` into the chat: tokens
as the model writes, each tool step as a collapsible message (its arguments, progress and result),
the frames and plots a tool wrote inline, reports as links. When the agent asks before a long job
or a change to stored state, Approve / Decline buttons answer it through :meth:`Investigator.resume`.

Nothing is fetched from the internet at run time: analytics are off, the theme uses the fonts
bundled with Gradio (or the system's), and ``share`` stays off unless asked for.

The page is closed by default (:mod:`sleuth.serve.access`): every route, Gradio's file routes
included, needs the server's token (``SLEUTH_API_KEY``, or one generated at start and carried by
the printed address, then kept in a SameSite=Strict cookie); foreign ``Host`` names and requests
from other origins are refused; files are served only from the data folders, the uploads and the
chat's own files, never from the folder the server was started from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry calls

import gradio as gr  # noqa: E402
from sleuth.config import Settings  # noqa: E402
from sleuth.datapaths import allowed_roots, chat_dir, for_serving, uploads_dir, within  # noqa: E402
from sleuth.errors import SleuthError  # noqa: E402
from sleuth.serve.access import Access, AccessGuard  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

if TYPE_CHECKING:
    from sleuth.graphs.investigate import ChatEvent

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
VIDEO_TYPES = [".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"]
Message = dict[str, Any]


class ChatSession(Protocol):
    """What the web chat needs of :class:`~sleuth.graphs.investigate.Investigator`."""

    def new_thread(self) -> str: ...
    def send(self, thread_id: str, text: str, *, attachments: Any = ()) -> Iterator[ChatEvent]: ...
    def resume(self, thread_id: str, approved: bool) -> Iterator[ChatEvent]: ...
    def pending(self, thread_id: str) -> ChatEvent | None: ...
    def history(self, thread_id: str) -> list[dict[str, Any]]: ...


def served_roots(settings: Settings) -> list[Path]:
    """Folders whose files the browser may fetch: the data folders, uploads and the chat's own files."""
    roots = [*allowed_roots(settings), chat_dir(settings).resolve()]
    return list(dict.fromkeys(roots))


def _call(tool: str | None, args: dict[str, Any] | None, limit: int = 80) -> str:
    inner = ", ".join(f"{key}={json.dumps(value)}" for key, value in (args or {}).items())
    return f"{tool or 'tool'}({inner[:limit] + '…' if len(inner) > limit else inner})"


class ChatRenderer:
    """Turns ChatEvents into Gradio chat messages, in place, one event at a time.

    Kept separate from the UI so the mapping is testable without a browser: tokens extend the
    current text message, a tool step becomes a collapsible message (``metadata.title``) that
    is pending until its result arrives, files become image or file messages.
    """

    def __init__(self, messages: list[Message], roots: Iterable[Path]) -> None:
        self.messages = messages
        self.roots = [Path(root) for root in roots]
        self.shown: set[str] = set()
        self._text: Message | None = None  # the assistant text message tokens go to
        self._tools: list[Message] = []  # tool steps still running, oldest first

    def _servable(self, path: str) -> bool:
        try:
            resolved = within(path, self.roots)
        except OSError:
            return False
        return resolved is not None and resolved.is_file()

    def _files(self, files: Iterable[str]) -> None:
        for path in files:
            if path in self.shown:
                continue
            self.shown.add(path)
            if not self._servable(path):
                self.messages.append({"role": "assistant", "content": f"wrote `{path}`"})
            elif Path(path).suffix.lower() in IMAGE_SUFFIXES:
                self.messages.append({"role": "assistant", "content": {"path": path, "alt_text": Path(path).name}})
            else:  # reports (.html, .json): a link the browser opens or downloads
                self.messages.append({"role": "assistant", "content": {"path": path}})
        self._text = None

    def apply(self, event: ChatEvent) -> ChatEvent | None:
        """Show one event; returns it when it is an interrupt (the agent waits for approval)."""
        if event.type == "token":
            if self._text is None:
                self._text = {"role": "assistant", "content": ""}
                self.messages.append(self._text)
            self._text["content"] += event.text
        elif event.type == "tool_start":
            arguments = json.dumps(event.args or {}, indent=1)
            started: Message = {"role": "assistant", "content": f"```json\n{arguments}\n```",
                                "metadata": {"title": f"🔧 {_call(event.tool, event.args)}", "status": "pending",
                                             "id": uuid.uuid4().hex[:8]}}
            self.messages.append(started)
            self._tools.append(started)
            self._text = None
        elif event.type == "progress" and event.progress and self._tools:
            done = event.progress
            self._tools[-1]["metadata"]["log"] = f"{done.get('stage', '')} {done.get('done')}/{done.get('total')}"
        elif event.type == "tool_end":
            same = [s for s in self._tools if s["metadata"]["title"].startswith(f"🔧 {event.tool}(")]
            step: Message | None = (same or self._tools)[0] if same or self._tools else None
            if step is None:
                step = {"role": "assistant", "content": "", "metadata": {"title": f"🔧 {event.tool}"}}
                self.messages.append(step)
            else:
                self._tools.remove(step)
            step["metadata"]["status"] = "done"
            step["metadata"].pop("log", None)
            if event.result:
                step["content"] = f"{step['content']}\n\n{event.result}".strip()
            self._files(event.files)
        elif event.type == "interrupt":
            self.messages.append({"role": "assistant", "content": f"⏸ **Needs your approval:** {event.text}"})
            self._text = None
            return event
        elif event.type == "error":
            self.messages.append({"role": "assistant", "content": f"⚠️ {event.text}"})
            self._text = None
        elif event.type == "answer":
            if self._text is not None:
                self._text["content"] = event.text or self._text["content"]
            elif event.text:
                self.messages.append({"role": "assistant", "content": event.text})
            self._files(event.files)
        return None

    def restore(self, message: dict[str, Any]) -> None:
        """Show one message of :meth:`Investigator.history` (reopening a thread)."""
        role, content = message.get("role"), message.get("content") or ""
        if role == "tool":
            self.messages.append({"role": "assistant", "content": content,
                                  "metadata": {"title": f"🔧 {message.get('name') or 'tool'}", "status": "done"}})
        elif role in ("user", "assistant") and content:
            self.messages.append({"role": role, "content": content})
        self._files(message.get("files") or [])

    def close_steps(self) -> None:
        """Tool steps that never reported an end (the turn stopped) stop spinning."""
        for step in self._tools:
            step["metadata"]["status"] = "done"
        self._tools.clear()


def _safe_name(name: str) -> str:
    stem, suffix = os.path.splitext(os.path.basename(name))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"
    return f"{stem[:60]}-{uuid.uuid4().hex[:6]}{suffix.lower()}"


def save_uploads(settings: Settings, files: Iterable[str]) -> list[str]:
    """Copy uploaded files (Gradio's temporary copies) into the uploads folder; their new paths."""
    folder = uploads_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for source in files:
        if Path(source).suffix.lower() not in VIDEO_TYPES:
            raise SleuthError(f"{Path(source).name} is not a video", hint="upload " + ", ".join(VIDEO_TYPES))
        target = folder / _safe_name(source)
        shutil.copyfile(source, target)
        saved.append(str(target))
    return saved


def theme() -> gr.themes.Base:
    """The default look with the system's fonts: no web fonts to fetch."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def build_ui(investigator_factory: Callable[[], ChatSession], settings: Settings) -> gr.Blocks:
    """The chat as Gradio Blocks; the investigator is made on the first request (and shared)."""
    lock = threading.Lock()
    made: list[ChatSession] = []
    roots = served_roots(settings)

    def investigator() -> ChatSession:
        with lock:
            if not made:
                made.append(investigator_factory())
            return made[0]

    def thread_label(thread_id: str) -> str:
        return f"Thread `{thread_id}` (reopen it with `?thread={thread_id}`)"

    def stream(events: Callable[[], Iterator[ChatEvent]],
               messages: list[Message]) -> Iterator[tuple[bool, str | None]]:
        """Render events into ``messages``; yields (finished, question waiting for approval) after each."""
        renderer = ChatRenderer(messages, roots)
        waiting: ChatEvent | None = None
        try:
            for event in events():
                waiting = renderer.apply(event) or waiting
                yield False, None
        except SleuthError as exc:
            messages.append({"role": "assistant", "content": f"⚠️ {exc.one_line()}"})
        except Exception as exc:  # noqa: BLE001 - a browser user gets one line, not a dead chat
            first = (str(exc).splitlines() or [""])[0][:200]
            messages.append({"role": "assistant", "content": f"⚠️ unexpected {type(exc).__name__}: {first}"})
        renderer.close_steps()
        yield True, waiting.text if waiting else None

    def controls(question: str | None) -> tuple[Any, Any, Any]:
        """The textbox is locked while a confirmation waits; the approval row shows the question."""
        return (gr.update(interactive=question is None, value=None),
                gr.update(visible=question is not None),
                gr.update(value=f"**{question}**" if question else ""))

    busy = (gr.update(interactive=False), gr.update(visible=False), gr.update())

    with gr.Blocks(title="Sleuth", analytics_enabled=False) as demo:
        thread = gr.State("")
        history = gr.State([])
        with gr.Row():
            thread_md = gr.Markdown("", elem_id="sleuth-thread")
            new_button = gr.Button("New thread", size="sm", scale=0, elem_id="sleuth-new-thread")
        chatbot = gr.Chatbot(label="Sleuth", height=560, elem_id="sleuth-chat", buttons=["copy"],
                             feedback_options=None, group_consecutive_messages=False,
                             placeholder="Ask about your videos: *what is unusual in vtest.avi after 0:40?*")
        with gr.Row(visible=False, elem_id="sleuth-confirm") as confirm_row:
            question_md = gr.Markdown("")
            approve = gr.Button("Approve", variant="primary", scale=0, elem_id="sleuth-approve")
            decline = gr.Button("Decline", variant="stop", scale=0, elem_id="sleuth-decline")
        box = gr.MultimodalTextbox(placeholder="Message Sleuth (attach videos with the clip)", show_label=False,
                                   file_types=VIDEO_TYPES, file_count="multiple", elem_id="sleuth-input",
                                   submit_btn=True)

        def on_load(request: gr.Request) -> Iterator[tuple[Any, ...]]:
            wanted = (request.query_params.get("thread") or "").strip() if request else ""
            thread_id = wanted if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", wanted) else investigator().new_thread()
            messages: list[Message] = []
            question = None
            if wanted == thread_id:
                renderer = ChatRenderer(messages, roots)
                for past in investigator().history(thread_id):
                    renderer.restore(past)
                pending = investigator().pending(thread_id)
                if pending is not None:
                    question = pending.text
                    renderer.apply(pending)
            yield (thread_id, thread_label(thread_id), messages, messages, *controls(question))

        def on_new() -> tuple[Any, ...]:
            thread_id = investigator().new_thread()
            return (thread_id, thread_label(thread_id), [], [], *controls(None))

        def on_send(value: dict[str, Any] | None, thread_id: str,
                    messages: list[Message]) -> Iterator[tuple[Any, ...]]:
            text = ((value or {}).get("text") or "").strip()
            files = [f if isinstance(f, str) else f.get("path", "") for f in (value or {}).get("files") or []]
            messages = list(messages)
            if not text and not files:
                yield messages, messages, *controls(None)
                return
            try:
                attachments = save_uploads(settings, files)
            except (SleuthError, OSError) as exc:
                messages.append({"role": "assistant", "content": f"⚠️ {exc}"})
                yield messages, messages, *controls(None)
                return
            for path in attachments:
                messages.append({"role": "user", "content": {"path": path}})
            messages.append({"role": "user", "content": text or "(the attached video)"})
            yield messages, messages, *busy
            prompt = text or "Look at the attached video."
            for done, question in stream(lambda: investigator().send(thread_id, prompt, attachments=attachments),
                                         messages):
                yield messages, messages, *(controls(question) if done else busy)

        def on_answer(approved: bool) -> Callable[..., Iterator[tuple[Any, ...]]]:
            def answer(thread_id: str, messages: list[Message]) -> Iterator[tuple[Any, ...]]:
                messages = [*messages, {"role": "user", "content": "✅ Approved" if approved else "✋ Declined"}]
                yield messages, messages, *busy
                for done, question in stream(lambda: investigator().resume(thread_id, approved), messages):
                    yield messages, messages, *(controls(question) if done else busy)
            return answer

        turn_outputs = [chatbot, history, box, confirm_row, question_md]
        chatbot.clear(lambda: [], outputs=[history])  # the bin icon clears the shown messages (the thread stays)
        # Opening a page or a thread does not wait for another session's turn (those run one at a time).
        demo.load(on_load, outputs=[thread, thread_md, chatbot, history, box, confirm_row, question_md],
                  concurrency_limit=None)
        new_button.click(on_new, outputs=[thread, thread_md, chatbot, history, box, confirm_row, question_md],
                         concurrency_limit=None)
        box.submit(on_send, inputs=[box, thread, history], outputs=turn_outputs)
        approve.click(on_answer(True), inputs=[thread, history], outputs=turn_outputs)
        decline.click(on_answer(False), inputs=[thread, history], outputs=turn_outputs)
    return demo


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SleuthError(f"cannot listen on {host}:{port} ({exc.strerror or exc})",
                              hint="is another `sleuth ui` running? pick another with --port") from None


class WebChat:
    """The running web chat: ``sleuth_url`` (its address with the token) to open, ``block_thread()``
    serves until Ctrl-C, ``close()`` stops it; ``blocks`` is the Gradio app."""

    def __init__(self, blocks: gr.Blocks, server: Any, thread: threading.Thread, local_url: str, token: str) -> None:
        self.blocks = blocks
        self.local_url = local_url
        self.sleuth_url = f"{local_url.rstrip('/')}/?{urlencode({'token': token})}"
        self._server = server
        self._thread = thread

    def block_thread(self) -> None:
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def launch_ui(settings: Settings, host: str = "127.0.0.1", port: int = 7860, *,
              investigator_factory: Callable[[], ChatSession] | None = None,
              access: Access | None = None) -> WebChat:
    """Start the web chat server in the background and return it running.

    ``access`` (default :meth:`Access.for_server` of ``host``) holds the token and host names. Its
    :class:`AccessGuard` wraps the whole Gradio app, outside Gradio's own CORS middleware (which
    would otherwise let pages served from loopback read answers), and a CORS middleware that allows
    no origin tells Gradio not to add CORS headers at all. Raises :class:`SleuthError` when the
    port is taken.
    """
    import uvicorn
    from fastapi import FastAPI
    from starlette.middleware.cors import CORSMiddleware

    settings = for_serving(settings)
    access = access or Access.for_server(host)
    if investigator_factory is None:
        def investigator_factory() -> ChatSession:
            from sleuth.graphs.investigate import Investigator
            from sleuth.graphs.runtime import Runtime

            return Investigator(Runtime.from_settings(settings))

    _check_port(host, port)
    demo = build_ui(investigator_factory, settings)
    demo.queue(default_concurrency_limit=1)  # one local model: turns run one at a time
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, middleware=[
        Middleware(AccessGuard, access=access, token_required=True, cookie=f"sleuth-ui-{port}",
                   hint="open the address `sleuth ui` printed (it carries the token)"),
        Middleware(CORSMiddleware, allow_origins=[])])
    gr.mount_gradio_app(app, demo, path="/", server_name=host, server_port=port, footer_links=[], show_error=True,
                        allowed_paths=[str(root) for root in served_roots(settings)], theme=theme())
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="sleuth-ui", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise SleuthError(f"cannot listen on {host}:{port}",
                              hint="is another `sleuth ui` running? pick another with --port")
        time.sleep(0.02)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104
    return WebChat(demo, server, thread, f"http://{shown}:{port}/", access.token)
