"""``sleuth explain``: Holmes-VAU judgments of a video at clip, event and video level."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sleuth.cli.pipeline import clock
from sleuth.cli.proposer import Fps, progress_bar
from sleuth.cli.runner import err, request

if TYPE_CHECKING:
    from sleuth.graphs.explain.state import Judgment

out = Console(highlight=False, soft_wrap=True)


def _print_judgment(judgment: Judgment, name: str) -> None:
    verdict = "[bold red]ANOMALOUS[/]" if judgment.anomalous else "[green]normal[/]"
    frames = ", ".join(str(index) for index in judgment.frames)
    out.print(f"  {name} {clock(judgment.start_s)}-{clock(judgment.end_s)} (frames {frames}) {verdict}: "
              f"{escape(judgment.judgment)}")


def explain(
    video: Annotated[Path, typer.Argument(help="Footage: a video file or a frame folder.")],
    scene: Annotated[str, typer.Option(help="The scene (camera) the footage belongs to.")],
    fps: Fps = None,
    frames: Annotated[int | None, typer.Option(help="Frames the anomaly-focused sampler picks (default 16).")] = None,
    from_report: Annotated[Path | None, typer.Option(
        "--from", help="A detect result JSON (`sleuth detect --json`): explain with its frame scores, events "
        "and rules instead of scoring with the scene's proposer.")] = None,
    event: Annotated[int | None, typer.Option(help="With --from: explain only this event (its id in the report).")]
    = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the explanation as JSON here.")] = None,
) -> None:
    """Explain a video: anomaly-focused frames, judged per clip, per event and for the whole video."""
    from sleuth.errors import SleuthError
    from sleuth.graphs.explain import ExplainConfig, explain_video
    from sleuth.graphs.runtime import Runtime
    from sleuth.reports import load_report

    with request("explain") as settings:
        scores = events = rules = indices = times = None
        threshold = None
        if event is not None and from_report is None:
            raise SleuthError("--event needs --from result.json (the detect report that lists the events)")
        start, stop = 0, None
        if from_report is not None:
            report = load_report(from_report)
            if fps is not None and report.fps is not None and abs(fps - report.fps) > 1e-6:
                raise SleuthError(f"--fps {fps:g} differs from the report's {report.fps:g}",
                                  hint="leave out --fps: the report's scores are per frame read at its rate")
            fps = fps if fps is not None else report.fps
            if report.scene != scene:
                err.print(f"[yellow]the report is for scene '{escape(report.scene)}', explaining as "
                          f"'{escape(scene)}'[/]")
            scores = [frame.score for frame in report.frames]
            indices, times = [frame.index for frame in report.frames], [frame.time_s for frame in report.frames]
            events, rules, threshold = report.events, report.rules or None, report.threshold
            if event is not None and not any(e.id == event for e in report.events):
                known = ", ".join(str(e.id) for e in report.events) or "none"
                raise SleuthError(f"the report has no event {event} (events: {known})",
                                  hint="pass an id that `sleuth detect` printed")
            if report.frames:  # the part of the video the report covers
                start, stop = report.frames[0].index, report.frames[-1].index + 1
        config = ExplainConfig(**({"frames": frames} if frames is not None else {}),
                               **({"threshold": threshold} if threshold is not None else {}))
        runtime = Runtime.from_settings(settings)
        try:
            with progress_bar() as update:
                result = explain_video(video, scene=scene, scores=scores, events=events, event_id=event, rules=rules,
                                       fps=fps, start=start, stop=stop, indices=indices, times=times,
                                       config=config, runtime=runtime, progress=update)  # type: ignore[arg-type]
        finally:
            runtime.close()
        whole = result.video_judgment
        if whole is not None:
            verdict = "[bold red]ANOMALOUS[/]" if whole.anomalous else "[green]normal[/]"
            out.print(f"video {clock(whole.start_s)}-{clock(whole.end_s)} {verdict}: {escape(whole.judgment)}")
            out.print(f"  {escape(whole.description)}")
            out.print(f"  {escape(whole.analysis)}")
        if result.clips:
            out.print("clips:")
            for number, clip in enumerate(result.clips, 1):
                _print_judgment(clip, f"#{number}")
        if result.events:
            out.print("events:")
            for event in result.events:
                _print_judgment(event, f"#{event.event_id}")
        err.print(f"{len(result.sampled_frames)} frames sampled; {result.llm_calls} LLM calls "
                  f"({result.model or 'no model'}, from {result.source})")
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(result.model_dump_json(indent=1))
            err.print(f"wrote {json_out}")
