"""The ``detect`` graph: a video of a calibrated scene in, scored frames and explained events out.

    check -> score -> gate -> caption -> reason -> events [-> explain] -> report

Input ``{"video": PATH_OR_URL, "scene": NAME}`` (:class:`DetectInput`), output ``{"report": {...}}``
(:class:`DetectOutput`, a :class:`~sleuth.records.DetectReport` as JSON); the settings
(:class:`VideoDetectConfig`: range, sampling, gate, reasoning, explain) are the run's context
(``graph.invoke(input, config, context={...})``, or an assistant's context in LangGraph Studio),
by default the ones the graph was built with.

- **check**: the scene is calibrated and the video readable in the range asked, before any model
  loads; otherwise a one-line error that says what to do.
- **score**: the video is read once, in chunks of ``chunk_frames`` (memory holds one window of
  frames, not the video); the scene's proposer scores every frame (z units; its calibrated
  threshold maps to 0.5 on a 0-1 scale) and says per frame why its most unusual object is
  unusual. With the structured captioner, every frame is also described here from the same
  object pass (detector, tracks, flow), so nothing is detected twice.
- **gate**: frames whose proposer score reaches a percentile of the scene's normal scores, and
  their neighbours, go on; the rest are never captioned and cost no LLM call.
- **caption**: the gated frames keep their descriptions (or, with another captioner, it
  describes them now).
- **reason**: the ``detect_captions`` graph judges the captions against the scene's rules
  (cheap rule matching, LLM deduction where configured), fuses the proposer score, smooths, and
  explains each event with one full deduction from its caption and the proposer's reason; with
  ``validate_events`` an event the LLM judges normal is dismissed (kept, with its reason). Frames
  that were not captioned have no rule evidence (rule score 0): only the proposer speaks for them.
- **events**: anomalous spans become events with times, broken rules, the reason and key-frame
  thumbnails; **explain** (optional) adds Holmes-VAU judgments at clip, event and video level.
- **report**: the typed report, with the models used, the cost and the trace id.

Every node writes lists of numbers and texts to the state (never frames), and the graph runs
under a SQLite checkpointer: an interrupted run resumes after the last finished node, and the
reasoning stage resumes inside itself batch by batch.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict

import numpy as np
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from sleuth import telemetry
from sleuth.errors import SleuthError
from sleuth.graphs.context import run_settings
from sleuth.graphs.detect.configuration import VideoDetectConfig
from sleuth.graphs.detect.state import Cost, DetectReport, FrameScore, VideoEvent
from sleuth.graphs.detect_captions import detect_captions, strongest_note
from sleuth.graphs.reducers import merge_dicts
from sleuth.graphs.runtime import Runtime
from sleuth.memory.scenes import SceneStore
from sleuth.tools.captioners.structured import StructuredDescriber, describe_clip
from sleuth.tools.captioners.windows import caption_positions
from sleuth.tools.frames import Frame, FrameReader, VideoError, VideoInfo, frames_at, is_stream
from sleuth.tools.heap import release_memory
from sleuth.tools.proposer import ProposalScores, Proposer, ProposerStore
from sleuth.tools.proposer.stream import ScoredChunk, StreamScorer

Progress = Callable[[str, int, int], None]



GRAPH_VERSION = 3  # part of the default thread id: checkpoints of an older state layout are not resumed


class DetectInput(TypedDict):
    """What the graph is given: a video file (or stream URL) and the calibrated scene it shows."""

    video: str
    scene: str


class DetectOutput(TypedDict):
    """What the graph returns: its report, a :class:`~sleuth.records.DetectReport` as JSON."""

    report: dict[str, Any]


class VideoDetectState(TypedDict, total=False):
    # input
    video: str
    scene: str
    # score
    warnings: list[str]
    indices: list[int]
    times: list[float]
    proposer_z: list[float] | None
    proposer: list[float]
    proposer_reasons: list[str | None]
    threshold: float | None
    gate_threshold: float
    described: list[str] | None  # captions of every frame from the proposer's object pass (structured captioner)
    # gate, caption
    gated: list[bool]
    captions: list[str]
    # reason
    frames: list[dict[str, Any]]
    events: list[dict[str, Any]]
    dismissed: list[dict[str, Any]]  # candidate events the LLM's validation dismissed
    rules: dict[str, Any]
    usage: dict[str, int]
    # events, explain
    thumbnails: dict[str, str]
    explanation: dict[str, Any] | None
    seconds: Annotated[dict[str, float], merge_dicts]
    # report
    report: dict[str, Any]


NO_CAPTION = "No moving people or objects are visible."  # what the rules judge where nothing passed the gate


def gate_threshold(scores: ProposalScores, z: Sequence[float], percentile: float) -> float:
    """The proposer score (z units) a frame must reach to be described and judged: the scene's
    normal ``percentile`` (kept with its proposer checkpoint); for a checkpoint from before the
    percentiles were kept, that share of the way from the median to the alarm threshold; with a
    percentile of 0 every frame passes. ``sleuth detect`` and ``sleuth watch`` gate alike."""
    if percentile <= 0:
        return -math.inf
    gate = scores.calibration_percentile(percentile)
    if gate is not None:
        return float(gate)
    threshold = float(scores.threshold if scores.threshold is not None else np.percentile(z, 95))
    median = scores.calibration_percentile(50.0)
    median = float(np.median(z)) if median is None else median
    return median + (threshold - median) * min(percentile, 99.0) / 99.0


def judged_captions(captions: Sequence[str]) -> list[str]:
    """The captions the rules judge: ``captions``, or :data:`NO_CAPTION` for each when none was written."""
    return list(captions) if any(text.strip() for text in captions) else [NO_CAPTION] * len(captions)


def dilate(flags: Sequence[bool], radius: int) -> list[bool]:
    """``flags`` widened by ``radius`` positions either side."""
    out = np.zeros(len(flags), bool)
    for i in np.flatnonzero(np.asarray(flags, bool)):
        out[max(0, i - radius): i + radius + 1] = True
    return out.tolist()


def key_positions(first: int, last: int, peak: int, count: int) -> list[int]:
    """Up to ``count`` positions of a span: the peak, then its ends, then evenly between."""
    chosen = [peak, first, last] + np.linspace(first, last, count + 2).round().astype(int).tolist()[1:-1]
    out: list[int] = []
    for position in chosen:
        if position not in out:
            out.append(int(position))
    return sorted(out[:count])


def build_graph(runtime: Runtime, config: VideoDetectConfig | None = None, *, progress: Progress | None = None,
                checkpointer: Any = None) -> Any:
    """The graph. ``config`` is the default settings; a run's context (a :class:`VideoDetectConfig` or
    a dict of its fields) replaces them for that run."""
    default = config or VideoDetectConfig()

    def settings() -> VideoDetectConfig:
        return run_settings(VideoDetectConfig, default)

    def reader(state: VideoDetectState) -> FrameReader:
        config = settings()
        return FrameReader(state["video"], fps=config.fps, start=config.start, stop=config.stop,
                           allow_partial=config.allow_partial)

    def read(state: VideoDetectState, frames_of: FrameReader | None = None) -> list[Frame]:
        frames_of = frames_of or reader(state)
        frames = frames_of.read()
        if not frames:
            raise no_frames_error(frames_of)
        return frames

    def timed(name: str, started: float) -> dict[str, float]:
        return {name: round(time.perf_counter() - started, 2)}

    @telemetry.traced_agent("check")
    def check(state: VideoDetectState) -> dict[str, Any]:
        started = time.perf_counter()
        check_input(runtime, state["video"], state["scene"], settings())
        return {"seconds": timed("check", started)}

    @telemetry.traced_agent("score")
    def score(state: VideoDetectState) -> dict[str, Any]:
        started = time.perf_counter()
        config, tools = settings(), runtime.toolset()
        source = reader(state)
        if not ProposerStore(runtime.settings).path_for(state["scene"]).is_file():
            # Rules only: every frame is captioned, the proposer neither gates nor scores.
            indices, times = [], []
            for frame in source:
                indices.append(frame.index)
                times.append(frame.time_s)
            if not indices:
                raise no_frames_error(source)
            return {"warnings": [source.shortfall] if source.shortfall else [], "indices": indices, "times": times,
                    "proposer_z": None, "proposer": [0.5] * len(indices), "proposer_reasons": [None] * len(indices),
                    "threshold": None, "gate_threshold": -math.inf, "seconds": timed("score", started)}
        proposer = tools.proposer(state["scene"])
        structured = isinstance(tools.captioner, StructuredDescriber)
        if isinstance(proposer, Proposer):
            chunks = StreamScorer(proposer, chunk=config.chunk_frames).chunks(source)  # one decode, flat memory
        else:  # a Ray Serve handle scores a whole clip sent to it
            frames = read(state, source)
            whole = proposer.score(frames)
            chunks = iter([ScoredChunk(frames, whole)])
        total = None if is_stream(state["video"]) else range_frames(source)
        indices, times, z, unit, reasons, described = [], [], [], [], [], []
        scores = None
        for chunk in chunks:
            scores = chunk.scores
            indices += scores.frame_indices
            times += scores.times_s
            z += np.asarray(scores.frame_scores, dtype=np.float64).tolist()
            unit += scores.unit_scores().tolist()
            reasons += scores.reasons()
            if structured and scores.tracked is not None:
                described += describe_clip(chunk.frames, scores.tracked)  # one object pass serves both
            if progress:
                progress("score", len(indices), max(total or 0, len(indices)))
        if scores is None:
            raise no_frames_error(source)
        warnings = [source.shortfall] if source.shortfall else []  # only with allow_partial: else it raised
        chunk = chunks = None  # the last chunk's frames go, and the freed memory back to the system
        release_memory()
        threshold = float(scores.threshold if scores.threshold is not None else np.percentile(z, 95))
        gate = gate_threshold(scores, z, config.gate_percentile)
        return {"warnings": warnings, "indices": indices, "times": times, "proposer_z": z,
                "described": described if structured and len(described) == len(indices) else None,
                "proposer": unit, "proposer_reasons": reasons, "threshold": threshold,
                "gate_threshold": float(gate), "seconds": timed("score", started)}

    @telemetry.traced_agent("gate")
    def gate(state: VideoDetectState) -> dict[str, Any]:
        config = settings()
        z = state.get("proposer_z")
        if z is None:
            return {"gated": [True] * len(state["indices"])}
        passed = [value >= state["gate_threshold"] for value in z]
        return {"gated": dilate(passed, config.gate_context)}

    @telemetry.traced_agent("caption")
    def caption(state: VideoDetectState) -> dict[str, Any]:
        started = time.perf_counter()
        config, tools = settings(), runtime.toolset()
        positions = [i for i, flag in enumerate(state["gated"]) if flag]
        captions = [""] * len(state["gated"])
        described = state.get("described")
        if described is not None:
            for position in positions:
                captions[position] = described[position]
            if progress:
                progress("caption", len(positions), len(positions))
        elif positions:
            frames = read(state)
            texts = caption_positions(tools.captioner, frames, positions, context=config.caption_context,
                                      progress=(lambda done, total: progress("caption", done, total))
                                      if progress else None)
            for position, text in texts.items():
                captions[position] = text
        return {"captions": captions, "seconds": timed("caption", started)}

    @telemetry.traced_agent("reason")
    def reason(state: VideoDetectState) -> dict[str, Any]:
        started = time.perf_counter()
        reasoning = settings().reasoning
        if state.get("proposer_z") is None:
            reasoning = reasoning.model_copy(update={"proposer_weight": 0.0})
        result = detect_captions(judged_captions(state["captions"]), video=Path(state["video"]).name,
                                 scene=state["scene"], rules=None, proposer_scores=state["proposer"],
                                 notes=state.get("proposer_reasons"),
                                 config=reasoning, runtime=runtime,
                                 thread_id=f"{run_thread()}:reason", progress=progress)
        rules = runtime.memory.get(state["scene"], result.rules_version) if result.rules_version else None
        release_memory()  # the embeddings and the LLM's buffers of the judgment
        return {"frames": [frame.model_dump() for frame in result.frames],
                "events": [event.model_dump() for event in result.events],
                "dismissed": [event.model_dump() for event in result.dismissed],
                "rules": rules.model_dump() if rules else {},
                "usage": {"llm_calls": result.llm_calls, "prompt_tokens": result.prompt_tokens,
                          "completion_tokens": result.completion_tokens},
                "seconds": timed("reason", started)}

    @telemetry.traced_agent("events")
    def events(state: VideoDetectState) -> dict[str, Any]:
        started = time.perf_counter()
        config = settings()
        indices, times = state["indices"], state["times"]
        reasons, proposer = state.get("proposer_reasons") or [None] * len(indices), state["proposer"]
        wanted: set[int] = set()

        def video_event(number: int, event: dict[str, Any]) -> dict[str, Any]:
            first, last, peak = event["start"], event["end"], event["peak_frame"]
            strongest = strongest_note(reasons, proposer, first, last)  # the one the deduction was shown
            keys = key_positions(first, last, peak, config.key_frames)
            wanted.update(indices[p] for p in keys)
            return VideoEvent(
                id=number, start_frame=indices[first], end_frame=indices[last], start_s=times[first],
                end_s=times[last], peak_frame=indices[peak], peak_s=times[peak], peak_score=event["peak_score"],
                broken_rules=event["broken_rules"], reason=event["reason"],
                proposer_reason=reasons[strongest] if strongest is not None else None,
                proposer_frame=indices[strongest] if strongest is not None else None,
                key_frames=[indices[p] for p in keys], verdict=event.get("verdict", "unjudged"),
                anomaly_probability=event.get("anomaly_probability")).model_dump()

        built = [video_event(k + 1, event) for k, event in enumerate(state["events"])]
        dismissed = [video_event(len(built) + k + 1, event) for k, event in enumerate(state.get("dismissed") or [])]
        thumbnails: dict[str, str] = {}
        if wanted:
            from sleuth.reports import thumbnail

            for index, frame in frames_at(state["video"], wanted).items():  # a few short reads, not a decode
                thumbnails[str(index)] = thumbnail(frame.image, width=config.thumbnail_width)
        return {"events": built, "dismissed": dismissed, "thumbnails": thumbnails,
                "seconds": timed("events", started)}

    @telemetry.traced_agent("explain")
    def explain(state: VideoDetectState) -> dict[str, Any]:
        started = time.perf_counter()
        from sleuth.graphs.explain import ExplainConfig, explain_video

        config = settings()
        rules = state.get("rules") or {}
        explanation = explain_video(
            state["video"], scene=state["scene"], scores=[frame["score"] for frame in state["frames"]],
            events=[VideoEvent.model_validate(event) for event in state["events"]],
            config=ExplainConfig(threshold=config.reasoning.threshold),
            rules=[f"{rule['kind']}: {rule['text']}" for rule in rules.get("rules", [])], fps=config.fps,
            start=config.start, stop=config.stop, indices=state["indices"], times=state["times"],
            runtime=runtime, progress=progress,
            thread_id=f"{run_thread()}:explain")
        return {"explanation": explanation.model_dump(), "seconds": timed("explain", started)}

    @telemetry.traced_agent("report")
    def report(state: VideoDetectState) -> dict[str, Any]:
        return {"report": build_report(state, settings(), runtime).model_dump(mode="json")}

    def after_events(state: VideoDetectState) -> str:
        return "explain" if settings().explain else "report"

    graph = StateGraph(VideoDetectState, context_schema=VideoDetectConfig, input_schema=DetectInput,
                       output_schema=DetectOutput)
    for name, node in [("check", check), ("score", score), ("gate", gate), ("caption", caption), ("reason", reason),
                       ("events", events), ("explain", explain), ("report", report)]:
        graph.add_node(name, node)
    for before, after in [(START, "check"), ("check", "score"), ("score", "gate"), ("gate", "caption"),
                          ("caption", "reason"), ("reason", "events"), ("explain", "report"), ("report", END)]:
        graph.add_edge(before, after)
    graph.add_conditional_edges("events", after_events, ["explain", "report"])
    return graph.compile(checkpointer=checkpointer)


def run_thread() -> str:
    """The thread of the run in progress (its sub-runs, reasoning and explain, are checkpointed
    under it): the caller's ``thread_id``, or "detect" without a checkpointer."""
    return str((get_config().get("configurable") or {}).get("thread_id") or "detect")


def check_input(runtime: Runtime, video: str, scene: str, config: VideoDetectConfig) -> None:
    """A one-line error, before any model loads, unless ``scene`` is calibrated (a proposer
    checkpoint or rules) and ``video`` can be read from ``config.start``."""
    store, profiles = ProposerStore(runtime.settings), SceneStore(runtime.settings)
    if not store.path_for(scene).is_file() and runtime.memory.latest(scene) is None:
        known = sorted(set(store.scenes()) | set(profiles.scenes()))
        raise SleuthError(f"scene '{scene}' is not calibrated (calibrated scenes: {', '.join(known) or 'none'})",
                          hint=f"run `sleuth calibrate --scene {scene} --video NORMAL_FOOTAGE` first")
    probe = FrameReader(video, fps=config.fps, start=config.start, stop=config.stop)  # a missing video fails here
    if config.start and not is_stream(video):
        count = probe.info.frame_count
        if count is not None and config.start >= count:
            raise no_frames_error(probe)


def range_frames(reader: FrameReader) -> int | None:
    """About how many frames ``reader`` gives: its range of the file, at its sampling rate (for progress)."""
    info = reader.info
    if info.frame_count is None:
        return None
    end = info.frame_count if reader.stop is None else min(reader.stop, info.frame_count)
    count = max(0, end - reader.start)
    if reader.fps is not None and info.fps and reader.fps < info.fps:
        count = math.ceil(count * reader.fps / info.fps)
    return count


def no_frames_error(reader: FrameReader) -> VideoError:
    """Why a read of ``reader``'s range gave no frame, in the video's own length where it has one."""
    name, start, stop = reader.source, reader.start, reader.stop
    try:
        info: VideoInfo | None = reader.info
    except VideoError:  # a stream that went away since: say what is known
        info = None
    count = info.frame_count if info is not None else None
    if info is not None and count is not None and start >= count:
        seconds = f", {info.duration_s:.1f} s" if info.duration_s is not None else ""
        return VideoError(f"--start {start} is past the end of {name} ({count} frames{seconds})",
                          hint=f"pass a --start below {count}")
    where = f"from frame {start}" + (f" to frame {stop - 1}" if stop is not None else " on")
    length = f" ({count} frames)" if count is not None else ""
    return VideoError(f"no frames in {name}{length} {where}", hint="check the video and --start/--stop")


def default_thread_id(source: str, scene: str, config: VideoDetectConfig, runtime: Runtime) -> str:
    """Same video, scene, settings, proposer and rules -> same thread (so a rerun resumes).

    ``allow_partial`` enters the digest only when set: a run that accepted a truncated file never
    answers a rerun without the flag, and checkpoints of runs made before the field existed stay valid.
    """
    digest = hashlib.sha1()
    path = Path(source)
    stat = path.stat() if path.exists() else None
    checkpoint = ProposerStore(runtime.settings).path_for(scene)
    parts = [str(path.resolve()) if stat else source, str(stat.st_mtime_ns if stat else 0),
             str(stat.st_size if stat else 0), scene,
             config.model_dump_json(exclude=None if config.allow_partial else {"allow_partial"}),
             str(checkpoint.stat().st_mtime_ns if checkpoint.is_file() else 0),
             str(runtime.memory.latest_version(scene)), getattr(runtime.toolset().captioner, "name", ""),
             str(GRAPH_VERSION)]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return f"detect:{scene}:{path.name}:{digest.hexdigest()[:12]}"


def detect_video(source: str | Path, *, scene: str, config: VideoDetectConfig | None = None,
                 runtime: Runtime | None = None, progress: Progress | None = None,
                 thread_id: str | None = None) -> DetectReport:
    """Detect anomalies in one video of a calibrated ``scene`` (see the module docstring).

    Runs are checkpointed under ``thread_id`` (by default derived from the video, the scene, the
    configuration, the proposer checkpoint and the rule version): an interrupted run resumes, and
    a finished one returns its stored result without new work.
    """
    source = str(source)
    config = config or VideoDetectConfig()
    runtime = runtime or Runtime.from_settings()
    check_input(runtime, source, scene, config)
    thread_id = thread_id or default_thread_id(source, scene, config, runtime)
    graph = build_graph(runtime, config, progress=progress, checkpointer=runtime.checkpointer)
    run_config = {"configurable": {"thread_id": thread_id}}
    with telemetry.agent_span("detect") as span:
        span.set_attribute("sleuth.scene", scene)
        span.set_attribute("sleuth.video", source)
        snapshot = graph.get_state(run_config) if runtime.checkpointer is not None else None
        if snapshot is not None and snapshot.next:
            output = graph.invoke(None, run_config, context=config)  # resume an interrupted run
        elif snapshot is not None and snapshot.values.get("report") is not None:
            output = snapshot.values  # finished before: same inputs, same result
        else:
            output = graph.invoke({"video": source, "scene": scene}, run_config, context=config)
        report = DetectReport.model_validate(output["report"])
        span.set_attribute("sleuth.events", len(report.events))
    return report


def build_report(state: VideoDetectState, config: VideoDetectConfig, runtime: Runtime) -> DetectReport:
    """The typed report of a finished run (its cost is the sum of its stages' seconds)."""
    frames = [FrameScore(index=index, time_s=time_s, score=frame["score"], proposer=proposer,
                         rule_score=frame.get("rule_score"), gated=gated, anomalous=frame["anomalous"],
                         caption=caption or None, evidence=frame.get("evidence"), proposer_reason=why,
                         prior_score=frame.get("prior_score"))
              for index, time_s, frame, proposer, gated, caption, why in zip(
                  state["indices"], state["times"], state["frames"], state["proposer"], state["gated"],
                  state["captions"], state.get("proposer_reasons") or [None] * len(state["indices"]), strict=True)]
    usage = state.get("usage") or {}
    explanation = state.get("explanation")
    llm_calls = usage.get("llm_calls", 0) + (explanation or {}).get("llm_calls", 0)
    stages = dict(state.get("seconds") or {})
    rules = state.get("rules") or {}
    toolset = runtime.toolset()
    return DetectReport(
        video=state["video"], scene=state["scene"], fps=config.fps, threshold=config.reasoning.threshold,
        gate_threshold=state["gate_threshold"], rules_version=int(rules.get("version") or 0),
        rules=[f"{rule['kind']}: {rule['text']}" for rule in rules.get("rules", [])], frames=frames,
        events=[VideoEvent.model_validate(event) for event in state["events"]],
        dismissed=[VideoEvent.model_validate(event) for event in state.get("dismissed") or []],
        models={"llm": runtime.settings.llm.model, "embedder": runtime.settings.embedder.model,
                "captioner": getattr(toolset.captioner, "name", type(toolset.captioner).__name__),
                "proposer": str(ProposerStore(runtime.settings).path_for(state["scene"]))
                if state.get("proposer_z") is not None else "none (rules only)",
                **({"explainer": explanation.get("model") or runtime.settings.llm.model} if explanation else {})},
        cost=Cost(frames=len(frames), gated_frames=sum(state["gated"]), llm_calls=llm_calls,
                  prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0),
                  seconds=round(sum(stages.values()), 2), seconds_by_stage=stages),
        trace_id=telemetry.current_trace_id(),
        thumbnails={int(k): v for k, v in (state.get("thumbnails") or {}).items()},
        explanation=explanation, created=datetime.now(UTC).isoformat(timespec="seconds"),
        warnings=list(state.get("warnings") or []))
