"""``sleuth calibrate`` (learn a scene) and ``sleuth detect`` (find and explain anomalies in a video)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from sleuth.cli.proposer import Fps, Start, Stop, progress_bar
from sleuth.cli.runner import RESUMES, Interrupted, err, fail, request
from sleuth.reports.summary import clock

if TYPE_CHECKING:
    from sleuth.graphs.detect import DetectReport

out = Console(highlight=False, soft_wrap=True)
M = TypeVar("M", bound=BaseModel)




def parse_overrides(items: list[str] | None, model: type[BaseModel]) -> dict[str, str]:
    """``--set NAME=VALUE`` pairs checked against the fields of ``model`` (values validated later)."""
    overrides = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or name not in model.model_fields:
            raise fail(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(model.model_fields)}")
        overrides[name] = value
    return overrides


def with_overrides(base: M, items: list[str] | None) -> M:
    """``base`` with the ``--set`` pairs applied and validated (a bad value is a one-line error)."""
    overrides = parse_overrides(items, type(base))
    try:
        return type(base).model_validate({**base.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        raise fail(f"--set {name}={overrides.get(name, '')!r}: {first['msg']}") from None


def calibrate_scene(
    ctx: typer.Context,
    scene: Annotated[str | None, typer.Option(help="Scene (camera) name.")] = None,
    video: Annotated[list[Path] | None, typer.Option(
        "--video", "-v", help="Normal footage: a video file, a folder of frames, or a folder of such clips "
        "(repeatable).")] = None,
    fps: Fps = None,
    start: Start = 0,
    stop: Stop = None,
    rules: Annotated[Path | None, typer.Option(
        help="Use these rules (rules.txt layout) instead of inducing them from the footage.")] = None,
    no_proposer: Annotated[bool, typer.Option("--no-proposer", help="Keep the scene's current proposer.")] = False,
    no_rules: Annotated[bool, typer.Option("--no-rules", help="Keep the scene's current rules.")] = False,
    caption_frames: Annotated[int | None, typer.Option(help="Normal frames captioned for rule induction.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Proposer training epochs.")] = None,
) -> None:
    """Learn what is normal for a scene: train its proposer, caption normal frames, induce and store rules.

    `sleuth calibrate --scene cam1 --video normal.mp4` runs the whole calibration; the subcommands
    run single parts (`sleuth calibrate proposer ...`).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not scene or not video:
        raise fail("calibrate needs --scene NAME and --video NORMAL_FOOTAGE "
                   "(e.g. sleuth calibrate --scene cam1 --video normal.mp4)")
    from sleuth.agents.schemas import RuleSet
    from sleuth.errors import SleuthError
    from sleuth.graphs.calibrate import CalibrateConfig, calibrate

    with request("calibrate") as settings:
        given = None
        if rules is not None:
            if not rules.is_file():
                raise SleuthError(f"rules file not found: {rules}", hint="pass a rules.txt file")
            given = RuleSet.parse(rules.read_text(), scene=scene, source="file")
        options = {"fps": fps, "start": start, "stop": stop, "train_proposer": not no_proposer,
                   "induce": not no_rules and given is None, "epochs": epochs, "caption_frames": caption_frames}
        config = CalibrateConfig(**{k: v for k, v in options.items() if v is not None})
        from sleuth.graphs.runtime import Runtime

        runtime = Runtime.from_settings(settings)
        try:
            with progress_bar() as update:
                result = calibrate(video, scene=scene, rules=given, config=config, runtime=runtime,
                                   progress=update)
        finally:
            runtime.close()
        if result.proposer_checkpoint:
            err.print(f"proposer: {result.frames} frames of {result.clips} clip(s), alarm threshold "
                      f"{result.proposer_threshold:.2f}" + (f", trained in {result.train_seconds:.0f} s"
                                                            if result.train_seconds else ""))
        if result.rules_version:
            state = "new version" if result.rules_changed else "unchanged"
            err.print(f"rules: v{result.rules_version} ({state}), {len(result.anomaly_rules)} anomaly and "
                      f"{len(result.normal_rules)} normal rules from {result.captions} captions, "
                      f"{result.llm_calls} LLM calls")
            for text in result.anomaly_rules:
                out.print(f"  anomaly: {text}")
        err.print(f"scene '{scene}' calibrated in {result.seconds:.0f} s (profile {result.profile})")


def summary_line(result: DetectReport, report: Path) -> str:
    """The last line of a detect run: where the report is and what it found (the report's own sentence)."""
    from sleuth.reports.summary import findings

    return f"Report: {report.resolve()}: {findings(result)}"


def detect(
    video: Annotated[Path, typer.Argument(help="Footage: a video file, a frame folder or a stream URL.")],
    scene: Annotated[str, typer.Option(help="The calibrated scene this camera belongs to.")],
    fps: Fps = None,
    start: Start = 0,
    stop: Stop = None,
    report: Annotated[Path | None, typer.Option(help="Write the report here (.html, or .json).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON here.")] = None,
    explain: Annotated[bool, typer.Option(help="Also explain the video and its events (Holmes-VAU).")] = False,
    gate: Annotated[float | None, typer.Option(
        help="Gate percentile of the scene's normal proposer scores (default 95; 0 captions every frame).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a reasoning setting, e.g. --set threshold=0.6 (see DetectConfig).")] = None,
    allow_partial: Annotated[bool, typer.Option(
        "--allow-partial", help="Analyse what can be read of a truncated or corrupt video (fewer frames than its "
        "header declares) and warn, instead of failing.")] = False,
) -> None:
    """Find anomalous events in a video of a calibrated scene, with the rules they break and why.

    Runs are checkpointed: after Ctrl-C, the same command resumes where the run stopped.
    """
    from sleuth.graphs.detect import VideoDetectConfig, detect_video
    from sleuth.graphs.runtime import Runtime
    from sleuth.reports import write_json, write_report

    with request("detect") as settings:
        reasoning = with_overrides(VideoDetectConfig().reasoning, set_) if set_ else None
        options = {"fps": fps, "start": start, "stop": stop, "explain": explain, "gate_percentile": gate,
                   "reasoning": reasoning, "allow_partial": allow_partial}
        config = VideoDetectConfig(**{k: v for k, v in options.items() if v is not None})
        runtime = Runtime.from_settings(settings)
        try:
            with progress_bar() as update:
                result = detect_video(str(video), scene=scene, config=config, runtime=runtime, progress=update)
        except KeyboardInterrupt:
            if runtime.checkpoint_path is None:  # no checkpointer: a rerun starts over
                raise
            raise Interrupted(RESUMES) from None  # the graph checkpoints after every stage (and reasoning batch)
        finally:
            runtime.close()
        for warning in result.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}")
        cost = result.cost
        out.print(f"{len(result.events)} event(s) in {cost.frames} frames of {video} "
                  f"(scene {scene}, rules v{result.rules_version})")
        for event in result.events:
            rules = "; ".join(event.broken_rules) or "no rule named"
            out.print(f"  #{event.id} {clock(event.start_s)}-{clock(event.end_s)} (frames {event.start_frame}-"
                      f"{event.end_frame}) peak {event.peak_score:.2f} at {clock(event.peak_s)}: {rules}")
            if event.reason:
                out.print(f"      {event.reason}")
            if event.proposer_reason:
                out.print(f"      proposer, frame {event.proposer_frame}: {event.proposer_reason}")
        for event in result.dismissed:
            out.print(f"  dismissed #{event.id} {clock(event.start_s)}-{clock(event.end_s)} (frames "
                      f"{event.start_frame}-{event.end_frame}): {event.reason or 'judged normal by the LLM'}")
        if result.explanation and result.explanation.video_judgment:
            out.print(f"explanation: {result.explanation.video_judgment.judgment}")
        err.print(f"{cost.gated_frames}/{cost.frames} frames passed the gate; {cost.llm_calls} LLM calls "
                  f"({cost.llm_calls_per_frame:.3f} per frame); {cost.seconds:.1f} s")
        written = []
        if report is not None:
            written.append(write_report(result, report))
            err.print(f"wrote {written[-1]}")
        if json_out is not None:
            written.append(write_json(result, json_out))
            err.print(f"wrote {written[-1]}")
        if written:
            out.print(summary_line(result, Path(written[0])))
