"""The ``explain`` graph (Holmes-VAU): anomaly scores in, judgments at clip, event and video level out.

    prepare -> sample -> describe -> judge_clips (loops) -> judge_events (loops) -> judge_video -> explanation

Input :class:`ExplainInput` (at least ``{"video": PATH, "scene": NAME}``), output
``{"explanation": {...}}`` (:class:`ExplainOutput`); the settings (:class:`ExplainConfig`) are the
run's context, by default the ones the graph was built with.

- **prepare**: the video is readable; the mode (a VLM sees the frames, or the LLM reads
  captions) and the events to judge one by one are fixed for the run.
- **sample**: per-frame anomaly scores (given, or from the scene's proposer) become a density; the
  anomaly-focused sampler picks ``frames`` positions for the whole video and ``event_frames``
  inside each event's span.
- **describe**: with a VLM nothing is written here (the judges send the frames' images); without
  one, the captioner describes each sampled frame in a window of ``caption_context`` consecutive
  frames either side (speeds need neighbours) and the sampled frame's caption is kept; windows
  that overlap merge into one captioner call, so no frame is captioned twice.
- **judge_clips**: consecutive groups of ``clip_size`` sampled frames, one model call each, one
  checkpointed step each, so an interrupted run resumes after the last finished clip. Verdicts
  come from the scores (``threshold``) and the detector's events, prose from the model, checked
  sentence by sentence against the evidence (:mod:`sleuth.agents.explain`).
- **judge_events**: one call per event (at most ``max_events``), checkpointed the same way.
- **judge_video**: one text-only call over the clip and event judgments.
- **explanation**: the typed result.

The graph state holds frame positions, times, scores and captions, never images (checkpoints
must serialise): frames are re-read from the source where images are needed.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Required, TypedDict

import numpy as np
from langgraph.graph import END, START, StateGraph
from sleuth import telemetry
from sleuth.agents.explain import Observation, judge_clip, judge_event, judge_video
from sleuth.config import Settings
from sleuth.errors import ConfigError, SleuthError
from sleuth.graphs.context import run_settings
from sleuth.graphs.detect.state import VideoEvent
from sleuth.graphs.explain.configuration import ExplainConfig
from sleuth.graphs.explain.state import Explanation, Judgment
from sleuth.graphs.reducers import add_counts
from sleuth.graphs.runtime import Runtime
from sleuth.tools.captioners.vlm_litellm import jpeg_bytes
from sleuth.tools.captioners.windows import caption_runs
from sleuth.tools.frames import Frame, FrameReader, frames_at
from sleuth.tools.sampler import AnomalyFocusedSampler
from sleuth.tools.toolset import ToolSet, open_tools

Progress = Callable[[str, int, int], None]



class ExplainInput(TypedDict, total=False):
    """What the graph is given: a video and its scene; optionally detect's per-frame scores (else the
    scene's proposer scores the frames) and events (then they decide the verdicts), one event to
    explain alone, the rules the answers may cite ('kind: text'), and the frames to read."""

    video: Required[str]
    scene: Required[str]
    scores: list[float] | None
    events: list[dict[str, Any]] | None
    event_id: int | None
    rules: list[str] | None
    fps: float | None
    start: int
    stop: int | None
    indices: list[int] | None
    times: list[float] | None


class ExplainOutput(TypedDict):
    """What the graph returns: an :class:`~sleuth.records.Explanation` as JSON."""

    explanation: dict[str, Any]


class ExplainState(TypedDict, total=False):
    # input
    video: str
    scene: str
    fps: float | None
    start: int
    stop: int | None
    scores: list[float] | None
    events: list[dict[str, Any]] | None
    event_id: int | None
    # prepare
    detected: bool  # the events are a detector's (so a clip outside them is not anomalous)
    explained: list[int]  # positions in ``events`` of the events judged one by one
    rules: list[str] | None
    mode: str  # "vlm" | "captions"
    # sample
    indices: list[int]  # source frame index of each frame read (position -> index)
    times: list[float]
    frame_scores: list[float]  # in [0, 1], one per frame read
    positions: list[int]  # sampled positions for the whole video, sorted
    event_positions: list[list[int]]  # sampled positions inside each explained event (``explained``)
    # describe
    captions: dict[str, str]  # str(position) -> caption
    # judge
    clips: Annotated[list[dict[str, Any]], operator.add]
    event_judgments: Annotated[list[dict[str, Any]], operator.add]
    video_judgment: dict[str, Any] | None
    usage: Annotated[dict[str, int], add_counts]
    model: str | None
    # output
    explanation: dict[str, Any]


def clip_groups(positions: Sequence[int], clip_size: int) -> list[list[int]]:
    """Consecutive groups of ``clip_size`` sampled positions (the last may be shorter)."""
    return [list(positions[i:i + clip_size]) for i in range(0, len(positions), clip_size)]


def event_span(event: VideoEvent, indices: Sequence[int]) -> list[int]:
    """Positions whose source frame lies inside the event; the position nearest its peak when none does
    (an event found at another sampling rate)."""
    inside = [p for p, index in enumerate(indices) if event.start_frame <= index <= event.end_frame]
    if inside:
        return inside
    return [min(range(len(indices)), key=lambda p: abs(indices[p] - event.peak_frame))]


def _reader(state: ExplainState) -> FrameReader:
    return FrameReader(state["video"], fps=state.get("fps"), start=state.get("start", 0), stop=state.get("stop"))


def read_positions(video: str, indices: Sequence[int], wanted: set[int]) -> dict[int, Frame]:
    """The frames at ``wanted`` positions of the frames sampled (``indices``: the source frame
    number of each position), read around them only (:func:`~sleuth.tools.frames.frames_at`)."""
    if not wanted:
        return {}
    by_index = frames_at(video, {indices[p] for p in wanted if p < len(indices)})
    found = {p: by_index[indices[p]] for p in wanted if p < len(indices) and indices[p] in by_index}
    missing = wanted - found.keys()
    if missing:
        raise SleuthError(f"{video} has fewer frames than when it was sampled (position {min(missing)} is gone)",
                          hint="the file changed while it was being explained: run explain again")
    return found


def jpeg(image: np.ndarray, width: int) -> bytes:
    """A frame for the VLM: JPEG (quality 85), downscaled to ``width`` when wider."""
    return jpeg_bytes(image, quality=85, max_width=width)


def build_graph(runtime: Runtime, config: ExplainConfig | None = None, *, progress: Progress | None = None,
                checkpointer: Any = None) -> Any:
    """Compile the graph for ``runtime``; pass a checkpointer to make runs resumable. ``config`` is
    the default settings; a run's context (an :class:`ExplainConfig` or a dict of its fields)
    replaces them for that run."""
    default = config or ExplainConfig()

    def settings() -> ExplainConfig:
        return run_settings(ExplainConfig, default)

    images: dict[int, bytes] = {}  # position -> JPEG, refilled from the source after a resume

    def tools() -> ToolSet:
        if runtime.tools is None:
            runtime.tools = open_tools(runtime.settings, embedder=runtime.embedder)
        return runtime.tools

    def usage_since(start: int) -> dict[str, Any]:
        records = runtime.gateway.usage.records[start:]
        update: dict[str, Any] = {"usage": {"llm_calls": len(records),
                                            "prompt_tokens": sum(r.prompt_tokens for r in records),
                                            "completion_tokens": sum(r.completion_tokens for r in records)}}
        if records:
            update["model"] = records[-1].model
        return update

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    def observations(state: ExplainState, positions: Sequence[int]) -> list[Observation]:
        captions = state.get("captions") or {}
        return [Observation(index=state["indices"][p], time_s=state["times"][p], score=state["frame_scores"][p],
                            caption=captions.get(str(p))) for p in positions]

    def images_at(state: ExplainState, positions: Sequence[int]) -> list[bytes]:
        if state["mode"] != "vlm":
            return []
        if any(p not in images for p in positions):
            wanted = set(state["positions"]).union(*map(set, state.get("event_positions") or [])) | set(positions)
            frames = read_positions(state["video"], state["indices"], wanted - images.keys())
            images.update({p: jpeg(frame.image, settings().image_width) for p, frame in frames.items()})
        return [images[p] for p in positions]

    def detected(state: ExplainState) -> list[VideoEvent] | None:
        if not state.get("detected"):
            return None
        return [VideoEvent.model_validate(raw) for raw in state.get("events") or []]

    def role(state: ExplainState) -> str:
        return "vlm" if state["mode"] == "vlm" else "llm"

    @telemetry.traced_agent("prepare")
    def prepare(state: ExplainState) -> dict[str, Any]:
        config = settings()
        _reader(state)  # a missing file or a bad fps fails here
        chosen = [VideoEvent.model_validate(raw) for raw in state.get("events") or []]
        explained = events_to_explain(chosen, state.get("event_id"), config.max_events)
        return {"mode": explain_mode(config, runtime.settings), "events": [e.model_dump() for e in chosen],
                "detected": state.get("events") is not None, "explained": explained}

    @telemetry.traced_agent("sample")
    def sample(state: ExplainState) -> dict[str, Any]:
        video, scores = state["video"], state.get("scores")
        if scores is None:
            try:
                proposer = tools().proposer(state["scene"])
            except SleuthError as exc:
                raise SleuthError(f"no anomaly scores for {video} and no proposer for scene '{state['scene']}' "
                                  f"({exc.message})",
                                  hint=f"run `sleuth calibrate proposer --scene {state['scene']} --video <normal "
                                  "footage>`, or pass scores (sleuth explain --from result.json)") from None
            frames = _reader(state).read()
            if not frames:
                raise SleuthError(f"no frames in {video}", hint="check the video and --fps")
            result = proposer.score(frames)
            unit = result.unit_scores().tolist()
            indices, times = [f.index for f in frames], [f.time_s for f in frames]
        elif state.get("indices") and state.get("times") and len(state["indices"]) == len(scores):
            indices, times = list(state["indices"]), list(state["times"])  # the scorer's frames: no new read
            unit = [float(s) for s in scores]
        else:
            read = [(f.index, f.time_s) for f in _reader(state)]
            if not read:
                raise SleuthError(f"no frames in {video}", hint="check the video and --fps")
            if len(scores) != len(read):
                raise SleuthError(f"{video}: {len(scores)} anomaly scores for {len(read)} frames read",
                                  hint="pass one score per frame, read at the same --fps as the scores were made")
            indices, times = [i for i, _ in read], [t for _, t in read]
            unit = [float(s) for s in scores]
        config = settings()
        positions = AnomalyFocusedSampler(config.frames, config.tau).sample(unit)
        per_event = AnomalyFocusedSampler(config.event_frames, config.tau)
        event_positions = []
        for number in state.get("explained") or []:
            span = event_span(VideoEvent.model_validate(state["events"][number]), indices)
            event_positions.append([span[k] for k in per_event.sample([unit[p] for p in span])])
        return {"indices": indices, "times": times, "frame_scores": unit, "positions": positions,
                "event_positions": event_positions}

    @telemetry.traced_agent("describe")
    def describe(state: ExplainState) -> dict[str, Any]:
        if state["mode"] == "vlm":
            return {"captions": {}}  # the judges send the images themselves
        wanted = sorted(set(state["positions"]).union(*map(set, state["event_positions"])))
        captioner = tools().captioner
        # a captioner that sees frames one at a time (a VLM) needs no neighbours
        context = 0 if getattr(captioner, "independent_frames", False) else settings().caption_context
        runs = caption_runs(wanted, len(state["indices"]), context)
        frames = read_positions(state["video"], state["indices"],
                                {p for first, last in runs for p in range(first, last + 1)})
        captions: dict[str, str] = {}
        for done, (first, last) in enumerate(runs):
            report("describe", done, len(runs))
            with telemetry.tool_span("captioner"):
                written = captioner.caption([frames[p] for p in range(first, last + 1)])
            captions.update({str(p): written[p - first] for p in wanted if first <= p <= last})
        report("describe", len(runs), len(runs))
        return {"captions": captions}

    def next_step(state: ExplainState) -> str:
        if len(state.get("clips") or []) < len(clip_groups(state["positions"], settings().clip_size)):
            return "judge_clips"
        if len(state.get("event_judgments") or []) < len(state["event_positions"]):
            return "judge_events"
        return "judge_video"

    @telemetry.traced_agent("judge_clips")
    def judge_clips(state: ExplainState) -> dict[str, Any]:
        config = settings()
        groups = clip_groups(state["positions"], config.clip_size)
        done = len(state.get("clips") or [])
        report("clips", done, len(groups))  # before the work: a failing callback loses no finished clip
        group = groups[done]
        start = len(runtime.gateway.usage.records)
        judgment = judge_clip(observations(state, group), scene=state["scene"], rules=state.get("rules"),
                              gateway=runtime.gateway, threshold=config.threshold, events=detected(state),
                              role=role(state),
                              images=images_at(state, group), max_tokens=config.max_tokens)
        return {"clips": [judgment.model_dump()], **usage_since(start)}

    @telemetry.traced_agent("judge_events")
    def judge_events(state: ExplainState) -> dict[str, Any]:
        config = settings()
        groups = clip_groups(state["positions"], config.clip_size)
        report("clips", len(groups), len(groups))
        done = len(state.get("event_judgments") or [])
        report("events", done, len(state["event_positions"]))
        positions = state["event_positions"][done]
        event = VideoEvent.model_validate(state["events"][state["explained"][done]])
        start = len(runtime.gateway.usage.records)
        judgment = judge_event(event, observations(state, positions), scene=state["scene"], rules=state.get("rules"),
                               gateway=runtime.gateway, role=role(state),
                               images=images_at(state, positions), max_tokens=config.max_tokens)
        return {"event_judgments": [judgment.model_dump()], **usage_since(start)}

    @telemetry.traced_agent("judge_video")
    def judge_whole(state: ExplainState) -> dict[str, Any]:
        config = settings()
        groups = clip_groups(state["positions"], config.clip_size)
        report("clips", len(groups), len(groups))
        if state["event_positions"]:
            report("events", len(state["event_positions"]), len(state["event_positions"]))
        report("video", 0, 1)
        positions = state["positions"]
        scores = state["frame_scores"]
        peak = int(np.argmax(scores))
        start = len(runtime.gateway.usage.records)
        judgment = judge_video([Judgment.model_validate(j) for j in state.get("clips") or []],
                               [Judgment.model_validate(j) for j in state.get("event_judgments") or []],
                               scene=state["scene"], start_s=state["times"][0], end_s=state["times"][-1],
                               observations=observations(state, positions), peak_score=float(scores[peak]),
                               peak_s=state["times"][peak], threshold=config.threshold, detected=detected(state),
                               rules=state.get("rules"), gateway=runtime.gateway, role=role(state),
                               max_tokens=config.max_tokens)
        report("video", 1, 1)
        return {"video_judgment": judgment.model_dump(), **usage_since(start)}

    @telemetry.traced_agent("explanation")
    def explanation(state: ExplainState) -> dict[str, Any]:
        usage = state.get("usage") or {}
        return {"explanation": Explanation(
            video=state["video"], scene=state["scene"],
            sampled_frames=[state["indices"][p] for p in state["positions"]],
            source="vlm" if state["mode"] == "vlm" else "captions",
            captions={str(state["indices"][int(p)]): text
                      for p, text in (state.get("captions") or {}).items()},
            clips=[Judgment.model_validate(j) for j in state.get("clips") or []],
            events=[Judgment.model_validate(j) for j in state.get("event_judgments") or []],
            video_judgment=Judgment.model_validate(state["video_judgment"]), llm_calls=int(usage.get("llm_calls", 0)),
            model=state.get("model") or judge_model(state["mode"], runtime.settings)).model_dump(mode="json")}

    steps = ["judge_clips", "judge_events", "judge_video"]
    graph = StateGraph(ExplainState, context_schema=ExplainConfig, input_schema=ExplainInput,
                       output_schema=ExplainOutput)
    graph.add_node("prepare", prepare)
    graph.add_node("sample", sample)
    graph.add_node("describe", describe)
    graph.add_node("judge_clips", judge_clips)
    graph.add_node("judge_events", judge_events)
    graph.add_node("judge_video", judge_whole)
    graph.add_node("explanation", explanation)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "sample")
    graph.add_edge("sample", "describe")
    graph.add_conditional_edges("describe", next_step, steps)
    graph.add_conditional_edges("judge_clips", next_step, steps)
    graph.add_conditional_edges("judge_events", next_step, steps)
    graph.add_edge("judge_video", "explanation")
    graph.add_edge("explanation", END)
    return graph.compile(checkpointer=checkpointer)


def explain_mode(config: ExplainConfig, settings: Settings) -> str:
    """'vlm' when the frames' images go to a vision model, 'captions' when the LLM reads captions."""
    if config.use_vlm == "never":
        return "captions"
    if settings.vlm.model:
        return "vlm"
    if config.use_vlm == "always":
        raise ConfigError("explain was asked to use a VLM but none is configured",
                          hint="set vlm.model (SLEUTH_VLM__MODEL) to a vision-capable LiteLLM model, "
                          "or use use_vlm='auto'")
    return "captions"


def judge_model(mode: str, settings: Settings) -> str | None:
    """The model that writes the judgments: the VLM in 'vlm' mode, else the LLM."""
    return settings.vlm.model if mode == "vlm" else settings.llm.model


def events_to_explain(events: Sequence[VideoEvent], event_id: int | None, max_events: int) -> list[int]:
    """Positions in ``events`` judged one by one: the event ``event_id`` alone, else the first ``max_events``."""
    if event_id is None:
        return list(range(min(len(events), max_events)))
    explained = [k for k, event in enumerate(events) if event.id == event_id]
    if not explained:
        raise SleuthError(f"no event {event_id} among the events given",
                          hint=f"events: {', '.join(str(e.id) for e in events) or 'none'}")
    return explained


GRAPH_VERSION = 2  # part of the default thread id: checkpoints of an older state layout are not reused


def default_thread_id(video: str, scene: str, *, scores: Sequence[float] | None, events: Sequence[VideoEvent] | None,
                      rules: Sequence[str] | None, fps: Any, config: ExplainConfig, mode: str,
                      model: str | None, explained: Sequence[int] = ()) -> str:
    """A thread per distinct input: the same video file (size and time stamp), scores, events, rules,
    configuration and model resume or reuse one run; anything different starts a new one."""
    digest = hashlib.sha1()
    path = Path(video)
    stamp = f"{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else ""
    score_bytes = np.asarray(scores, dtype=np.float64).tobytes() if scores is not None else b"proposer"
    parts = (str(GRAPH_VERSION), video, stamp, scene, repr(fps), config.model_dump_json(), mode, model or "",
             json.dumps(None if events is None else [event.model_dump() for event in events]),
             json.dumps(list(rules or [])), json.dumps(list(explained)))
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(score_bytes)
    return f"explain:{scene}:{video}:{digest.hexdigest()[:12]}"


def explain_video(source: str | Path, *, scene: str, scores: Sequence[float] | None = None,
                  events: Sequence[VideoEvent | dict[str, Any]] | None = None, event_id: int | None = None,
                  rules: Sequence[str] | None = None,
                  fps: float | None = None, start: int = 0, stop: int | None = None,
                  indices: Sequence[int] | None = None, times: Sequence[float] | None = None,
                  config: ExplainConfig | None = None, runtime: Runtime | None = None,
                  progress: Progress | None = None, thread_id: str | None = None) -> Explanation:
    """Explain one video at clip, event and video level (Holmes-VAU).

    ``scores``: one anomaly score in [0, 1] per frame read at ``fps`` (e.g. detect's frame
    scores); None scores the frames with the scene's proposer. ``events``: a detector's events
    to explain (the first ``config.max_events``); given (even empty), they decide the verdicts
    with the scores: a clip outside every event is not anomalous. None: no detector ran, and a
    frame at or above ``config.threshold`` makes its clip anomalous. ``event_id``: judge only that
    event of ``events`` on its own (the others still decide the clips' verdicts). ``rules``: 'kind:
    text' strings the answers may cite. ``indices`` and ``times``: the source frame number and time
    of each score (detect's), so the video is not read again to find them. ``progress(stage, done,
    total)`` reports progress. Runs are checkpointed under
    ``thread_id`` (by default derived from the inputs), so an interrupted run resumes after its
    last finished judgment and a finished one returns its stored result.
    """
    config = config or ExplainConfig()
    runtime = runtime or Runtime.from_settings()
    video = str(source)
    FrameReader(video, fps=fps, start=start, stop=stop)  # a missing file or a bad fps fails here
    mode = explain_mode(config, runtime.settings)
    role_model = judge_model(mode, runtime.settings)
    chosen = [e if isinstance(e, VideoEvent) else VideoEvent.model_validate(e) for e in events or []]
    explained = events_to_explain(chosen, event_id, config.max_events)
    score_list = [float(s) for s in scores] if scores is not None else None
    thread_id = thread_id or default_thread_id(video, scene, scores=score_list,
                                               events=chosen if events is not None else None, rules=rules,
                                               explained=explained,
                                               fps=(fps, start, stop), config=config, mode=mode, model=role_model)
    graph = build_graph(runtime, config, progress=progress, checkpointer=runtime.checkpointer)
    run_config = {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}
    with telemetry.agent_span("explain") as span:
        span.set_attribute("sleuth.video", video)
        span.set_attribute("sleuth.explain.mode", mode)
        snapshot = graph.get_state(run_config) if runtime.checkpointer is not None else None
        if snapshot is not None and snapshot.next:
            output = graph.invoke(None, run_config, context=config)  # resume an interrupted run
        elif snapshot is not None and snapshot.values.get("explanation") is not None:
            output = snapshot.values  # finished before: same inputs, same result
        else:
            output = graph.invoke({"video": video, "scene": scene, "fps": fps, "start": start, "stop": stop,
                                   "scores": score_list,
                                   "indices": list(indices) if indices is not None else None,
                                   "times": list(times) if times is not None else None,
                                   "events": None if events is None else [event.model_dump() for event in chosen],
                                   "event_id": event_id, "rules": list(rules) if rules else None},
                                  run_config, context=config)
    return Explanation.model_validate(output["explanation"])
