"""The investigate agent's tools: each a pydantic argument model, a JSON schema for the LLM and a function.

A tool returns a :class:`ToolOutput`: a short text for the model (frames, times, rules, so the
answer can cite them) and the files it wrote (frames, contact sheets, plots, reports) for the
person. Tools that change state or start a long job (``confirm=True``) run only after the person
approves (the graph pauses with ``interrupt()`` first). Every path a tool gets, from a person or a
model, goes through :func:`sleuth.datapaths.resolve_data_path`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, model_validator
from sleuth.datapaths import allowed_roots, resolve_data_path
from sleuth.errors import SleuthError
from sleuth.graphs.runtime import Runtime
from sleuth.tools.frames import frame_range, video_fps

FRAME_CONTEXT = 4  # frames read either side of a shown frame, for the captioner's speeds
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")  # listed, and accepted as uploads


@dataclass
class ToolOutput:
    """What a tool returns: ``text`` for the model, ``files`` it wrote, and a ``lead``: the result's
    headline in one sentence (scores, events), which the answer starts with as it is, so the numbers
    a person reads first are the tool's, not a model's retelling."""

    text: str
    files: list[str] = field(default_factory=list)
    lead: str = ""


def result_text(message: dict[str, Any]) -> str:
    """A tool message as a person reads it: its lead (if any), then its text."""
    return f"{message['lead']}\n{message['content']}" if message.get("lead") else message["content"]


def answer_lead(turn: list[dict[str, Any]]) -> str:
    """The ``lead`` of each of this turn's tool results that has one (tool messages carry it), in
    order: detect's events, then explain's verdict."""
    return "\n".join(message["lead"] for message in turn if message["role"] == "tool" and message.get("lead"))


@dataclass
class ToolContext:
    runtime: Runtime
    files_dir: Path  # where this thread's images and reports go
    progress: Callable[[str, int, int], None] | None = None

    def path(self, stem: str, suffix: str) -> Path:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        return self.files_dir / f"{stem}-{uuid.uuid4().hex[:6]}{suffix}"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    run: Callable[[ToolContext, Any], ToolOutput]
    confirm: bool = False
    verbatim: bool = False  # its result answers as it is (what exists or was stored): no model retells it
    once: bool = False  # minutes of work: runs at most once a turn on a video, whatever its other arguments

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool definition the LLM sees."""
        parameters = self.args.model_json_schema()
        parameters.pop("title", None)
        for prop in parameters.get("properties", {}).values():
            prop.pop("title", None)
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": parameters}}

    def question(self, args: BaseModel) -> str:
        """What the person is asked before a confirm tool runs."""
        shown = ", ".join(f"{key}={value!r}" for key, value in args.model_dump(exclude_none=True).items())
        effect = "changes stored state" if self.name in STATEFUL else "may take minutes"
        return f"Run {self.name}({shown})? It {effect}."


STATEFUL = {"calibrate", "propose_rule_edit"}


# -- arguments ----------------------------------------------------------------------------------

class NoArgs(BaseModel):
    pass


class VideoFolder(BaseModel):
    folder: str | None = Field(default=None, description="A folder inside the data folders (default: all of them).")


class _TimeRange(BaseModel):
    """A range whose end, when given, comes after its start."""

    @model_validator(mode="after")
    def _end_after_start(self) -> _TimeRange:
        start, end = getattr(self, "start_s", None), getattr(self, "end_s", None)
        if start is not None and end is not None and end <= start:
            raise ValueError(f"end_s ({end:g}) must be after start_s ({start:g}); leave end_s out to go on to the end"
                             if "end_s" not in type(self).model_json_schema().get("required", [])
                             else f"end_s ({end:g}) must be after start_s ({start:g})")
        return self


class DetectArgs(_TimeRange):
    video: str = Field(description="Path of the video file.")
    scene: str = Field(description="The calibrated scene (camera) the video belongs to.")
    start_s: float | None = Field(default=None, ge=0, description="Start time in seconds.")
    end_s: float | None = Field(default=None, gt=0, description="End time in seconds (default: the end).")


class ExplainArgs(BaseModel):
    video: str = Field(description="Path of the video file.")
    scene: str = Field(description="The calibrated scene (camera).")
    event: int | None = Field(default=None, description="Explain only this event of the latest detect run.")


class SearchArgs(BaseModel):
    query: str = Field(description="Who or what to find, e.g. 'a man in a red jacket running'.")
    gallery: str = Field(description="The indexed gallery to search.")
    top_k: int = Field(default=5, ge=1, le=50, description="How many results.")


class CalibrateArgs(BaseModel):
    video: str = Field(description="Path of normal footage of the scene.")
    scene: str = Field(description="Name of the scene (camera) to calibrate.")
    end_s: float | None = Field(default=None, gt=0, description="Use the footage up to this time (seconds).")


class SceneArgs(BaseModel):
    scene: str = Field(description="The scene (camera).")


class ShowRulesArgs(BaseModel):
    scene: str = Field(description="The scene (camera).")
    version: int | None = Field(default=None, ge=1, description="Rule version (default: the latest).")


class RuleEditArgs(BaseModel):
    scene: str = Field(description="The scene (camera) whose rules change.")
    add_anomaly: list[str] = Field(default_factory=list, description="Anomaly rules to add.")
    add_normal: list[str] = Field(default_factory=list, description="Normal rules to add.")
    remove: list[str] = Field(default_factory=list, description="Texts of rules to remove.")


class FrameArgs(BaseModel):
    video: str = Field(description="Path of the video file.")
    time_s: float = Field(ge=0, description="Time in seconds.")


class RangeArgs(_TimeRange):
    video: str = Field(description="Path of the video file.")
    start_s: float = Field(ge=0, description="Start time in seconds.")
    end_s: float = Field(gt=0, description="End time in seconds.")


class SummaryArgs(RangeArgs):
    scene: str = Field(description="The calibrated scene (camera) of the video.")


# -- helpers ------------------------------------------------------------------------------------

def _video(ctx: ToolContext, path: str) -> Path:
    resolved = resolve_data_path(ctx.runtime.settings, path)
    if not resolved.exists():
        raise SleuthError(f"no video at {path}", hint="list_videos shows the videos in the data folders")
    return resolved


def _frames(video: Path, start_s: float | None, end_s: float | None) -> tuple[int, int | None]:
    """Frame indices of a time range, refused in seconds (what the model asked in) when it starts
    past the video's end."""
    from sleuth.tools.frames import FrameReader

    if start_s is not None:
        duration = FrameReader(video).info.duration_s
        if duration is not None and start_s >= duration:
            raise SleuthError(f"{video.name} is {duration:.1f} s long; start_s {start_s:g} is past its end",
                              hint=f"give a start_s below {duration:.1f}")
    return frame_range(video, start_s, end_s)


def _write_jpeg(ctx: ToolContext, image: np.ndarray, stem: str) -> str:
    from sleuth.tools.captioners.vlm_litellm import jpeg_bytes

    path = ctx.path(stem, ".jpg")
    path.write_bytes(jpeg_bytes(image, quality=88, max_width=960))
    return str(path)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"


def _listing(what: str, names: list[str]) -> str:
    """``Videos (3): a.mp4, b.avi, c.mp4.``: a list tool's lead names every item."""
    return f"{what} ({len(names)}): {', '.join(names)}." if names else ""


# -- tools --------------------------------------------------------------------------------------

def list_scenes(ctx: ToolContext, args: NoArgs) -> ToolOutput:
    from sleuth.memory.scenes import SceneStore

    store = SceneStore(ctx.runtime.settings)
    scenes = store.scenes()
    lines = []
    for scene in scenes:
        profile = store.load(scene)
        detail = "" if profile is None else \
            f" (rules v{profile.rules_version}, calibrated on {', '.join(Path(f).name for f in profile.footage)})"
        lines.append(f"- {scene}{detail}")
    return ToolOutput("\n".join(lines) or "No scene is calibrated yet (calibrate one on normal footage).",
                      lead=_listing("Scenes", scenes))


def find_videos(roots: list[Path], limit: int) -> list[str]:
    """Up to ``limit`` video files: roots that are files, then files under the folders (hidden ones skipped)."""
    found: list[str] = []
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in candidates:
            if len(found) >= limit:
                return found
            if path.suffix.lower() in VIDEO_SUFFIXES and not any(part.startswith(".") for part in path.parts):
                found.append(str(path))
    return found


def list_videos(ctx: ToolContext, args: VideoFolder) -> ToolOutput:
    roots = [resolve_data_path(ctx.runtime.settings, args.folder)] if args.folder else \
        allowed_roots(ctx.runtime.settings)
    found = find_videos(roots, 40)
    return ToolOutput("\n".join(f"- {path}" for path in found) or "No videos in the data folders.",
                      lead=_listing("Videos", [Path(path).name for path in found]))


def list_galleries(ctx: ToolContext, args: NoArgs) -> ToolOutput:
    from sleuth.memory.gallery import GalleryStore

    with GalleryStore(ctx.runtime.settings) as store:
        infos = store.galleries()
    return ToolOutput("\n".join(f"- {info.name}: {info.items} items from {', '.join(Path(v).name for v in info.videos)}"
                                for info in infos) or "No galleries (build one with `sleuth index`).",
                      lead=_listing("Galleries", [info.name for info in infos]))


def _run_detect(ctx: ToolContext, video: Path, scene: str, start: int, stop: int | None) -> tuple[Any, ToolOutput]:
    """Detect on a range of ``video``: its report (also written as JSON, HTML and a score plot) and the
    tool result that tells it."""
    from sleuth.graphs.detect import VideoDetectConfig, detect_video
    from sleuth.reports import score_plot_png, write_html, write_json

    report = detect_video(video, scene=scene, config=VideoDetectConfig(start=start, stop=stop),
                          runtime=ctx.runtime, progress=ctx.progress)
    html = ctx.path(f"detect-{video.stem}", ".html")
    write_html(report, html)
    write_json(report, html.with_suffix(".json"))
    plot = ctx.path(f"scores-{video.stem}", ".png")
    plot.write_bytes(score_plot_png(report))
    span = _span(report)
    lines = [f"detect on {video.name} {span}, scene {scene}, rules v{report.rules_version}: "
             f"{len(report.frames)} frames, {len(report.events)} event(s)."]
    for event in report.events:
        rules = "; ".join(event.broken_rules) or "no rule named"
        lines.append(f"- event {event.id}: {_clock(event.start_s)}-{_clock(event.end_s)} (frames {event.start_frame}-"
                     f"{event.end_frame}), peak {event.peak_score:.2f} at {_clock(event.peak_s)} (frame "
                     f"{event.peak_frame}); rules: {rules}; {event.reason or ''}")
    for event in report.dismissed:
        lines.append(f"- dismissed candidate {event.id}: {_clock(event.start_s)}-{_clock(event.end_s)}; "
                     f"{event.reason or 'judged normal by the LLM'}")
    events = "; ".join(f"event {event.id} {_clock(event.start_s)}-{_clock(event.end_s)} (peak {event.peak_score:.2f} "
                       f"at {_clock(event.peak_s)})" for event in report.events)
    lead = (f"Detect on {video.name} {span}, scene {scene}: " +
            (f"{len(report.events)} event(s): {events}." if report.events else "no event."))
    return report, ToolOutput("\n".join(lines), [str(plot), str(html)], lead=lead)


def _span(report: Any) -> str:
    return f"{_clock(report.frames[0].time_s)}-{_clock(report.frames[-1].time_s)}" if report.frames else "no frames"


def detect(ctx: ToolContext, args: DetectArgs) -> ToolOutput:
    video = _video(ctx, args.video)
    start, stop = _frames(video, args.start_s, args.end_s)
    return _run_detect(ctx, video, args.scene, start, stop)[1]


def _latest_detect(ctx: ToolContext, video: Path, scene: str) -> Any:
    """This conversation's latest detect report of ``video`` on ``scene``, or None."""
    from sleuth.reports import load_report

    for path in sorted(ctx.files_dir.glob(f"detect-{video.stem}-*.json"), key=lambda p: p.stat().st_mtime,
                       reverse=True):
        report = load_report(path)
        if Path(report.video).name == video.name and report.scene == scene:
            return report
    return None


def explain(ctx: ToolContext, args: ExplainArgs) -> ToolOutput:
    """Explains detect's scores and events, so the verdicts agree with the plot and the events a
    person has seen: the conversation's latest detect of the video, or a detect run now."""
    from sleuth.graphs.explain import ExplainConfig, explain_video

    video = _video(ctx, args.video)
    report, files = _latest_detect(ctx, video, args.scene), []
    if report is None and args.event is not None:
        raise SleuthError(f"no detect result for {video.name} on scene {args.scene} in this conversation",
                          hint="run detect on the video first")
    if report is None:
        report, detected = _run_detect(ctx, video, args.scene, 0, None)
        files = detected.files
    if not report.frames:
        raise SleuthError(f"detect read no frames of {video.name}", hint="check the video")
    if args.event is not None and not any(event.id == args.event for event in report.events):
        raise SleuthError(f"the latest detect of {video.name} has no event {args.event}",
                          hint=f"events: {', '.join(str(e.id) for e in report.events) or 'none'}")
    result = explain_video(video, scene=args.scene, scores=[frame.score for frame in report.frames],
                           events=report.events, event_id=args.event, rules=report.rules,
                           start=report.frames[0].index, stop=report.frames[-1].index + 1,
                           indices=[frame.index for frame in report.frames],
                           times=[frame.time_s for frame in report.frames],
                           config=ExplainConfig(threshold=report.threshold), runtime=ctx.runtime,
                           progress=ctx.progress)
    judgments = [*result.events, *([result.video_judgment] if result.video_judgment else [])]
    lines = []
    for judgment in judgments:
        frames = ", ".join(str(frame) for frame in judgment.frames[:8])
        lines.append(f"- {judgment.level} {_clock(judgment.start_s)}-{_clock(judgment.end_s)} (frames {frames}): "
                     f"{judgment.judgment} {judgment.description} {judgment.analysis}".rstrip())
    headline = result.events[0] if args.event is not None and result.events else result.video_judgment
    what = f"event {args.event}" if args.event is not None else f"{video.name} {_span(report)}"
    lead = "" if headline is None else (
        f"Explain {what}, scene {args.scene}: {'anomalous' if headline.anomalous else 'normal'}. {headline.judgment}")
    return ToolOutput("\n".join(lines) or "No judgment was made.", files, lead=lead)


def search(ctx: ToolContext, args: SearchArgs) -> ToolOutput:
    from sleuth.graphs.search import SearchConfig
    from sleuth.graphs.search import search as run_search
    from sleuth.reports.search import write_search_html

    result = run_search(args.query, args.gallery, runtime=ctx.runtime, config=SearchConfig(top_k=args.top_k))
    page = write_search_html(result, ctx.path("search", ".html"))
    lines = [f"search '{result.query}' in {args.gallery}: {len(result.results)} results"]
    for number, entry in enumerate(result.results, 1):
        item = entry.item
        lines.append(f"{number}. {Path(item.video).name} frame {item.frame} at {_clock(item.time_s)} ({item.kind}), "
                     f"score {entry.score:.3f}: {item.caption}")
    best = result.results[0] if result.results else None
    lead = (f"Search '{result.query}' in {args.gallery}: {len(result.results)} results ranked by likeness; the best is "
            f"{Path(best.item.video).name} frame {best.item.frame} at {_clock(best.item.time_s)} ({best.item.kind}, "
            f"score {best.score:.3f}): {best.item.caption.split('. ')[0].rstrip('.')}." if best else
            f"Search '{result.query}' in {args.gallery}: no results.")
    files = [str(page)]
    if result.results:
        from sleuth.memory.gallery import item_image

        try:
            files.insert(0, _write_jpeg(ctx, item_image(result.results[0].item), "search-top"))
        except SleuthError:
            pass
    return ToolOutput("\n".join(lines), files, lead=lead)


def calibrate(ctx: ToolContext, args: CalibrateArgs) -> ToolOutput:
    from sleuth.graphs.calibrate import CalibrateConfig
    from sleuth.graphs.calibrate import calibrate as run_calibrate

    video = _video(ctx, args.video)
    _, stop = frame_range(video, None, args.end_s)
    result = run_calibrate([video], scene=args.scene, config=CalibrateConfig(stop=stop), runtime=ctx.runtime,
                           progress=ctx.progress)
    span = f"0:00.0-{_clock(args.end_s)}" if args.end_s is not None else "the whole video"
    rules = [f"- anomaly: {text}" for text in result.anomaly_rules] + [f"- normal: {text}" for text in
                                                                      result.normal_rules]
    return ToolOutput("\n".join([f"Scene {args.scene} calibrated on {result.frames} frames of {video.name} ({span}); "
                                 f"rules v{result.rules_version}, {len(result.anomaly_rules)} anomaly and "
                                 f"{len(result.normal_rules)} normal:", *rules]))


def list_rules(ctx: ToolContext, args: SceneArgs) -> ToolOutput:
    versions = ctx.runtime.memory.versions(args.scene)
    if not versions:
        raise SleuthError(f"scene '{args.scene}' has no rules yet", hint="calibrate the scene first")
    return ToolOutput("\n".join(f"- v{v.version} ({v.source}, {v.created}): {v.n_anomaly} anomaly and {v.n_normal} "
                                f"normal rules {v.note}".rstrip() for v in versions),
                      lead=_listing(f"Rule versions of {args.scene}", [f"v{v.version}" for v in versions]))


def show_rules(ctx: ToolContext, args: ShowRulesArgs) -> ToolOutput:
    memory = ctx.runtime.memory
    version = args.version or memory.latest_version(args.scene)
    ruleset = memory.get(args.scene, version)
    anomaly = [rule.text for rule in ruleset.rules if rule.kind == "anomaly"]
    normal = [rule.text for rule in ruleset.rules if rule.kind != "anomaly"]
    lines = [f"Rules of {args.scene}, v{version}: {len(anomaly)} anomaly and {len(normal)} normal."]
    lines += [f"- anomaly: {text}" for text in anomaly] + [f"- normal: {text}" for text in normal]
    return ToolOutput("\n".join(lines))  # no lead: the model needs the scene and version as much as a person


def propose_rule_edit(ctx: ToolContext, args: RuleEditArgs) -> ToolOutput:
    from sleuth.agents.schemas import Rule

    memory = ctx.runtime.memory
    current = memory.latest(args.scene)
    if current is None:
        raise SleuthError(f"scene '{args.scene}' has no rules yet", hint="calibrate the scene first")
    removed = {text.strip().lower().rstrip(".") for text in args.remove}
    rules = [rule for rule in current.rules if rule.text.lower() not in removed]
    rules += [Rule(text=text, kind="anomaly") for text in args.add_anomaly]
    rules += [Rule(text=text, kind="normal") for text in args.add_normal]
    version = memory.save(current.model_copy(update={"rules": rules, "version": 0}), source="user",
                          note="edited in chat")
    diff = memory.diff(args.scene, current.version, version)
    return ToolOutput(f"saved rules v{version} of {args.scene} (was v{current.version}):\n" +
                      ("\n".join(diff.lines()) or "no change"))


def show_frame(ctx: ToolContext, args: FrameArgs) -> ToolOutput:
    from sleuth.tools.captioners.windows import caption_positions
    from sleuth.tools.frames import FrameReader

    video = _video(ctx, args.video)
    index = int(round(args.time_s * video_fps(video)))
    # a structured captioner reads speeds from neighbouring frames: read a few either side
    frames = FrameReader(video, start=max(0, index - FRAME_CONTEXT), stop=index + FRAME_CONTEXT + 1).read()
    position = next((k for k, frame in enumerate(frames) if frame.index == index), None)
    if position is None:
        raise SleuthError(f"{video.name} has no frame at {args.time_s:g} s", hint="pick a time inside the video")
    frame = frames[position]
    path = _write_jpeg(ctx, frame.image, f"frame-{video.stem}-{index}")
    try:
        seen = caption_positions(ctx.runtime.toolset().captioner, frames, [position], context=FRAME_CONTEXT)[position]
    except SleuthError as exc:  # the image is still worth showing
        seen = f"(no description: {exc.one_line()})"
    # no lead: what the captioner sees is for the model too (a later step or turn asks about it)
    return ToolOutput(f"Frame {index} of {video.name} at {_clock(frame.time_s)}; the captioner sees: "
                      f"{seen.strip() or 'no moving people or objects'}\nWritten to {path}.", [path])


def show_clip(ctx: ToolContext, args: RangeArgs) -> ToolOutput:
    from sleuth.tools.frames import FrameReader

    video = _video(ctx, args.video)
    start, stop = _frames(video, args.start_s, args.end_s)
    frames = FrameReader(video, start=start, stop=stop).read()
    if not frames:
        raise SleuthError(f"{video.name} has no frames between {args.start_s} and {args.end_s} s")
    picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(8, len(frames)))]
    sheet = contact_sheet([frame.image for frame in picks], [f"{_clock(f.time_s)} #{f.index}" for f in picks])
    path = _write_jpeg(ctx, sheet, f"clip-{video.stem}-{start}")
    listed = ", ".join(f"frame {f.index} ({_clock(f.time_s)})" for f in picks)
    return ToolOutput(f"contact sheet of {video.name} {_clock(args.start_s)}-{_clock(args.end_s)} written to "
                      f"{path}: {listed}", [path])


def summarise_range(ctx: ToolContext, args: SummaryArgs) -> ToolOutput:
    from sleuth.tools.frames import FrameReader

    video = _video(ctx, args.video)
    start, stop = _frames(video, args.start_s, args.end_s)
    frames = FrameReader(video, start=start, stop=stop).read()
    if not frames:
        raise SleuthError(f"{video.name} has no frames between {args.start_s} and {args.end_s} s")
    tools = ctx.runtime.toolset()
    scores = tools.proposer(args.scene).score(frames).unit_scores()
    peak = int(np.argmax(scores))
    picks = sorted({0, peak, len(frames) - 1})
    captions = tools.captioner.caption(frames)
    lines = [f"{video.name} {_clock(frames[0].time_s)}-{_clock(frames[-1].time_s)} ({len(frames)} frames), scene "
             f"{args.scene}: anomaly score mean {float(np.mean(scores)):.2f}, max {float(scores[peak]):.2f} at "
             f"{_clock(frames[peak].time_s)} (frame {frames[peak].index}); "
             f"{int(np.sum(scores >= 0.5))} frames above the alarm threshold 0.5."]
    lines += [f"- frame {frames[i].index} ({_clock(frames[i].time_s)}): {captions[i]}" for i in picks]
    plot = ctx.path(f"range-{video.stem}-{start}", ".png")
    plot.write_bytes(range_plot([f.time_s for f in frames], scores))
    return ToolOutput("\n".join(lines), [str(plot)], lead=lines[0])


def contact_sheet(images: list[np.ndarray], labels: list[str], width: int = 240) -> np.ndarray:
    """Images in a 4-wide grid, each scaled to ``width`` and labelled."""
    import cv2

    tiles = []
    for image, label in zip(images, labels, strict=True):
        height = max(1, int(image.shape[0] * width / image.shape[1]))
        tile = cv2.resize(image, (width, height))
        cv2.putText(tile, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    height = max(tile.shape[0] for tile in tiles)
    tiles = [np.pad(tile, ((0, height - tile.shape[0]), (0, 0), (0, 0))) for tile in tiles]
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + 4], axis=1) for i in range(0, len(tiles), 4)]
    return np.concatenate(rows, axis=0)


def range_plot(times: list[float], scores: np.ndarray) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 2.4), dpi=100)
    axis.plot(times, scores, color="#2563eb")
    axis.axhline(0.5, color="#c62828", linestyle="--", linewidth=1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("anomaly score")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


TOOLS: dict[str, Tool] = {tool.name: tool for tool in [
    Tool("detect", "Detect anomalies in a video, or a time range of it, with a calibrated scene's rules: events "
         "with times, frames, broken rules and reasons, a score plot and a report. For: is anything unusual, scan "
         "for anomalies, check a video.", DetectArgs, detect, confirm=True, once=True),
    Tool("explain", "Explain why a video, or one numbered event of its latest detect run, is or is not anomalous, "
         "at clip, event and video level. For: why was event N flagged, describe what happens and whether it is "
         "anomalous.", ExplainArgs, explain, confirm=True, once=True),
    Tool("search", "Find people, objects or actions by a text description in an indexed gallery. For: find, "
         "search for, is there someone who.", SearchArgs, search),
    Tool("summarise_range", "Summarise a time range of a video for a scene: anomaly scores (mean, peak and when) "
         "and what is seen. For: the scores or what happens between two times.", SummaryArgs, summarise_range),
    Tool("show_frame", "Show one frame (a still image) of a video at a time in seconds.", FrameArgs, show_frame,
         verbatim=True),
    Tool("show_clip", "Show a stretch of a video, from a start to an end time, as a contact sheet of frames.",
         RangeArgs, show_clip),
    Tool("calibrate", "Create a scene or calibrate it again from normal footage (trains the proposer, induces "
         "rules). For: calibrate, set up or create a scene, teach the normal activity of a camera.",
         CalibrateArgs, calibrate, confirm=True, verbatim=True, once=True),
    Tool("show_rules", "Show the rule texts of a scene, anomaly and normal (the latest version, or a given one). "
         "For: what rules, what counts as an anomaly or as normal.", ShowRulesArgs, show_rules, verbatim=True),
    Tool("propose_rule_edit", "Add or remove rules of a scene; saved as a new version after the person confirms. "
         "For: add, remove, delete or change a rule.", RuleEditArgs, propose_rule_edit, confirm=True),
    Tool("list_rules", "The change log of a scene's rules: each stored version with when, by whom and how many "
         "rules. Not the rule texts.", SceneArgs, list_rules, verbatim=True),
    Tool("list_scenes", "List the calibrated scenes (cameras) and their rule versions.", NoArgs, list_scenes,
         verbatim=True),
    Tool("list_videos", "List the video files in the data folders, or in one folder.", VideoFolder, list_videos,
         verbatim=True),
    Tool("list_galleries", "List the galleries that search can look in, with their sizes.", NoArgs,
         list_galleries, verbatim=True),
]}


def verbatim_answer(turn: list[dict[str, Any]]) -> str | None:
    """The answer to a turn whose tools only listed or showed what exists (scenes, videos, rules, a
    frame) or stored something (a calibration): their results as they are (a model retelling a list
    drops items, adds others and swaps a rule's kind), or None when another tool ran, one failed (the
    model words the error) or none did."""
    results = [message for message in turn if message["role"] == "tool"]
    if not results or any(message["content"].startswith("error:") for message in results) or \
            not all(message.get("name") in TOOLS and TOOLS[message["name"]].verbatim for message in results):
        return None
    return "\n\n".join(dict.fromkeys(result_text(message) for message in results))  # a result said once
