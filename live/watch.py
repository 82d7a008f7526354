"""``sleuth watch``: watch a live source of a calibrated scene and raise alerts while it runs.

Each frame is decoded once and goes through the scene's proposer as it arrives
(:class:`~sleuth.tools.proposer.stream.StreamScorer`: detector, tracks and flow once per frame;
every ``chunk`` frames a window is scored with ``lookahead`` frames after it). The frames of a
chunk that reach the gate (the scene's normal 95th percentile, and their neighbours) are described
from the same object pass and judged against the scene's rules by the ``detect_captions`` graph,
with the chunk's ``context`` frames before it, exactly as ``sleuth detect`` judges a file. A chunk
with no gated frame costs no rule matching and no LLM call.

Anomalous frames open an event: an ``event`` alert goes out at once with the evidence (what the
proposer found unusual, the caption, the rules broken, the scores), the reason and the key frame
as a JPEG; more anomalous frames raise its peak; ``close_after_s`` without one closes it with an
``event_end`` alert (its span, peak and key frames). A stream that drops is reconnected with
backoff and the gap is a ``gap`` alert. Alerts are JSON lines on stdout and, with a webhook, POSTed
from a spool on disk (nothing lost while the receiver is down). A rolling report
(``watch.json``, ``watch.html`` and the key frames) is rewritten in the output folder after a
chunk, at most once a second unless an event opened or closed.

LLM use: with ``llm_reasons`` each event's reason is one full deduction by the LLM (a few seconds
on a CPU: the alert waits for it); by default the reason is written from the matched rule and the
proposer's finding, and the LLM is not called.
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sleuth.errors import SleuthError
from sleuth.graphs.detect import VideoDetectConfig
from sleuth.graphs.detect.graph import gate_threshold, judged_captions
from sleuth.graphs.detect_captions import detect_captions
from sleuth.graphs.runtime import Runtime
from sleuth.live.alerts import AlertRouter
from sleuth.live.sources import Gap, LiveFrames
from sleuth.memory.scenes import SceneProfile, SceneStore
from sleuth.tools.captioners.structured import describe_clip
from sleuth.tools.frames import FrameReader
from sleuth.tools.proposer import Proposer, ProposerStore
from sleuth.tools.proposer.stream import ScoredChunk, StreamScorer


class WatchConfig(BaseModel):
    fps: float | None = Field(default=None, gt=0, description="Frames analysed per second of the source (None: "
                              "the rate the scene was calibrated at; the proposer's temporal crops assume it).")
    chunk: int = Field(default=3, ge=1, description="Frames scored at a time (at 5 fps, 0.6 s: an alert waits for "
                       "its chunk to fill, then for the lookahead).")
    lookahead: int = Field(default=4, ge=4, description="Frames after a chunk its score waits for (the "
                           "self-supervised tasks read 4 frames either side of each frame).")
    context: int = Field(default=16, ge=4, description="Frames before a chunk kept for its crops, smoothing "
                         "and rule smoothing.")
    close_after_s: float = Field(default=3.0, gt=0, description="An event ends after this long with no "
                                 "anomalous frame.")
    llm_reasons: bool = Field(default=False, description="Each event's reason is a full deduction by the LLM "
                              "(its alert waits for it).")
    thumbnail_width: int = Field(default=320, ge=32, le=1280)
    retry_base_s: float = Field(default=1.0, gt=0, description="First wait before reconnecting a dropped stream.")
    retry_max_s: float = Field(default=30.0, gt=0, description="Longest wait between reconnects.")
    max_seconds: float | None = Field(default=None, gt=0, description="Stop after this much source time.")
    report_frames: int = Field(default=3000, ge=100, description="Recent frame scores kept in the rolling report.")
    report_every_s: float = Field(default=1.0, ge=0, description="Least time between rewrites of the rolling "
                                  "report (an event opening or closing rewrites it at once).")


@dataclass
class OpenEvent:
    id: str
    number: int
    start_frame: int
    start_s: float
    started_at: str
    peak_frame: int
    peak_s: float
    peak_score: float
    end_frame: int
    end_s: float
    reason: str | None
    broken_rules: list[str]
    proposer_reason: str | None
    caption: str | None
    cited: dict[str, Any] | None = None  # the frame whose caption the reason quotes
    key_frames: list[dict[str, Any]] = field(default_factory=list)
    quiet_s: float = 0.0


@dataclass
class WatchSummary:
    frames: int = 0
    seconds: float = 0.0
    events: int = 0
    gaps: int = 0
    llm_calls: int = 0
    pending_alerts: int = 0
    lag_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # per chunk, arrival to judged
    # per chunk of a stream, how far its judgment trails the stream's own clock (its last frame's time):
    # the chunk and lookahead wait plus the work; it grows without bound when the watch cannot keep up
    behind_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    report: Path | None = None
    gap_alerts: list[dict[str, Any]] = field(default_factory=list)  # one per reconnect: few


def now_iso(wall: float | None = None) -> str:
    return datetime.fromtimestamp(wall if wall is not None else time.time(), UTC).isoformat(timespec="milliseconds")


class Watcher:
    """Watch ``source`` of ``scene``; ``run()`` returns when stopped (``stop``), the file ends or
    ``max_seconds`` pass."""

    def __init__(self, source: str, *, scene: str, router: AlertRouter, output: Path,
                 config: WatchConfig | None = None, runtime: Runtime | None = None, camera: str | None = None,
                 stop: threading.Event | None = None, log: Callable[[str], None] | None = None) -> None:
        self.source, self.scene, self.router = source, scene, router
        self.config = config or WatchConfig()
        self.camera = camera or scene
        self.output = Path(output)
        self.stop = stop or threading.Event()
        self.log = log or (lambda line: None)
        runtime = runtime or Runtime.from_settings()
        self.rules = runtime.memory.latest(scene)
        # chunks are judged as they come and never resumed: no checkpoints, which would grow without end;
        # the rule memory (opened above) and the models are shared
        self.runtime = replace(runtime, checkpoint_path=None, _checkpointer=None, _lock=threading.Lock())
        self.proposer = self._proposer()
        if self.rules is None or not self.rules.anomaly:
            raise SleuthError(f"scene '{scene}' has no anomaly rules to judge events against",
                              hint=f"run `sleuth calibrate --scene {scene} --video NORMAL_FOOTAGE` first")
        detect = VideoDetectConfig()
        self.reasoning = detect.reasoning.model_copy(
            update={"explain_events": 1_000_000 if self.config.llm_reasons else 0})
        self.gate_percentile, self.gate_context = detect.gate_percentile, detect.gate_context
        self.calibration_fps = calibration_rate(SceneStore(self.runtime.settings).load(scene))
        self.fps = self.config.fps or self.calibration_fps or 5.0
        if self.calibration_fps and abs(self.fps - self.calibration_fps) > 0.05 * self.calibration_fps:
            self.log(f"warning: analysing {self.fps:g} frames/s, but scene '{scene}' was calibrated at "
                     f"{self.calibration_fps:g}: speeds stay right, the temporal crops do not")
        self.runtime.embedder(["a person walking"])  # load the embedder now, not when the first event needs it
        self.summary = WatchSummary()
        self._history: deque[dict[str, Any]] = deque(maxlen=self.config.context)  # judged frames before a chunk
        self._recent: deque[dict[str, Any]] = deque(maxlen=self.config.report_frames)
        self._events: list[dict[str, Any]] = []
        self._open: OpenEvent | None = None
        self._arrived: dict[int, float] = {}
        self._source_times: dict[int, float] = {}  # where in its stream or file each pending frame is
        self._started = now_iso()
        self._clock: Callable[[], float] | None = None  # the stream's session clock while one is watched
        self._written = -float("inf")  # when the rolling report was last written (time.monotonic)
        self._events_changed = False  # an event opened or closed since then

    def _proposer(self) -> Proposer:
        store = ProposerStore(self.runtime.settings)
        if not store.path_for(self.scene).is_file():
            known = ", ".join(store.scenes()) or "none"
            raise SleuthError(f"scene '{self.scene}' has no proposer (calibrated scenes: {known})",
                              hint=f"run `sleuth calibrate --scene {self.scene} --video NORMAL_FOOTAGE` first")
        return store.load(self.scene)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> WatchSummary:
        config = self.config
        frames = LiveFrames(self.source, fps=self.fps, retry_base_s=config.retry_base_s,
                            retry_max_s=config.retry_max_s, max_seconds=config.max_seconds, stop=self.stop,
                            on_gap=self._on_gap)
        self._clock = frames.clock if frames.kind == "stream" else None
        self.output.mkdir(parents=True, exist_ok=True)
        self._emit({"type": "started", "source": self.source, "kind": frames.kind, "fps": self.fps,
                    "rules_version": self.rules.version})
        scorer: StreamScorer | None = None
        segment = -1
        try:
            for item in frames:
                if item.segment != segment:  # a reconnect or a new file: tracks start afresh
                    if scorer is not None:
                        self._finish(scorer)
                    scorer = self._scorer()
                    segment = item.segment
                self._arrived[item.frame.index] = item.arrived
                self._source_times[item.frame.index] = item.source_time_s
                assert scorer is not None
                chunk = scorer.push(item.frame)
                if chunk is not None:
                    self._chunk(chunk)
            if scorer is not None:
                self._finish(scorer)
        finally:
            self._close_event(final=True)
            self.summary.gaps = len(frames.gaps)
            self._write_report(force=True)
            self._emit({"type": "stopped", "frames": self.summary.frames, "seconds": round(self.summary.seconds, 2),
                        "events": self.summary.events, "gaps": self.summary.gaps})
            self.summary.pending_alerts = self.router.close()
        return self.summary

    def _scorer(self) -> StreamScorer:
        self._history.clear()
        return StreamScorer(self.proposer, chunk=self.config.chunk, context=self.config.context,
                            lookahead=self.config.lookahead)

    def _finish(self, scorer: StreamScorer) -> None:
        rest = scorer.finish()
        if rest is not None:
            self._chunk(rest)

    # -- one chunk --------------------------------------------------------------------------

    def _chunk(self, chunk: ScoredChunk) -> None:
        arrived = self._arrived.get(chunk.frames[0].index)
        scores = chunk.scores
        z = np.asarray(scores.frame_scores, dtype=np.float64)
        unit = scores.unit_scores()
        reasons = scores.reasons()
        passed = z >= gate_threshold(scores, z, self.gate_percentile)
        history = list(self._history)
        near = any(h["passed"] for h in history[-self.gate_context:])
        captions = (describe_clip(chunk.frames, scores.tracked)
                    if scores.tracked is not None and (passed.any() or near) else [""] * len(chunk.frames))
        new = [{"index": f.index, "time_s": f.time_s, "proposer": float(u), "reason": r, "passed": bool(p),
                "caption": c} for f, u, r, p, c in zip(chunk.frames, unit, reasons, passed, captions, strict=True)]
        window = history + new
        judged, spans = self._judge(window) if any(item["passed"] for item in window) else (None, [])
        for position, item in enumerate(new):
            at = len(history) + position
            frame = judged[at] if judged is not None else None
            span = next((span for span in spans if span.start <= at <= span.end), None)
            span_rules = span.broken_rules if span is not None else []
            # the frame the event's reason cites (its strongest rule evidence), which may be another frame
            cited = window[span.evidence_frame] if span is not None and span.evidence_frame is not None else item
            item["cited"] = {"frame": cited["index"], "time_s": cited["time_s"], "caption": cited["caption"] or None}
            item["score"] = frame.score if frame is not None else self.reasoning.fuse(
                self.reasoning.no_evidence_score, item["proposer"])  # not judged: only the proposer speaks
            item["anomalous"] = bool(frame.anomalous) if frame is not None else False
            item["rule_score"] = frame.rule_score if frame is not None else None
            own = list(frame.broken_rules) if frame is not None else []
            item["broken_rules"] = own + [rule for rule in span_rules if rule not in own]  # the span's, as detect
            item["event_reason"] = frame.reason if frame is not None else None
        for item, image in zip(new, (f.image for f in chunk.frames), strict=True):
            self._advance(item, image)
            self._history.append(item)
            self._recent.append({k: item[k] for k in ("index", "time_s", "score", "proposer", "anomalous")})
            self._arrived.pop(item["index"], None)
            self._source_times.pop(item["index"], None)
        self.summary.frames += len(new)
        self.summary.seconds = new[-1]["time_s"]
        if arrived is not None:  # from the chunk's first frame arriving to its judgment: waiting + work
            self.summary.lag_s.append(round(time.time() - arrived, 3))
        if self._clock is not None:
            self.summary.behind_s.append(round(self._clock() - new[-1]["time_s"], 3))
        self._write_report(force=self._events_changed)

    def _judge(self, window: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        """The window's judged frames and its anomalous spans (``detect_captions``' events)."""
        result = detect_captions(judged_captions([item["caption"] for item in window]), video=Path(self.source).name,
                                 scene=self.scene, rules=self.rules,
                                 proposer_scores=[item["proposer"] for item in window],
                                 notes=[item["reason"] for item in window], config=self.reasoning,
                                 runtime=self.runtime, thread_id=f"watch:{uuid.uuid4().hex}")
        self.summary.llm_calls += result.llm_calls
        return result.frames, result.events

    # -- events -----------------------------------------------------------------------------

    def _advance(self, item: dict[str, Any], image: np.ndarray) -> None:
        event = self._open
        if item["anomalous"]:
            if event is None:
                self._open_event(item, image)
                return
            event.quiet_s = 0.0
            event.end_frame, event.end_s = item["index"], item["time_s"]
            if item["score"] > event.peak_score:
                event.peak_frame, event.peak_s, event.peak_score = item["index"], item["time_s"], item["score"]
                event.key_frames = [k for k in event.key_frames if k["role"] != "peak"]
                event.key_frames.append(self._key_frame(event, item, image, "peak"))
            for rule in item["broken_rules"]:
                if rule not in event.broken_rules:
                    event.broken_rules.append(rule)
        elif event is not None:
            event.quiet_s = item["time_s"] - event.end_s
            if event.quiet_s >= self.config.close_after_s:
                self._close_event(final=False)

    def _open_event(self, item: dict[str, Any], image: np.ndarray) -> None:
        self.summary.events += 1
        event = OpenEvent(id=uuid.uuid4().hex[:12], number=self.summary.events, start_frame=item["index"],
                          start_s=item["time_s"], started_at=now_iso(self._arrived.get(item["index"])),
                          peak_frame=item["index"], peak_s=item["time_s"], peak_score=item["score"],
                          end_frame=item["index"], end_s=item["time_s"], reason=item["event_reason"],
                          broken_rules=list(item["broken_rules"]), proposer_reason=item["reason"],
                          caption=item["caption"] or None, cited=item.get("cited"))
        event.key_frames.append(self._key_frame(event, item, image, "start"))
        self._open = event
        arrived = self._arrived.get(item["index"])
        alert = {"type": "event", **self._event_fields(event),
                 "scores": {"score": round(item["score"], 3), "proposer": round(item["proposer"], 3),
                            "rule_score": None if item["rule_score"] is None else round(item["rule_score"], 3),
                            "threshold": self.reasoning.threshold},
                 "source_time_s": self._source_times.get(item["index"]),
                 "latency_s": round(time.time() - arrived, 3) if arrived is not None else None}
        self._emit(alert)
        self._events_changed = True
        self.log(f"event {event.number} at {clock(event.start_s)}: {event.reason or event.proposer_reason or ''}")

    def _close_event(self, *, final: bool) -> None:
        event = self._open
        if event is None:
            return
        self._open = None
        fields = self._event_fields(event)
        fields.update({"end_frame": event.end_frame, "end_s": event.end_s,
                       "duration_s": round(event.end_s - event.start_s, 2), "peak_frame": event.peak_frame,
                       "peak_s": event.peak_s, "peak_score": round(event.peak_score, 3),
                       "open_at_stop": final})
        self._events.append({**fields, "key_frames": [without_jpeg(k) for k in fields["key_frames"]]})
        self._events_changed = True
        self._emit({"type": "event_end", **fields})

    def _event_fields(self, event: OpenEvent) -> dict[str, Any]:
        return {"id": event.id, "event": event.number, "camera": self.camera, "scene": self.scene,
                "source": self.source, "start_frame": event.start_frame, "start_s": event.start_s,
                "start_clock": clock(event.start_s), "started_at": event.started_at,
                "reason": event.reason or (f"Unusual for this scene: {event.proposer_reason}"
                                           if event.proposer_reason else None),
                "broken_rules": list(event.broken_rules), "evidence": {
                    "proposer": event.proposer_reason, "caption": event.caption, "reason_cites": event.cited},
                "key_frames": [dict(k) for k in event.key_frames]}

    def _key_frame(self, event: OpenEvent, item: dict[str, Any], image: np.ndarray, role: str) -> dict[str, Any]:
        from sleuth.reports import thumbnail

        encoded = thumbnail(image, width=self.config.thumbnail_width)
        folder = self.output / "events" / event.id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{role}-{item['index']:08d}.jpg"
        import base64

        path.write_bytes(base64.b64decode(encoded))
        return {"role": role, "frame": item["index"], "time_s": item["time_s"], "path": str(path),
                "jpeg_base64": encoded}

    # -- output -----------------------------------------------------------------------------

    def _on_gap(self, gap: Gap) -> None:
        self.log(f"the stream was down for {gap.seconds:.1f} s ({gap.reason}); reconnected")
        self._emit({"type": "gap", "camera": self.camera, "start_s": gap.start_s, "end_s": gap.end_s,
                    "seconds": gap.seconds, "reason": gap.reason, "attempts": gap.attempts})

    def _emit(self, alert: dict[str, Any]) -> None:
        alert = {"at": now_iso(), **alert}
        alert.setdefault("camera", self.camera)
        if alert["type"] == "gap":
            self.summary.gap_alerts.append(alert)
        self.router.emit(alert)

    def _write_report(self, *, force: bool = False) -> None:
        """Rewrite ``watch.json`` and ``watch.html``: at most every ``report_every_s``, at once with ``force``."""
        if not force and time.monotonic() - self._written < self.config.report_every_s:
            return
        self._written, self._events_changed = time.monotonic(), False
        events = [*self._events]
        if self._open is not None:
            events.append({**self._event_fields(self._open), "open": True})
        data = {"source": self.source, "scene": self.scene, "camera": self.camera, "started": self._started,
                "updated": now_iso(), "frames": self.summary.frames, "seconds": round(self.summary.seconds, 2),
                "threshold": self.reasoning.threshold, "llm_calls": self.summary.llm_calls,
                "events": [{**e, "key_frames": [without_jpeg(f) for f in e["key_frames"]]} for e in events],
                "gaps": list(self.summary.gap_alerts), "recent_frames": list(self._recent),
                "timing": {"lag_s": spread(self.summary.lag_s), "behind_s": spread(self.summary.behind_s)}}
        _atomic_write(self.output / "watch.json", json.dumps(data, indent=1))
        _atomic_write(self.output / "watch.html", render_html(data, self.output))
        self.summary.report = self.output / "watch.html"


def without_jpeg(key_frame: dict[str, Any]) -> dict[str, Any]:
    """A key frame as the report keeps it: its JPEG is on disk (``path``), not inline."""
    return {k: v for k, v in key_frame.items() if k != "jpeg_base64"}


def spread(values: Sequence[float] | deque[float]) -> dict[str, float | None]:
    """Median, 95th percentile and maximum of ``values`` (None each when there are none)."""
    values = list(values)
    return {"median": round(float(np.median(values)), 2) if values else None,
            "p95": round(float(np.percentile(values, 95)), 2) if values else None,
            "max": round(max(values), 2) if values else None}


def calibration_rate(profile: SceneProfile | None) -> float | None:
    """The frame rate a scene was calibrated at: its ``--fps``, else its first footage's own rate."""
    if profile is None:
        return None
    if profile.fps:
        return profile.fps
    for footage in profile.footage[:1]:
        try:
            return FrameReader(footage).info.fps
        except SleuthError:
            return None
    return None


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours:d}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes:02d}:{rest:04.1f}"


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def render_html(data: dict[str, Any], output: Path) -> str:
    """The rolling report: what is watched, the events so far with their key frames, the gaps, and a
    plot of the recent scores (an inline SVG). It reloads itself every 5 seconds."""
    recent = data["recent_frames"]
    svg = ""
    if len(recent) > 1:
        t0, t1 = recent[0]["time_s"], recent[-1]["time_s"] or 1.0
        span = max(t1 - t0, 1e-6)
        points = " ".join(f"{600 * (f['time_s'] - t0) / span:.1f},{100 - 100 * min(max(f['score'], 0), 1):.1f}"
                          for f in recent)
        line = 100 - 100 * data["threshold"]
        svg = (f'<svg viewBox="0 0 600 100" width="600" height="100" role="img" aria-label="anomaly score">'
               f'<line x1="0" x2="600" y1="{line:.1f}" y2="{line:.1f}" stroke="#c33" stroke-dasharray="4"/>'
               f'<polyline fill="none" stroke="#225" points="{points}"/></svg>'
               f"<p>Anomaly score from {clock(t0)} to {clock(t1)}; the dashed line is the threshold "
               f"{data['threshold']:.2f}.</p>")
    rows = []
    for event in data["events"]:
        images = "".join(f'<figure><img src="{html.escape(os.path.relpath(k["path"], output))}" width="240" '
                         f'alt="{html.escape(k["role"])} frame"><figcaption>{html.escape(k["role"])} '
                         f'{clock(k["time_s"])}</figcaption></figure>' for k in event["key_frames"])
        span = (f"{clock(event['start_s'])} to {clock(event['end_s'])}" if "end_s" in event
                else f"from {clock(event['start_s'])}, still open")
        rules = ", ".join(event["broken_rules"]) or "none named"
        finding = event["evidence"].get("proposer")
        unusual = f"<p>What the proposer found unusual: {html.escape(finding)}</p>" if finding else ""
        cited = event["evidence"].get("reason_cites") or {}
        cites = (f"<p>The reason quotes frame {cited['frame']} ({clock(cited['time_s'])}): "
                 f"{html.escape(cited['caption'])}</p>" if cited.get("caption") else "")
        rows.append(f"<section><h3>Event {event['event']}: {span}</h3>"
                    f"<p>{html.escape(event['reason'] or 'No reason was recorded.')}</p>"
                    f"<p>Rules broken: {html.escape(rules)}.</p>{cites}{unusual}<p>First anomalous frame: "
                    f"{html.escape(event['evidence']['caption'] or 'no caption')}</p><div class=k>{images}</div>"
                    f"</section>")
    gaps = "".join(f"<li>{clock(g['start_s'])} to {clock(g['end_s'])}: {html.escape(g['reason'])}</li>"
                   for g in data["gaps"])
    events = "".join(rows) or "<p>No anomalous event so far.</p>"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5>"
            f"<title>Sleuth watch: {html.escape(data['camera'])}</title><style>body{{font-family:sans-serif;"
            f"max-width:60em;margin:1em auto}} .k{{display:flex;gap:.5em}} figure{{margin:0}}</style></head><body>"
            f"<h1>Watching {html.escape(data['camera'])}</h1><p>{html.escape(data['source'])}, scene "
            f"{html.escape(data['scene'])}; since {data['started']}, updated {data['updated']}; "
            f"{data['frames']} frames ({clock(data['seconds'])}), {len(data['events'])} event(s), "
            f"{data['llm_calls']} LLM call(s).</p>{svg}<h2>Events</h2>{events}"
            + (f"<h2>Gaps in the stream</h2><ul>{gaps}</ul>" if gaps else "") + "</body></html>")
