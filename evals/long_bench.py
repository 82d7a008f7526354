"""Benchmark of ``sleuth detect`` on long footage: memory over the run, stage by stage, and throughput.

The scene is calibrated on the first half of ``videos/vtest.avi`` (as the pipeline benchmark's
``vtest`` suite). The whole clip (768x576, 10 frames/s, 1 min 20 s of a normal street) is then
looped to ``minutes`` of video (its packets copied, not re-encoded: seconds, not minutes) and
detected with the default settings in a process of its own, as ``sleuth detect LOOP --scene S
--json F --report F`` runs (what calibration loaded does not count).

A sampler reads that process's resident memory every second, split into anonymous memory (the
heap: frames, features, the models' working memory, the run's state) and file-backed memory
(mapped model files such as the LLM's weights, which the kernel can drop and read again), with
the graph stage that is running (from the OpenTelemetry spans of the graph nodes).

Measured: frames, wall time and the score stage's frames per second; the peak resident memory,
overall and per stage; the memory at each tenth of the score stage and its growth per hour of
video (a line fitted to the second half of the score stage: flat is about 0); the events raised on
this normal footage (false alarms per minute); a PNG of memory over the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from sleuth import telemetry
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.evals.pipeline_bench import Bench
from sleuth.evals.proposer_bench import VTEST, _require, peak_memory_mb
from sleuth.graphs.calibrate import CalibrateConfig
from sleuth.graphs.detect import VideoDetectConfig, detect_video
from sleuth.graphs.runtime import Runtime
from sleuth.reports import write_html, write_json
from sleuth.tools.frames import FrameReader

Log = Callable[[str], None]
SAMPLE_EVERY_S = 1.0


def loop_video(source: Path, minutes: float, target: Path) -> tuple[Path, int]:
    """``source`` repeated to at least ``minutes`` of video in ``target`` (its packets copied with
    shifted times, so the frames are the source's own): (path, frames). An existing ``target`` of
    the right length is reused."""
    import av

    info = FrameReader(source).info
    if not info.frame_count or not info.fps:
        raise ValueError(f"{source} has no frame count or rate to loop by")
    loops = max(1, int(np.ceil(minutes * 60 * info.fps / info.frame_count)))
    frames = loops * info.frame_count
    if target.is_file() and FrameReader(target).info.frame_count == frames:
        return target, frames
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(target), "w") as out:
        stream, offset = None, 0
        for _ in range(loops):
            with av.open(str(source)) as clip:
                video = clip.streams.video[0]
                if stream is None:
                    stream = out.add_stream_from_template(video)
                tick = max(1, round(1 / (info.fps * video.time_base))) if video.time_base else 1  # one frame
                end = offset
                for packet in clip.demux(video):
                    if packet.dts is None:  # the demuxer's end-of-stream flush packet
                        continue
                    packet.pts = (packet.pts if packet.pts is not None else packet.dts) + offset
                    packet.dts += offset
                    packet.stream = stream
                    end = max(end, packet.pts + (packet.duration or tick))
                    out.mux(packet)
                offset = end
    return target, frames


class StageTracker(SpanProcessor):
    """The graph node running now, from the ``invoke_agent`` spans that are open: ``score``, or
    ``reason/gate`` for a node of a graph run inside a node; "outside the graph" before and after
    (loading, writing the reports)."""

    def __init__(self) -> None:
        self._open: dict[int, str] = {}

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        if span.name.startswith("invoke_agent ") and span.context is not None:
            self._open[span.context.span_id] = span.name.removeprefix("invoke_agent ")

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None:
            self._open.pop(span.context.span_id, None)

    def current(self) -> str:
        return "/".join(name for name in list(self._open.values()) if name != "detect") or "outside the graph"

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def resident_mb() -> dict[str, int]:
    """This process's resident memory in MB: ``rss`` = ``anon`` (heap) + ``file`` (mapped files) + shared."""
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    values[{"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}[key]] = int(rest.split()[0]) // 1024
    except OSError:  # not Linux: the peak so far is all there is
        values["rss"] = int(peak_memory_mb())
    return values


class Sampler:
    """Samples :func:`resident_mb` every ``every_s`` with the stage running and the frames scored so far."""

    def __init__(self, stages: StageTracker, every_s: float = SAMPLE_EVERY_S) -> None:
        self.stages, self.every_s = stages, every_s
        self.scored = 0
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        self.samples.append({"t": round(time.monotonic() - self._started, 1), "stage": self.stages.current(),
                             "frames": self.scored, **resident_mb()})


def memory_summary(samples: list[dict[str, Any]], frames: int, fps: float) -> dict[str, Any]:
    """Peaks per stage, memory at each tenth of the score stage and its growth per hour of video."""
    stages: dict[str, dict[str, int]] = {}
    for sample in samples:
        peak = stages.setdefault(sample["stage"], {})
        for key in ("rss", "anon", "file"):
            if key in sample:
                peak[key] = max(peak.get(key, 0), sample[key])
    scoring = [s for s in samples if s["stage"].split("/")[0] == "score" and s["frames"] > 0]
    tenths = []
    for tenth in range(1, 11):
        reached = [s for s in scoring if s["frames"] >= frames * tenth / 10]
        if reached:
            first = reached[0]
            tenths.append({"frames": first["frames"], "rss": first["rss"], "anon": first.get("anon")})
    growth = None  # from the median of each tenth of the second half: the windows' sawtooth averages out
    late = []
    for tenth in range(5, 10):
        inside = [s["anon"] for s in scoring if frames * tenth / 10 <= s["frames"] < frames * (tenth + 1) / 10
                  and "anon" in s]
        if len(inside) >= 5:
            late.append((frames * (tenth + 0.5) / 10, float(np.median(inside))))
    if len(late) >= 4:
        slope = np.polyfit([f for f, _ in late], [m for _, m in late], 1)[0]  # MB per frame
        growth = round(float(slope) * fps * 3600)
    return {"peak_rss_mb": max((s["rss"] for s in samples), default=None),
            "peak_anon_mb": max((s.get("anon", 0) for s in samples), default=None),
            "by_stage": stages, "score_stage_tenths": tenths,
            "score_stage_anon_growth_mb_per_hour": growth}


def plot_memory(path: Path, samples: list[dict[str, Any]], title: str) -> Path:
    """A PNG of resident memory (total and anonymous) over the run, each stage's stretch labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    minutes = [s["t"] / 60 for s in samples]
    axes.plot(minutes, [s["rss"] for s in samples], color="tab:blue", label="resident (all)")
    if all("anon" in s for s in samples):
        axes.plot(minutes, [s["anon"] for s in samples], color="tab:orange", label="anonymous (heap)")
    top = max((s["rss"] for s in samples), default=0)
    stretches: list[tuple[str, int, int]] = []  # (stage, first sample, last sample)
    for i, sample in enumerate(samples):
        stage = sample["stage"].split("/")[0]
        if stretches and stretches[-1][0] == stage:
            stretches[-1] = (stage, stretches[-1][1], i)
        else:
            stretches.append((stage, i, i))
    for k, (stage, first, last) in enumerate(stretches):
        axes.axvspan(minutes[first], minutes[last], color="0.88" if k % 2 else "0.96", linewidth=0)
        if minutes[last] - minutes[first] >= 0.08 * (minutes[-1] - minutes[0]):  # only stretches wide enough
            axes.text((minutes[first] + minutes[last]) / 2, top * 1.02, stage, ha="center", fontsize=8)
    axes.axhline(2048, color="tab:red", linestyle="--", linewidth=0.8, label="2 GB")
    axes.set_xlabel("minutes of the run")
    axes.set_ylabel("MB")
    axes.set_ylim(0, max(top * 1.1, 2300))
    axes.set_title(title, fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def run(data: Path, out: Path, settings: Settings, log: Log, *, minutes: float = 60.0, reuse: bool = False,
        explain: bool = False) -> dict[str, Any]:
    """Calibrate (in this process), loop the clip, then detect in a fresh process of its own, as a
    user's ``sleuth detect`` runs: what calibration loaded does not count."""
    out.mkdir(parents=True, exist_ok=True)
    clip = _require(data / VTEST["file"], "vtest.avi")
    bench = Bench(settings, out, VideoDetectConfig(explain=explain), CalibrateConfig(), log, keep=reuse)
    half = (FrameReader(clip).info.frame_count or 0) // 2
    log(f"long: calibrating scene 'vtest' on frames 0-{half - 1} of {clip.name}")
    calibration = bench.calibrate([clip], "vtest", stop=half)
    video, frames = loop_video(clip, minutes, out / f"vtest-{minutes:g}min.avi")
    log(f"long: detecting {video.name} ({frames} frames) in a new process")
    measured = out / "detect_run.json"
    measured.unlink(missing_ok=True)
    command = [sys.executable, "-m", "sleuth.evals.long_bench", str(video), str(bench.settings.data_dir),
               str(measured), *(["--explain"] if explain else [])]
    child = subprocess.run(command, check=False)
    if child.returncode != 0 or not measured.is_file():
        raise SleuthError(f"the detect run on {video.name} failed (exit {child.returncode})",
                          hint="its error is printed above; rerun with --keep to reuse the calibration")
    run = json.loads(measured.read_text())
    fps = run["fps"]
    video_minutes = run["frames"] / fps / 60
    memory = memory_summary(run["samples"], run["frames"], fps)
    plot = plot_memory(out / "memory.png", run["samples"],
                       f"sleuth detect on {video_minutes:.0f} min of vtest.avi: resident memory over the run")
    seconds = run["seconds_by_stage"]
    score_fps = round(run["frames"] / seconds["score"], 1) if seconds.get("score") else None
    result = {"video": str(video), "minutes": round(video_minutes, 1), "frames": run["frames"], "explain": explain,
              "calibration": calibration, "wall_seconds": run["wall_seconds"], "seconds_by_stage": seconds,
              "score_frames_per_second": score_fps, "events": run["events"],
              "false_alarms_per_minute": round(run["events"] / video_minutes, 2),
              "memory": {**memory, "peak_rss_mb_getrusage": run["peak_rss_mb_getrusage"]},
              "plot": str(plot), "report": run["report"], "samples": run["samples"]}
    (out / "long_bench.json").write_text(json.dumps(result, indent=1))
    return result


def measure_detect(video: Path, data_dir: Path, target: Path, *, explain: bool = False) -> None:
    """Detect ``video`` of scene ``vtest`` (state in ``data_dir``) in this process, sampling its memory
    by stage; the samples and the run's figures go to ``target`` (JSON), the reports beside it."""
    settings = load_settings().model_copy(update={"data_dir": data_dir})
    runtime = Runtime.from_settings(settings)
    config = VideoDetectConfig(explain=explain)
    stages = StageTracker()
    telemetry.add_span_processor(stages)
    last_log = [0.0]
    with Sampler(stages) as sampler:
        def progress(stage: str, done: int, total: int) -> None:
            if stage == "score":
                sampler.scored = done
            if done == total or time.monotonic() - last_log[0] > 60:
                last_log[0] = time.monotonic()
                print(f"  {stage} {done}/{total}, resident {resident_mb()['rss']} MB", file=sys.stderr, flush=True)

        started = time.monotonic()
        report = detect_video(video, scene="vtest", config=config, runtime=runtime, progress=progress,
                              thread_id=f"long:{video.name}:{time.time_ns()}")  # always from scratch
        write_json(report, target.parent / "reports" / "long.json")
        write_html(report, target.parent / "reports" / "long.html")
        wall = time.monotonic() - started
    target.write_text(json.dumps({
        "frames": len(report.frames), "fps": FrameReader(video).info.fps or 10.0, "wall_seconds": round(wall, 1),
        "seconds_by_stage": report.cost.seconds_by_stage, "events": len(report.events),
        "report": str(target.parent / "reports" / "long.html"), "samples": sampler.samples,
        "peak_rss_mb_getrusage": round(peak_memory_mb())}))  # the detect process's own peak


if __name__ == "__main__":  # the detect run of :func:`run`, in a process of its own
    arguments = sys.argv[1:]
    measure_detect(Path(arguments[0]), Path(arguments[1]), Path(arguments[2]), explain="--explain" in arguments)
