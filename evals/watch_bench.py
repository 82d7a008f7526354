"""Benchmark of ``sleuth watch`` on a live loopback stream: alert latency, alerts lost while the
webhook is down, reconnects, throughput.

The scene is calibrated on the normal first part of a real clip (UCF-Crime Robbery102, frames
0-899, as the pipeline benchmark's ``robbery`` suite). The rest of the clip (the robbery is frames
1080-1560) is cut into a web-ready mp4 and served over HTTP on 127.0.0.1 in real time (its bytes
paced at the clip's own rate). The first connection drops after ``drop_after_s`` seconds; the
camera then serves the whole clip once more and goes down (503). The webhook receiver starts only
``webhook_down_s`` seconds after the watch: every alert until then must wait on disk.

Measured: per event alert, the latency from the moment the event's first frame went live (the
camera's clock: when the play that carried it was requested, plus the frame's time in the clip;
``live_latency_s``) and from the moment Sleuth decoded it (``latency_s``) to the alert; alerts
emitted on stdout against alerts the webhook received (lost = emitted ids missing at the
receiver); the gaps reported; frames analysed per second against the source rate; peak memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from sleuth.config import Settings
from sleuth.evals.pipeline_bench import Bench
from sleuth.evals.proposer_bench import ROBBERY, _require, peak_memory_mb
from sleuth.graphs.calibrate import CalibrateConfig
from sleuth.graphs.detect import VideoDetectConfig
from sleuth.live.alerts import AlertRouter, JsonLinesSink, WebhookSender
from sleuth.live.watch import WatchConfig, Watcher, spread
from sleuth.tools.frames import FrameReader

Log = Callable[[str], None]
CAMERA_FPS = 5.0  # the rate the scene is calibrated and watched at by default (the clip plays at 30)


def _wall(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def cut_clip(source: Path, start: int, target: Path) -> tuple[Path, float, int]:
    """Frames ``start``.. of ``source`` as a web-ready (index first) H.264 mp4: (path, fps, frames)."""
    import av

    reader = FrameReader(source, start=start)
    fps = reader.info.fps
    count = 0
    with av.open(str(target), mode="w", options={"movflags": "faststart"}) as container:
        stream = None
        for frame in reader:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                stream.height, stream.width = frame.image.shape[:2]
                stream.pix_fmt, stream.options = "yuv420p", {"crf": "20", "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.image, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return target, fps, count


class Camera:
    """A live camera on loopback: the clip's bytes paced at its play rate. Connection 1 (a probe and
    a read) drops after ``drop_after_s``; the next ``plays`` connections get the whole clip; then 503."""

    def __init__(self, clip: Path, duration_s: float, drop_after_s: float, plays: int = 2) -> None:
        self.last_request = 2 + 2 * plays
        data, state, last_request = clip.read_bytes(), {"requests": 0}, self.last_request
        self.requested: list[float] = []  # wall clock of each request: a play starts when its request comes
        requested = self.requested
        rate = len(data) / duration_s  # bytes per second of video

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                state["requests"] += 1
                requested.append(time.time())
                if state["requests"] > last_request:
                    self.send_error(503, "camera offline")
                    return
                limit = min(int(rate * drop_after_s), len(data)) if state["requests"] <= 2 else len(data)
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                started, sent = time.monotonic(), 0
                try:
                    while sent < limit:
                        due = int((time.monotonic() - started + 0.5) * rate)  # half a second of buffer
                        if due > sent:
                            piece = data[sent:min(due, limit)]
                            self.wfile.write(piece)
                            sent += len(piece)
                        else:
                            time.sleep(0.02)
                except OSError:
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        self.state = state
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/camera.mp4"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A webhook receiver on a fixed loopback port, started late."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/alerts"
        self.received: list[dict[str, Any]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({**json.loads(body), "_received": time.time()})
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def went_live(alert: dict[str, Any], requested: list[float]) -> float:
    """Wall clock when the camera played the alert's first frame: the start of the last request
    before the alert (the connection that carried the frame) plus the frame's time in the clip."""
    wall = _wall(alert["at"])
    return max((t for t in requested if t <= wall), default=wall) + float(alert.get("source_time_s") or 0.0)


def _prepare(bench: Bench, data: Path, out: Path, log: Log,
             fps: float) -> tuple[dict[str, Any], tuple[Path, float, int], tuple[int, int]]:
    """The scene calibrated on Robbery102's normal first part at ``fps``, the rest cut into the
    camera's clip (path, its fps, frames), and the robbery's source frames (first, last)."""
    video = _require(data / ROBBERY["file"], "the UCF-Crime Robbery102 clip")
    stop = int(ROBBERY["train_stop"])  # type: ignore[call-overload]
    log(f"watch: calibrating scene 'robbery' on frames 0-{stop - 1} of {video.name} at {fps:g} frames/s")
    calibration = bench.calibrate([video], "robbery", stop=stop, fps=fps)
    first, last = ROBBERY["anomalous"]  # type: ignore[misc]
    return calibration, cut_clip(video, stop, out / "camera.mp4"), (int(first), int(last))


def run(data: Path, out: Path, settings: Settings, log: Log, *, webhook_down_s: float = 60.0,
        drop_after_s: float = 8.0, reuse: bool = False, fps: float = CAMERA_FPS,
        config: WatchConfig | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, out, VideoDetectConfig(), CalibrateConfig(), log, keep=reuse)
    try:
        calibration, (clip, fps, count), (first, last) = _prepare(bench, data, out, log, fps)
        stop = int(ROBBERY["train_stop"])  # type: ignore[call-overload]
        duration = count / fps
        plays = max(1, int(np.ceil((webhook_down_s + 10 - drop_after_s) / duration)))  # outlast the webhook's outage
        camera, receiver = Camera(clip, duration, drop_after_s, plays), Receiver()
        config = config or WatchConfig()
        log(f"watch: serving {count} frames ({duration:.1f} s, the robbery at {(first - stop) / fps:.1f}-"
            f"{(last - stop) / fps:.1f} s) live at {camera.url}: the first connection drops after {drop_after_s:g} s, "
            f"then {plays} whole play(s); the webhook is down for the first {webhook_down_s:g} s")
        spool = out / "spool"
        for stale in spool.glob("*.json") if spool.exists() else []:
            stale.unlink()
        webhook = WebhookSender(receiver.url, spool, retry_base_s=1.0, retry_max_s=8.0)
        with (out / "alerts.jsonl").open("w") as lines:
            watcher = Watcher(camera.url, scene="robbery", router=AlertRouter([JsonLinesSink(lines), webhook]),
                              output=out / "watch", config=config, runtime=bench.runtime, camera="robbery-cam",
                              log=log)
            timer = threading.Timer(webhook_down_s, receiver.start)
            timer.start()
            started = time.monotonic()
            thread = threading.Thread(target=watcher.run, daemon=True)
            thread.start()
            while thread.is_alive() and camera.state["requests"] <= camera.last_request:
                thread.join(0.5)
            time.sleep(2.0)  # the last chunk after the 503s begin
            watcher.stop.set()
            thread.join(120)
            wall = time.monotonic() - started
        timer.join()
        time.sleep(1.0)
        camera.close()
        emitted = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
        summary = watcher.summary
        received_keys = {(a["type"], a["at"]) for a in receiver.received}
        lost = [a for a in emitted if (a["type"], a["at"]) not in received_keys]
        receiver.close()
        events = [a for a in emitted if a["type"] == "event"]
        latencies = [a["latency_s"] for a in events if a.get("latency_s") is not None]
        # against the camera's clock: the event's first frame went live when the play that carried it
        # was requested plus the frame's time in the clip (its bytes were sent half a second before)
        live = [round(_wall(a["at"]) - went_live(a, camera.requested), 2) for a in events]
        # the event alerts that cover the annotated robbery (source frame = stop + frame / rate)
        second_pass = [a for a in emitted if a["type"] == "gap"]
        result = {
            "suite": "watch-robbery", "source_fps": fps, "analysed_fps": watcher.fps, "frames_served": count,
            "clip_seconds": round(duration, 1), "wall_seconds": round(wall, 1), "frames_analysed": summary.frames,
            "analysed_frames_per_wall_second": round(summary.frames / wall, 2),
            "alerts_emitted": len(emitted), "alerts_received": len(receiver.received), "alerts_lost": len(lost),
            "pending_on_disk_at_stop": summary.pending_alerts, "webhook_down_s": webhook_down_s,
            "event_alerts": len(events),
            "event_times_s": [a["start_s"] for a in events],
            "live_latency_s": {"values": live, "median": float(np.median(live)) if live else None,
                               "max": max(live) if live else None},
            "latency_s": {"values": latencies, "median": float(np.median(latencies)) if latencies else None,
                          "max": max(latencies) if latencies else None},
            "gaps": [{k: g[k] for k in ("start_s", "end_s", "seconds", "reason")} for g in second_pass],
            "lag_s": spread(summary.lag_s), "behind_s": spread(summary.behind_s),
            "llm_calls": summary.llm_calls, "peak_memory_mb": round(peak_memory_mb()),
            "calibration": calibration, "report": str(out / "watch" / "watch.html"),
            "config": config.model_dump(),
        }
        (out / "watch_bench.json").write_text(json.dumps(result, indent=1))
        return result
    finally:
        bench.runtime.close()


def run_cameras(data: Path, out: Path, settings: Settings, log: Log, *, cameras: int, reuse: bool = False,
                fps: float = CAMERA_FPS, config: WatchConfig | None = None, threads: bool = False) -> dict[str, Any]:
    """``cameras`` live loopback cameras, each playing the test part of Robbery102 once, watched at
    once as ``sleuth watch --cameras`` does (one process each, or ``threads`` of this one): does each
    keep up at ``fps``, how late are its alerts, does each find the robbery."""
    import resource

    from sleuth.live.cameras import CameraProcesses, CamerasFile, CameraSpec, CameraWatch

    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, out, VideoDetectConfig(), CalibrateConfig(), log, keep=reuse)
    try:
        _, (clip, clip_fps, count), (first, last) = _prepare(bench, data, out, log, fps)
        stop = int(ROBBERY["train_stop"])  # type: ignore[call-overload]
        duration = count / clip_fps
        robbery = ((first - stop) / clip_fps, (last - stop) / clip_fps)
        servers = [Camera(clip, duration, drop_after_s=duration + 60, plays=0) for _ in range(cameras)]
        spec = CamerasFile(cameras=[CameraSpec(name=f"cam{k + 1}", source=server.url, scene="robbery", fps=fps)
                                    for k, server in enumerate(servers)])
        log(f"watch: {cameras} camera(s), each playing {count} frames ({duration:.1f} s, the robbery at "
            f"{robbery[0]:.1f}-{robbery[1]:.1f} s) once, watched at {fps:g} frames/s each")
        mode = "threads" if threads else "processes"
        alerts_path = out / f"alerts-{cameras}cams-{mode}.jsonl"
        output = out / f"watch-{cameras}cams-{mode}"
        config = config or WatchConfig()
        with alerts_path.open("w") as lines:
            group: CameraWatch | CameraProcesses
            if threads:
                group = CameraWatch(spec, runtime=bench.runtime, output=output, shared=[JsonLinesSink(lines)],
                                    config=config, log=log)
            else:
                group = CameraProcesses(spec, data_dir=bench.settings.data_dir, output=output,
                                        shared=[JsonLinesSink(lines)], config=config, log=log)
            started = time.monotonic()
            thread = threading.Thread(target=group.run, daemon=True)
            thread.start()
            while thread.is_alive() and not all(s.state["requests"] > s.last_request for s in servers):
                thread.join(0.5)
            time.sleep(2.0)
            group.stop.set()
            thread.join(120)
            wall = time.monotonic() - started
        for server in servers:
            server.close()
        emitted = [json.loads(line) for line in alerts_path.read_text().splitlines()]
        per_camera = []
        for k, camera in enumerate(spec.cameras):
            report = json.loads((output / camera.name / "watch.json").read_text())
            events = [a for a in emitted if a["type"] == "event" and a["camera"] == camera.name]
            found = [a for a in events if robbery[0] - 1 <= (a.get("source_time_s") or -99) <= robbery[1]]
            per_camera.append({
                "camera": camera.name, "frames_analysed": report["frames"], "source_seconds": report["seconds"],
                "event_alerts": len(events), "robbery_found": bool(found),
                "false_alarms": len(events) - len(found),
                "latency_s": [a["latency_s"] for a in events],
                "live_latency_s": [round(_wall(a["at"]) - went_live(a, servers[k].requested), 2) for a in events],
                "behind_s": report["timing"]["behind_s"]})
        result = {"suite": "watch-cameras", "cameras": cameras, "fps_each": fps, "clip_seconds": round(duration, 1),
                  "wall_seconds": round(wall, 1), "frames_wanted_each": round(duration * fps),
                  # judged within 3 s of the stream's clock (the chunk and lookahead wait alone is 1.4 s)
                  "kept_up": all((c["behind_s"]["p95"] or 99) < 3.0 for c in per_camera),
                  "mode": mode, "per_camera": per_camera,
                  "peak_memory_mb": round(peak_memory_mb()) if threads
                  else round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),  # the largest camera's
                  "config": (config or WatchConfig()).model_dump()}
        (out / f"watch_cameras_{cameras}_{mode}.json").write_text(json.dumps(result, indent=1))
        return result
    finally:
        bench.runtime.close()
