"""Several cameras watched at once, in one process: ``sleuth watch --cameras cameras.yaml``.

The YAML names each camera, its source and its calibrated scene (and optionally its own webhook
and rate)::

    webhook: http://alerts.example/hook     # optional, every camera's default
    cameras:
      - name: entrance
        source: rtsp://10.0.0.5/stream1
        scene: lobby
      - name: car-park
        source: http://10.0.0.6/video.mp4
        scene: parking
        fps: 5
        webhook: http://other.example/hook

Each camera has its own stream, tracks and events, its rolling report in ``OUTPUT/NAME/`` and its
webhook spool in ``OUTPUT/NAME/spool``; alerts of all cameras go to one stdout as JSON lines, each
with its ``camera``. One camera that fails (an uncalibrated scene) stops nothing but itself; its
error is logged. Two ways to run them:

- :class:`CameraProcesses` (``sleuth watch --cameras``): one ``sleuth watch`` process per camera,
  supervised; each loads its own models (about 1.5 GB each) and the cameras use every core. This is
  the default because the per-frame work holds Python's lock much of the time: threads of one
  process share about one core (measured: docs/benchmarks.md).
- :class:`CameraWatch` (``--threads``): every camera a :class:`~sleuth.live.watch.Watcher` on its
  own thread of this process, the models (detector, embedder, rule memory, LLM endpoint) loaded once
  and shared: less memory, about one core for all of them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator
from sleuth.errors import SleuthError
from sleuth.graphs.runtime import Runtime
from sleuth.live.alerts import AlertRouter, AlertSink, WebhookSender
from sleuth.live.watch import WatchConfig, Watcher, WatchSummary

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CameraSpec(BaseModel):
    name: str = Field(description="The camera's name in alerts and its report folder (letters, digits, - _ .).")
    source: str = Field(description="An RTSP/RTMP/HTTP(S) stream URL, a folder that receives files, or a file.")
    scene: str = Field(description="The calibrated scene the camera shows.")
    fps: float | None = Field(default=None, gt=0, description="Frames analysed per second (default: the rate the "
                              "scene was calibrated at).")
    webhook: str | None = Field(default=None, description="This camera's webhook (default: the file's).")

    @model_validator(mode="after")
    def _usable_name(self) -> CameraSpec:
        if not NAME.match(self.name):
            raise ValueError(f"camera name '{self.name}' must be letters, digits, '-', '_' or '.' (a folder name)")
        return self


class CamerasFile(BaseModel):
    cameras: list[CameraSpec] = Field(min_length=1)
    webhook: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> CamerasFile:
        names = [camera.name for camera in self.cameras]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"camera names must differ: {', '.join(twice)} appear more than once")
        return self


def load_cameras(path: Path) -> CamerasFile:
    """The cameras of a YAML file, or a one-line error that says what is wrong in it."""
    hint = "see `sleuth watch --help` for the format (cameras: [{name, source, scene}])"
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SleuthError(f"camera file {path} not found", hint=hint) from None
    except (OSError, yaml.YAMLError) as exc:
        raise SleuthError(f"cannot read camera file {path}: {str(exc).splitlines()[0]}", hint=hint) from None
    try:
        return CamerasFile.model_validate(data if isinstance(data, dict) else {"cameras": data})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SleuthError(f"camera file {path}: {where}: {first['msg']}", hint=hint) from None


class CameraWatch:
    """Every camera of ``cameras`` watched at once on one shared runtime; ``run()`` returns when
    ``stop`` is set or every camera's source has ended."""

    def __init__(self, cameras: CamerasFile, *, runtime: Runtime, output: Path, shared: list[AlertSink],
                 config: WatchConfig | None = None, stop: threading.Event | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.stop = stop or threading.Event()
        self.log = log or (lambda line: None)
        self.output = Path(output)
        self.watchers: dict[str, Watcher] = {}
        self.errors: dict[str, str] = {}
        base = config or WatchConfig()
        for camera in cameras.cameras:
            sinks = list(shared)
            webhook = camera.webhook or cameras.webhook
            folder = self.output / camera.name
            if webhook:
                sinks.append(WebhookSender(webhook, folder / "spool"))
            try:
                self.watchers[camera.name] = Watcher(
                    camera.source, scene=camera.scene, router=AlertRouter(sinks), output=folder,
                    config=base.model_copy(update={"fps": camera.fps or base.fps}), runtime=runtime,
                    camera=camera.name, stop=self.stop,
                    log=lambda line, name=camera.name: self.log(f"[{name}] {line}"))
            except SleuthError as exc:
                AlertRouter(sinks[len(shared):]).close(0.5)
                self.errors[camera.name] = exc.one_line()
                self.log(f"[{camera.name}] not watched: {exc.one_line()}")
        if not self.watchers:
            raise SleuthError("no camera could be watched: " + "; ".join(f"{k}: {v}" for k, v in self.errors.items()),
                              hint="calibrate each camera's scene first (`sleuth calibrate --scene S --video ...`)")

    def run(self) -> dict[str, WatchSummary]:
        summaries: dict[str, WatchSummary] = {}

        def watch(name: str, watcher: Watcher) -> None:
            try:
                summaries[name] = watcher.run()
            except SleuthError as exc:  # this camera stops; the others go on
                self.errors[name] = exc.one_line()
                self.log(f"[{name}] stopped: {exc.one_line()}")
                summaries[name] = watcher.summary

        threads = [threading.Thread(target=watch, args=(name, watcher), name=f"watch-{name}", daemon=True)
                   for name, watcher in self.watchers.items()]
        for thread in threads:
            thread.start()
        try:
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(0.5)
        except KeyboardInterrupt:
            self.stop.set()
            for thread in threads:
                thread.join(30)
        for name, watcher in self.watchers.items():
            summaries.setdefault(name, watcher.summary)
        return summaries

    def describe(self) -> list[dict[str, Any]]:
        return [{"camera": name, "source": w.source, "scene": w.scene, "fps": w.fps}
                for name, w in self.watchers.items()]


class CameraProcesses:
    """Every camera of ``cameras`` as its own ``sleuth watch`` process. Their alerts (JSON lines on
    their stdout) go to ``shared``; their log lines to ``log``, prefixed with the camera's name.
    ``run()`` returns each camera's exit code when ``stop`` is set (each gets SIGTERM and stops
    cleanly, undelivered alerts kept in its spool) or every source has ended."""

    def __init__(self, cameras: CamerasFile, *, data_dir: Path, output: Path, shared: list[AlertSink],
                 config: WatchConfig | None = None, stop: threading.Event | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.cameras, self.output, self.shared = cameras, Path(output), shared
        self.config = config or WatchConfig()
        self.stop = stop or threading.Event()
        self.log = log or (lambda line: None)
        # the cores shared out: every process using every core makes their thread pools fight (measured 3x slower)
        threads = str(max(1, (os.cpu_count() or 1) // len(cameras.cameras)))
        self.env = {**os.environ, "SLEUTH_DATA_DIR": str(data_dir), "SLEUTH_THREADS": threads,
                    "OMP_NUM_THREADS": threads}
        self.codes: dict[str, int] = {}
        self._lock = threading.Lock()

    def command(self, camera: CameraSpec) -> list[str]:
        config = self.config
        command = [sys.executable, "-m", "sleuth.cli.main", "watch", camera.source, "--scene", camera.scene,
                   "--camera", camera.name, "--output", str(self.output / camera.name), "--chunk", str(config.chunk)]
        fps = camera.fps or config.fps
        webhook = camera.webhook or self.cameras.webhook
        command += ["--fps", f"{fps:g}"] if fps else []
        command += ["--webhook", webhook] if webhook else []
        command += ["--max-seconds", f"{config.max_seconds:g}"] if config.max_seconds else []
        command += ["--llm-reasons"] if config.llm_reasons else []
        return command

    def _pump(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            try:
                alert = json.loads(line)
            except json.JSONDecodeError:
                self.log(f"[{name}] {line.rstrip()}")
                continue
            with self._lock:
                for sink in self.shared:
                    sink.send(alert)

    def _errors(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.log(f"[{name}] {line.rstrip()}")

    def run(self) -> dict[str, int]:
        processes: dict[str, subprocess.Popen[str]] = {}
        threads: list[threading.Thread] = []
        for camera in self.cameras.cameras:
            process = subprocess.Popen(self.command(camera), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=self.env, start_new_session=True)
            processes[camera.name] = process
            for target in (self._pump, self._errors):
                thread = threading.Thread(target=target, args=(camera.name, process), daemon=True)
                thread.start()
                threads.append(thread)
        try:
            while any(process.poll() is None for process in processes.values()) and not self.stop.is_set():
                self.stop.wait(0.5)
        except KeyboardInterrupt:
            self.stop.set()
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for name, process in processes.items():
                try:
                    self.codes[name] = process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    self.codes[name] = process.wait()
            for thread in threads:
                thread.join(5)
        return dict(self.codes)
