"""Long jobs of the HTTP API: ``detect`` on a video, run in a background thread pool, kept on disk.

A job is a folder ``<data_dir>/jobs/<id>/``: ``job.json`` (its request, status, progress, error
and times, rewritten atomically as it runs) and, once it is done, ``report.json`` and
``report.html``. A restarted server reads the folder back, so finished jobs stay available; a job
that was queued or running when the server stopped is marked failed with a one-line reason
(submitting it again resumes detect from its checkpoint).

The detect function is injectable (tests pass a fake); the default runs
:func:`sleuth.graphs.detect.detect_video` the way ``sleuth detect`` does, on one
:class:`~sleuth.graphs.runtime.Runtime` shared by the jobs and built on the first job.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sleuth.config import Settings, load_settings
from sleuth.datapaths import jobs_dir
from sleuth.errors import SleuthError

if TYPE_CHECKING:
    from sleuth.graphs.detect import DetectReport
    from sleuth.graphs.runtime import Runtime

logger = logging.getLogger("sleuth.serve.jobs")

JobStatus = Literal["queued", "running", "done", "failed"]
Progress = Callable[[str, int, int], None]
_SCENE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_RESTARTED = "the server stopped before this job finished: submit it again (detect resumes from its checkpoint)"


class JobNotFound(SleuthError):
    """No job with this id (API: 404)."""


class JobNotDone(SleuthError):
    """The job has no result (yet, or ever: it failed) (API: 409)."""


class DetectJobRequest(BaseModel):
    """What to detect: a video of the data folders, its scene and an optional time range."""

    model_config = ConfigDict(extra="forbid")

    video: str = Field(max_length=4096, description="A video path inside the data folders (e.g. the `path` that "
                       "POST /v1/videos returned), absolute or relative to the server's folder.")
    scene: str = Field(description="A calibrated scene (GET /v1/scenes).")
    start_s: float | None = Field(default=None, ge=0, description="Start time in seconds (default: the start).")
    end_s: float | None = Field(default=None, gt=0, description="End time in seconds (default: the end).")
    explain: bool = Field(default=False, description="Also explain the video and its events (slower).")
    allow_partial: bool = Field(default=False, description="Analyse a file that ends well before its header says "
                                "(truncated or corrupt) and list the shortfall in the report's warnings; by "
                                "default such a job fails.")

    @field_validator("scene")
    @classmethod
    def _scene_name(cls, value: str) -> str:
        if not _SCENE.match(value):
            raise ValueError("a scene name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self


class JobProgress(BaseModel):
    stage: str = Field(default="", description="The detect stage running now (e.g. 'caption', 'deduce').")
    done: int = 0
    total: int = 0


class Job(BaseModel):
    id: str
    kind: Literal["detect"] = "detect"
    status: JobStatus
    request: DetectJobRequest
    progress: JobProgress = Field(default_factory=JobProgress)
    error: str | None = Field(default=None, description="Why the job failed, in one line.")
    events: int | None = Field(default=None, description="Number of events found (once done).")
    created: str
    started: str | None = None
    finished: str | None = None


DetectFunction = Callable[[DetectJobRequest, Progress], "DetectReport"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LocalDetect:
    """The default detect function: ``detect_video`` on a runtime built from the settings on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    def __call__(self, request: DetectJobRequest, progress: Progress) -> DetectReport:
        from sleuth.graphs.detect import VideoDetectConfig, detect_video
        from sleuth.tools.frames import frame_range

        start, stop = frame_range(request.video, request.start_s, request.end_s)
        config = VideoDetectConfig(start=start, stop=stop, explain=request.explain, allow_partial=request.allow_partial)
        return detect_video(request.video, scene=request.scene, config=config, runtime=self.runtime(),
                            progress=progress)

    def runtime(self) -> Runtime:
        with self._lock:
            if self._runtime is None:
                from sleuth.graphs.runtime import Runtime

                self._runtime = Runtime.from_settings(self.settings)
            return self._runtime

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None


class JobStore:
    """Submit detect jobs, follow them and read their results; see the module doc."""

    def __init__(self, settings: Settings | None = None, *, detect: DetectFunction | None = None,
                 workers: int = 1, progress_interval_s: float = 0.5) -> None:
        self.settings = settings or load_settings()
        self.folder = jobs_dir(self.settings)
        self.detect = detect or LocalDetect(self.settings)
        self.progress_interval_s = progress_interval_s
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sleuth-job")
        self._load()

    # -- reading ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job (a copy), or :class:`JobNotFound`."""
        with self._lock:
            job = self._jobs.get(job_id) if _JOB_ID.match(job_id) else None
            if job is None:
                raise JobNotFound(f"no job '{job_id[:64]}'",
                                  hint="POST /v1/jobs returns the id of a new job; GET /v1/jobs lists them")
            return job.model_copy(deep=True)

    def recent(self, limit: int = 50) -> list[Job]:
        """The most recent jobs first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda job: job.created, reverse=True)[:limit]
            return [job.model_copy(deep=True) for job in jobs]

    def result_path(self, job_id: str, kind: Literal["json", "html"]) -> Path:
        """The finished job's report file; :class:`JobNotFound` or :class:`JobNotDone` otherwise."""
        job = self.get(job_id)
        if job.status != "done":
            why = f"it failed: {job.error}" if job.status == "failed" else f"it is {job.status}"
            raise JobNotDone(f"job {job_id} has no report: {why}",
                             hint=f"poll GET /v1/jobs/{job_id} until its status is done")
        path = self._dir(job_id) / f"report.{kind}"
        if not path.is_file():
            raise JobNotDone(f"the report of job {job_id} is missing on the server",
                             hint="submit the job again")
        return path

    def report(self, job_id: str) -> DetectReport:
        """The finished job's :class:`DetectReport`."""
        from sleuth.reports import load_report

        return load_report(self.result_path(job_id, "json"))

    # -- running ----------------------------------------------------------------------------

    def submit(self, request: DetectJobRequest) -> Job:
        """Queue a detect job; returns at once (the job runs on the pool)."""
        job = Job(id=uuid.uuid4().hex, status="queued", request=request, created=_now())
        with self._lock:
            self._jobs[job.id] = job
            self._save(job)
            queued = job.model_copy(deep=True)
        self._pool.submit(self._run, job.id)
        return queued

    def _run(self, job_id: str) -> None:
        self._update(job_id, status="running", started=_now())
        last_write = 0.0
        last_stage = ""

        def progress(stage: str, done: int, total: int) -> None:
            nonlocal last_write, last_stage
            now = time.monotonic()
            write = stage != last_stage or done >= total or now - last_write >= self.progress_interval_s
            with self._lock:
                job = self._jobs[job_id]
                job.progress = JobProgress(stage=stage, done=done, total=total)
                if write:
                    self._save(job)
            if write:
                last_write, last_stage = now, stage

        try:
            with self._lock:
                request = self._jobs[job_id].request.model_copy()
            report = self.detect(request, progress)
            from sleuth.reports import write_html, write_report

            write_report(report, self._dir(job_id) / "report.json")
            write_html(report, self._dir(job_id) / "report.html")
            self._update(job_id, status="done", finished=_now(), events=len(report.events))
        except SleuthError as exc:
            self._update(job_id, status="failed", finished=_now(), error=exc.one_line())
        except Exception as exc:  # noqa: BLE001 - a job must end failed, with one line, whatever happened
            logger.exception("job %s failed", job_id)
            first = (str(exc).splitlines() or [""])[0][:200]
            self._update(job_id, status="failed", finished=_now(),
                         error=f"unexpected {type(exc).__name__}: {first} (see the server log)")

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs (queued ones are dropped unless ``wait``) and close the detect runtime."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        close = getattr(self.detect, "close", None)
        if callable(close):
            close()

    # -- disk -------------------------------------------------------------------------------

    def _dir(self, job_id: str) -> Path:
        return self.folder / job_id

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs[job_id]
            for name, value in changes.items():
                setattr(job, name, value)
            self._save(job)

    def _save(self, job: Job) -> None:
        """Write job.json (callers hold the lock)."""
        from sleuth.reports.files import atomic_write_text

        try:
            atomic_write_text(self._dir(job.id) / "job.json", job.model_dump_json(indent=1))
        except OSError as exc:  # the job goes on; only its persistence suffers
            logger.warning("cannot write %s: %s", self._dir(job.id) / "job.json", exc)

    def _load(self) -> None:
        """Read the jobs a previous server left; unfinished ones become failed."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*/job.json")):
            if not _JOB_ID.match(path.parent.name):
                continue
            try:
                job = Job.model_validate_json(path.read_bytes())
            except (OSError, ValidationError) as exc:
                logger.warning("skipping unreadable job file %s: %s", path, str(exc).splitlines()[0])
                continue
            if job.id != path.parent.name:
                continue
            if job.status in ("queued", "running"):
                job.status, job.error, job.finished = "failed", _RESTARTED, _now()
                self._save(job)
            self._jobs[job.id] = job
