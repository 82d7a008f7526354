"""Sleuth's HTTP API (FastAPI): submit a video, run detect as a job, fetch events and reports, chat.

Everything lives under ``/v1`` and is described by the OpenAPI spec at ``/v1/openapi.json``
(browsable at ``/docs``). The same app runs under uvicorn (``sleuth serve api``) or behind the Ray
Serve ingress of :mod:`sleuth.serve.api_ingress`.

Safety rules, all enforced here:

- **Closed by default** (:mod:`sleuth.serve.access`): every ``/v1`` endpoint but ``/v1/health``
  needs ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (compared in constant time; 401
  otherwise), the key being ``SLEUTH_API_KEY`` or, when it is not set, a token generated for the run
  (``sleuth serve api`` prints it). Requests with a foreign ``Host`` (DNS rebinding) get 421 and
  requests from another origin 403, on every path, before any route runs; no CORS headers.
- **Folders**: without configured data folders the API reads only its uploads, never the folder it
  was started from (:func:`sleuth.datapaths.for_serving`).
- **Sizes**: request bodies are capped (``SLEUTH_API_MAX_BODY_KB``, 1 MB), uploads too
  (``SLEUTH_API_MAX_UPLOAD_MB``, 512 MB, streamed to disk as they arrive) -> 413; chat messages
  longer than ``SLEUTH_API_MAX_MESSAGE_CHARS`` -> 422.
- **Paths**: every path in a request goes through :func:`sleuth.datapaths.resolve_data_path`:
  outside the data folders (``..``, absolute paths, symlinks) -> 403, missing -> 404.
- **Errors**: every error is JSON ``{"error": one line, "hint": ...}``; no traceback ever reaches
  a client (unexpected ones are logged on the server).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sleuth import __version__
from sleuth.config import Settings, load_settings
from sleuth.datapaths import chat_dir, for_serving, jobs_dir, resolve_data_path, uploads_dir, within
from sleuth.errors import SleuthError
from sleuth.graphs.investigate.session import ChatEvent
from sleuth.graphs.investigate.tools import VIDEO_SUFFIXES
from sleuth.serve.access import KEY_ENV, Access, AccessGuard
from sleuth.serve.jobs import DetectJobRequest, Job, JobNotDone, JobNotFound, JobStatus, JobStore
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("sleuth.serve.api")

API_KEY_ENV = KEY_ENV
OUTPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".html", ".json")
THREAD_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_THREAD_ID = re.compile(THREAD_PATTERN)
_MULTIPART_SLACK = 64 * 1024  # part headers and boundaries around the uploaded file
_BEARER = HTTPBearer(auto_error=False, description="The server's SLEUTH_API_KEY as a bearer token.")
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The server's SLEUTH_API_KEY.")


# -- limits and errors ------------------------------------------------------------------------

class ApiLimits(BaseModel):
    """Request limits; :meth:`from_env` reads the ``SLEUTH_API_*`` variables."""

    max_upload_mb: float = Field(default=512.0, gt=0, description="Largest video upload (SLEUTH_API_MAX_UPLOAD_MB).")
    max_body_kb: float = Field(default=1024.0, gt=0, description="Largest JSON body (SLEUTH_API_MAX_BODY_KB).")
    max_message_chars: int = Field(default=8000, ge=1, description="Longest chat message "
                                   "(SLEUTH_API_MAX_MESSAGE_CHARS).")

    @classmethod
    def from_env(cls) -> ApiLimits:
        names = {"max_upload_mb": "SLEUTH_API_MAX_UPLOAD_MB", "max_body_kb": "SLEUTH_API_MAX_BODY_KB",
                 "max_message_chars": "SLEUTH_API_MAX_MESSAGE_CHARS"}
        values = {field: os.environ[env] for field, env in names.items() if os.environ.get(env)}
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise SleuthError(f"invalid API limit in the environment: {str(exc).splitlines()[-1].strip()}",
                              hint=f"set {', '.join(names.values())} to positive numbers") from None

    @property
    def upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def body_bytes(self) -> int:
        return int(self.max_body_kb * 1024)


class ApiError(SleuthError):
    """An expected failure with its HTTP status."""

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class ErrorResponse(BaseModel):
    error: str = Field(description="What went wrong, in one line.")
    hint: str | None = Field(default=None, description="What to do about it.")


def _error(status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status, headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (401, "Missing or wrong API key"), (403, "A path outside the data folders"), (404, "Not found"),
        (409, "Not possible in the current state"), (413, "Too large"), (422, "Invalid input"))}


# -- response models --------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = __version__
    auth: bool = Field(default=True, description="Whether the other endpoints need an API key (always).")


class SceneInfo(BaseModel):
    scene: str
    rules_version: int | None = None
    footage: list[str] = Field(default_factory=list, description="Videos the scene was calibrated on.")
    fps: float | None = None
    frames: int = 0
    created: str | None = None
    problem: str | None = Field(default=None, description="Why the scene's profile could not be read.")


class ScenesResponse(BaseModel):
    scenes: list[SceneInfo]


class UploadResponse(BaseModel):
    path: str = Field(description="Where the video is stored on the server: pass it as `video` to POST /v1/jobs "
                      "or as a chat attachment.")
    filename: str = Field(description="The name the client sent (not used on the server).")
    bytes: int


class JobCreated(BaseModel):
    id: str
    status: JobStatus


class JobsResponse(BaseModel):
    jobs: list[Job]


class EventsResponse(BaseModel):
    job: str
    video: str
    scene: str
    rules_version: int
    events: list[dict[str, Any]] = Field(description="The detect report's events (VideoEvent): id, start_frame, "
                                         "end_frame, start_s, end_s, peak_frame, peak_s, peak_score, broken_rules, "
                                         "reason, key_frames.")


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = Field(default=None, pattern=THREAD_PATTERN, description="Continue this thread "
                                  "(default: a new one; every event names its thread).")
    message: str = Field(min_length=1, description="The person's message.")
    attachments: list[str] = Field(default_factory=list, max_length=8, description="Video paths inside the data "
                                   "folders (e.g. from POST /v1/videos) the message refers to.")


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: bool


ChatEventOut = ChatEvent  # one server-sent event of a chat stream (``event:`` its type, ``data:`` it as JSON)


class ChatHistory(BaseModel):
    thread_id: str
    messages: list[dict[str, Any]] = Field(description="{role: user|assistant|tool, content, ...} in order.")
    pending: ChatEventOut | None = Field(default=None, description="The confirmation the thread waits for.")


_SSE: dict[int | str, dict[str, Any]] = {200: {
    "content": {"text/event-stream": {"schema": ChatEventOut.model_json_schema()}},
    "description": "A stream of ChatEvent objects; the last is one 'answer', 'interrupt' or 'error'."}}


# -- body size limit --------------------------------------------------------------------------

class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` as an HTTP exception, so FastAPI's body parsing passes it on as it is."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(413, message, headers={"Connection": "close"})
        self.hint = hint


class BodySizeLimit:
    """ASGI middleware: 413 for a body over its path's limit (declared length or counted bytes)."""

    def __init__(self, app: ASGIApp, *, limit: int, per_path: dict[str, int],
                 what: dict[str, tuple[str, str]]) -> None:
        self.app = app
        self.limit = limit
        self.per_path = per_path
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        limit = self.per_path.get(path, self.limit)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, path)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(*self.what.get(path, self.what[""]))
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge:
            if started:
                raise
            await self._reject(scope, receive, send, path)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        message, hint = self.what.get(path, self.what[""])
        await _error(413, message, hint, headers={"Connection": "close"})(scope, receive, send)


# -- the app ----------------------------------------------------------------------------------

class _State:
    """What the endpoints share: settings, limits, key, job store, the (lazy) investigator."""

    def __init__(self, settings: Settings, limits: ApiLimits, api_key: str, jobs: JobStore,
                 investigator: Any, make_investigator: Callable[[], Any] | None) -> None:
        self.settings = settings
        self.limits = limits
        self.api_key = api_key
        self.jobs = jobs
        self._investigator = investigator
        self._make_investigator = make_investigator
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self.runtime: Any = None

    def investigator(self) -> Any:
        with self._lock:
            if self._investigator is None:
                if self._make_investigator is not None:
                    self._investigator = self._make_investigator()
                else:
                    from sleuth.graphs.investigate import Investigator
                    from sleuth.graphs.runtime import Runtime

                    self.runtime = Runtime.from_settings(self.settings)
                    self._investigator = Investigator(self.runtime)
            return self._investigator

    def claim(self, thread_id: str) -> None:
        with self._busy_lock:
            if thread_id in self._busy:
                raise ApiError(409, f"thread {thread_id} is still answering another message",
                               hint="wait for its stream to end, then send again")
            self._busy.add(thread_id)

    def release(self, thread_id: str) -> None:
        with self._busy_lock:
            self._busy.discard(thread_id)


def create_api(settings: Settings | None = None, *, investigator: Any = None, jobs: JobStore | None = None,
               limits: ApiLimits | None = None, make_investigator: Callable[[], Any] | None = None,
               access: Access | None = None) -> FastAPI:
    """The API app. ``investigator`` (an :class:`~sleuth.graphs.investigate.Investigator` or anything with
    its methods) and ``jobs`` default to ones built from ``settings``: the investigator on the first chat
    (or with ``make_investigator``), the job store now. ``limits`` default to :meth:`ApiLimits.from_env`;
    ``access`` (the key, Host names and trusted origins) to :meth:`Access.for_server` on loopback, which
    reads ``SLEUTH_API_KEY`` now and generates a key when it is not set."""
    settings = for_serving(settings or load_settings())
    limits = limits or ApiLimits.from_env()
    if access is None:
        access = Access.for_server()
        if access.generated:
            logger.warning("%s is not set: the API takes only a key generated for this app, which nobody was "
                           "told; set %s", API_KEY_ENV, API_KEY_ENV)
    owned_jobs = jobs is None
    state = _State(settings, limits, access.token, jobs or JobStore(settings), investigator, make_investigator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned_jobs:
            state.jobs.shutdown(wait=False)
        if state.runtime is not None:
            state.runtime.close()

    app = FastAPI(title="Sleuth API", version=__version__, lifespan=lifespan,
                  description="Investigate anomalies in surveillance video: upload a video, run detect as a job, "
                  "fetch its events and report, and chat with the investigate agent (server-sent events). "
                  f"When {API_KEY_ENV} is set on the server, send it as `Authorization: Bearer <key>` or "
                  "`X-API-Key: <key>`.",
                  openapi_url="/v1/openapi.json", docs_url=None, redoc_url=None)
    app.state.sleuth = state
    _handle_errors(app)
    _offline_docs(app)
    upload_path = "/v1/videos"
    app.add_middleware(
        BodySizeLimit, limit=limits.body_bytes, per_path={upload_path: limits.upload_bytes + _MULTIPART_SLACK},
        what={"": (f"the request body is over the {limits.max_body_kb:g} KB limit",
                   "send less (SLEUTH_API_MAX_BODY_KB on the server raises the limit)"),
              upload_path: (f"the video is over the {limits.max_upload_mb:g} MB upload limit",
                            "cut it shorter or raise SLEUTH_API_MAX_UPLOAD_MB on the server")})
    app.add_middleware(AccessGuard, access=access)  # outermost: Host and Origin before anything else

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
                  key: Annotated[str | None, Depends(_KEY_HEADER)]) -> None:
        given = (credentials.credentials if credentials else None) or key or ""
        if not secrets.compare_digest(given.encode(), state.api_key.encode()):
            raise ApiError(401, "missing or wrong API key" if given else "this API needs a key",
                           hint="send the key (the server's SLEUTH_API_KEY, or the one it printed at start) as "
                                "`Authorization: Bearer <key>` or `X-API-Key`")

    open_routes = APIRouter(prefix="/v1")
    routes = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], responses={401: _ERRORS[401]})

    @open_routes.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        """Liveness; needs no key."""
        return Health()

    @routes.get("/scenes", response_model=ScenesResponse, tags=["service"])
    def scenes() -> ScenesResponse:
        """The calibrated scenes (what `scene` in a job can name)."""
        from sleuth.memory.scenes import SceneStore

        store = SceneStore(settings)
        found = []
        for name in store.scenes():
            try:
                profile = store.load(name)
            except SleuthError as exc:
                found.append(SceneInfo(scene=name, problem=exc.one_line()))
                continue
            if profile is not None:
                found.append(SceneInfo(scene=name, rules_version=profile.rules_version, footage=profile.footage,
                                       fps=profile.fps, frames=profile.frames, created=profile.created))
        return ScenesResponse(scenes=found)

    @routes.post("/videos", response_model=UploadResponse, status_code=201, tags=["videos"],
                 responses={413: _ERRORS[413], 415: {"model": ErrorResponse, "description": "Not a video"},
                            422: _ERRORS[422]},
                 openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["file"],
                     "properties": {"file": {"type": "string", "format": "binary",
                                             "description": f"The video ({', '.join(VIDEO_SUFFIXES)})."}}}}}}})
    async def upload_video(request: Request) -> UploadResponse:
        """Upload a video (multipart, field `file`); it is streamed to the server's upload folder under a new name."""
        return await _receive_upload(request, uploads_dir(settings), limits)

    @routes.post("/jobs", response_model=JobCreated, status_code=202, tags=["jobs"],
                 responses={403: _ERRORS[403], 404: _ERRORS[404], 413: _ERRORS[413], 422: _ERRORS[422]})
    def submit_job(body: DetectJobRequest, request: Request) -> JSONResponse:
        """Start detect on a video of the data folders; poll GET /v1/jobs/{id} until it is done."""
        video = _existing_path(settings, body.video, "video")
        job = state.jobs.submit(body.model_copy(update={"video": str(video)}))
        return JSONResponse(JobCreated(id=job.id, status=job.status).model_dump(), status_code=202,
                            headers={"Location": str(request.url_for("get_job", job_id=job.id))})

    @routes.get("/jobs", response_model=JobsResponse, tags=["jobs"])
    def list_jobs() -> JobsResponse:
        """The 50 most recent jobs, newest first."""
        return JobsResponse(jobs=state.jobs.recent(50))

    @routes.get("/jobs/{job_id}", response_model=Job, tags=["jobs"], responses={404: _ERRORS[404]})
    def get_job(job_id: str) -> Job:
        """A job's status (queued, running, done, failed), progress and, when it failed, why."""
        return state.jobs.get(job_id)

    @routes.get("/jobs/{job_id}/events", response_model=EventsResponse, tags=["jobs"],
                responses={404: _ERRORS[404], 409: _ERRORS[409]})
    def job_events(job_id: str) -> EventsResponse:
        """The events detect found (times, frames, broken rules, reasons)."""
        report = state.jobs.report(job_id)
        return EventsResponse(job=job_id, video=report.video, scene=report.scene, rules_version=report.rules_version,
                              events=[event.model_dump() for event in report.events])

    @routes.get("/jobs/{job_id}/report", tags=["jobs"], response_class=FileResponse,
                responses={200: {"content": {"text/html": {}}, "description": "The report page."},
                           404: _ERRORS[404], 409: _ERRORS[409]})
    def job_report(job_id: str) -> FileResponse:
        """The self-contained HTML report (plot and key frames inline)."""
        return FileResponse(state.jobs.result_path(job_id, "html"), media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": "default-src 'none'; img-src data:; "
                                     "style-src 'unsafe-inline'"})

    @routes.get("/jobs/{job_id}/report.json", tags=["jobs"], response_class=FileResponse,
                responses={200: {"content": {"application/json": {}}, "description": "The DetectReport as JSON."},
                           404: _ERRORS[404], 409: _ERRORS[409]})
    def job_report_json(job_id: str) -> FileResponse:
        """The whole detect result (frames, scores, events, cost, thumbnails) as JSON."""
        return FileResponse(state.jobs.result_path(job_id, "json"), media_type="application/json")

    @routes.get("/files", tags=["chat"], response_class=FileResponse,
                responses={403: _ERRORS[403], 404: _ERRORS[404]})
    def get_file(path: str) -> FileResponse:
        """A file the agent or a job wrote (a path named in a chat event's `files`)."""
        resolved = within(path, [chat_dir(settings), jobs_dir(settings)])
        if resolved is None or resolved.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ApiError(403, f"{path} is not a file the agent or a job wrote",
                           hint="pass a path from the `files` of a chat event")
        if not resolved.is_file():
            raise ApiError(404, f"no file {path}", hint="the thread's files may have been deleted")
        return FileResponse(resolved)

    @routes.post("/chat", tags=["chat"], response_class=JSONResponse, responses={
        **_SSE, 403: _ERRORS[403], 404: _ERRORS[404], 409: _ERRORS[409], 413: _ERRORS[413], 422: _ERRORS[422]})
    async def chat(body: ChatRequest) -> Any:
        """Send a message; the answer streams back as server-sent events (tokens, tool steps, then the end)."""
        if len(body.message) > limits.max_message_chars:
            raise ApiError(422, f"the message is {len(body.message)} characters, over the limit of "
                           f"{limits.max_message_chars}", hint="shorten it or split it into several messages")
        attachments = [str(_existing_path(settings, path, "attachment")) for path in body.attachments]
        agent = await run_in_threadpool(state.investigator)
        thread_id = body.thread_id or agent.new_thread()
        if await run_in_threadpool(agent.pending, thread_id) is not None:
            raise ApiError(409, f"thread {thread_id} waits for a confirmation",
                           hint=f"answer it with POST /v1/chat/{thread_id}/confirm first")
        return _stream(state, thread_id, lambda: agent.send(thread_id, body.message, attachments=attachments))

    @routes.post("/chat/{thread_id}/confirm", tags=["chat"], response_class=JSONResponse, responses={
        **_SSE, 409: _ERRORS[409], 422: _ERRORS[422]})
    async def confirm(thread_id: str, body: ConfirmRequest) -> Any:
        """Approve or decline what the thread waits for; the rest of the turn streams back like POST /v1/chat."""
        _check_thread(thread_id)
        agent = await run_in_threadpool(state.investigator)
        if await run_in_threadpool(agent.pending, thread_id) is None:
            raise ApiError(409, f"nothing in thread {thread_id} waits for a confirmation",
                           hint="confirm only after an 'interrupt' event")
        return _stream(state, thread_id, lambda: agent.resume(thread_id, body.approved))

    @routes.get("/chat/{thread_id}", response_model=ChatHistory, tags=["chat"],
                responses={404: _ERRORS[404], 422: _ERRORS[422]})
    async def chat_history(thread_id: str) -> ChatHistory:
        """The thread's messages so far, and the confirmation it waits for, if any."""
        _check_thread(thread_id)
        agent = await run_in_threadpool(state.investigator)
        messages = await run_in_threadpool(agent.history, thread_id)
        pending = await run_in_threadpool(agent.pending, thread_id)
        if not messages and pending is None:
            raise ApiError(404, f"no chat thread '{thread_id}'", hint="start one with POST /v1/chat")
        return ChatHistory(thread_id=thread_id, messages=messages,
                           pending=ChatEventOut.model_validate(pending.model_dump()) if pending else None)

    app.include_router(open_routes)
    app.include_router(routes)
    return app


# -- helpers ----------------------------------------------------------------------------------

def _existing_path(settings: Settings, path: str, what: str) -> Path:
    """``path`` resolved inside the data folders (403 otherwise) and present (404 otherwise)."""
    try:
        resolved = resolve_data_path(settings, path)
    except SleuthError as exc:
        raise ApiError(403, exc.message, hint=exc.hint) from None
    if not resolved.exists():
        raise ApiError(404, f"{what} not found: {path}", hint="upload it with POST /v1/videos, or check the path")
    return resolved


def _check_thread(thread_id: str) -> None:
    if not _THREAD_ID.match(thread_id):
        raise ApiError(422, "a thread id is 1-64 letters, digits, '-' or '_'", hint="use the thread_id of a chat event")


def _stream(state: _State, thread_id: str, events: Callable[[], Iterator[Any]]) -> Any:
    """The chat events as server-sent events, one JSON ChatEvent each; unexpected failures end the
    stream with one 'error' event (the traceback goes to the server log only)."""
    from sse_starlette.sse import EventSourceResponse

    state.claim(thread_id)

    def generate() -> Iterator[dict[str, str]]:
        try:
            for event in events():
                yield {"event": event.type, "data": event.model_dump_json()}
        except SleuthError as exc:
            yield _error_event(thread_id, exc.one_line())
        except Exception as exc:  # noqa: BLE001 - a stream ends with an error event, never a traceback
            logger.exception("chat turn of thread %s failed", thread_id)
            yield _error_event(thread_id, f"unexpected {type(exc).__name__} in the agent (see the server log)")
        finally:
            state.release(thread_id)

    return EventSourceResponse(generate(), ping=15, headers={"X-Thread-Id": thread_id})


def _error_event(thread_id: str, text: str) -> dict[str, str]:
    return {"event": "error", "data": ChatEventOut(type="error", thread_id=thread_id, text=text).model_dump_json()}


async def _receive_upload(request: Request, folder: Path, limits: ApiLimits) -> UploadResponse:
    """Stream a multipart upload's first file part into ``folder`` under a generated name."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(415, "send the video as multipart/form-data", hint="e.g. curl -F file=@video.mp4 .../v1/videos")
    folder.mkdir(parents=True, exist_ok=True)
    upload = _Upload(folder, limits)
    parser = MultipartParser(params[b"boundary"], upload.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        return upload.finish()
    except ClientDisconnect:
        logger.info("an upload was aborted by the client after %d bytes; nothing was kept", upload.size)
        raise ApiError(400, "the upload was aborted before it ended", hint="send it again") from None
    finally:
        upload.discard()


class _Upload:
    """Callbacks of the multipart parser: the first part with a filename goes to ``<folder>/<uuid><suffix>``."""

    def __init__(self, folder: Path, limits: ApiLimits) -> None:
        self.folder = folder
        self.limits = limits
        self.headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self.filename: str | None = None
        self.partial: Path | None = None
        self.final: Path | None = None
        self.handle: Any = None
        self.writing = False
        self.size = 0

    def callbacks(self) -> Any:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data, "on_part_end": self._end}

    def _part_begin(self) -> None:
        self.headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self.headers[self._field.decode("latin-1").lower()] = self._value.decode("utf-8", "replace")
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        filename = options.get(b"filename")
        if filename is None or self.partial is not None:
            return  # a plain form field, or a second file: ignored
        name = Path(filename.decode("utf-8", "replace").replace("\\", "/")).name
        suffix = Path(name).suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise ApiError(415, f"'{name[:100]}' is not a video file", hint="upload a " + ", ".join(VIDEO_SUFFIXES)
                           + " file")
        self.filename = name
        stem = uuid.uuid4().hex
        self.final = self.folder / f"{stem}{suffix}"
        self.partial = self.folder / f".{stem}.partial{suffix}"
        self.handle = self.partial.open("wb")
        self.writing = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing:
            return
        self.size += end - start
        if self.size > self.limits.upload_bytes:
            raise ApiError(413, f"the video is over the {self.limits.max_upload_mb:g} MB upload limit",
                           hint="cut it shorter or raise SLEUTH_API_MAX_UPLOAD_MB on the server")
        self.handle.write(data[start:end])

    def _end(self) -> None:
        if self.writing:
            self.handle.close()
            self.writing = False

    def finish(self) -> UploadResponse:
        if self.partial is None or self.final is None or self.filename is None:
            raise ApiError(422, "no file in the upload", hint="send the video in a multipart field named 'file'")
        if self.writing:
            raise ApiError(422, "the upload ended in the middle of the file", hint="send it again")
        if self.size == 0:
            raise ApiError(422, f"'{self.filename}' is empty", hint="upload a video with frames")
        from sleuth.tools.frames import FrameReader

        try:
            FrameReader(self.partial).info  # noqa: B018 - probing the header is the check
        except SleuthError:
            raise ApiError(415, f"'{self.filename}' is not a readable video",
                           hint="upload a video file (H.264 MP4 works everywhere)") from None
        os.replace(self.partial, self.final)
        self.partial = None
        return UploadResponse(path=str(self.final), filename=self.filename, bytes=self.size)

    def discard(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.close()
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)


def swagger_assets() -> Path | None:
    """The Swagger UI files the pinned litellm wheel ships (found without importing litellm), if present."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        assets = Path(folder) / "proxy" / "swagger"
        if (assets / "swagger-ui-bundle.js").is_file() and (assets / "swagger-ui.css").is_file():
            return assets
    return None


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI served from this machine (nothing from a CDN), so it works offline; without
    the files, a page that links the spec."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from starlette.staticfiles import StaticFiles

    assets = swagger_assets()
    if assets is not None:
        app.mount("/docs/assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return HTMLResponse("<!doctype html><title>Sleuth API</title><p>The API is described by its "
                                "<a href='/v1/openapi.json'>OpenAPI spec</a>.</p>")
        return get_swagger_ui_html(openapi_url="/v1/openapi.json", title="Sleuth API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon.png")


def _handle_errors(app: FastAPI) -> None:
    """Every error as ``{"error", "hint"}``; never a traceback."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.message, exc.hint, headers)

    @app.exception_handler(JobNotFound)
    async def not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return _error(404, exc.message, exc.hint)

    @app.exception_handler(JobNotDone)
    async def not_done(request: Request, exc: JobNotDone) -> JSONResponse:
        return _error(409, exc.message, exc.hint)

    @app.exception_handler(SleuthError)
    async def sleuth_error(request: Request, exc: SleuthError) -> JSONResponse:
        return _error(400, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            position = next((part for part in first.get("loc", ()) if isinstance(part, int)), None)
            where = f" (at character {position})" if position is not None else ""
            cause = (first.get("ctx") or {}).get("error")
            return _error(422, f"the body is not valid JSON{where}" + (f": {cause}" if cause else ""),
                          "send a JSON object, with Content-Type: application/json; see the schema at /docs")
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        text = f"{where}: {message}{more}" if where else f"{message}{more}"
        return _error(422, text, "see the request schema at /docs")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint = getattr(exc, "hint", None) or ("see the endpoints at /docs" if exc.status_code in (404, 405) else None)
        return _error(exc.status_code, str(exc.detail), hint, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__})", "the server log has the details")

