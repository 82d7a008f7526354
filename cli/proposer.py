"""``sleuth calibrate proposer`` (train a scene's proposer on normal footage) and ``sleuth score``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sleuth.cli.runner import err, request

calibrate_app = typer.Typer(help="Learn what is normal for a scene.", no_args_is_help=True)

Video = Annotated[list[Path], typer.Option("--video", "-v", help="Normal footage: a video file, a folder of "
                                           "frames, or a folder of such clips (repeatable).")]
Scene = Annotated[str, typer.Option(help="Scene (camera) name; one proposer per scene.")]
Fps = Annotated[float | None, typer.Option(help="Sample frames at this rate (default: every frame).")]
Start = Annotated[int, typer.Option(help="First source frame to use.")]
Stop = Annotated[int | None, typer.Option(help="Stop before this source frame.")]


@contextmanager
def progress_bar() -> Iterator[object]:
    """A progress callback ``(stage, done, total)`` drawn on stderr."""
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def read_clips(sources: list[Path], *, fps: float | None, start: int, stop: int | None) -> list[list[object]]:
    from sleuth.tools.frames import read_clips as read

    clips, skipped = read(sources, fps=fps, start=start, stop=stop)
    if skipped:
        err.print(f"[yellow]skipped {skipped} undecodable frame(s)[/]")
    return clips  # type: ignore[return-value]


@calibrate_app.command("proposer")
def calibrate_proposer(
    video: Video,
    scene: Scene,
    fps: Fps = None,
    start: Start = 0,
    stop: Stop = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default from the config).")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes.")] = None,
) -> None:
    """Train the scene's self-supervised proposer on normal footage and save its checkpoint."""
    from sleuth.tools.proposer import Proposer, ProposerConfig, ProposerStore, check_scene

    with request("calibrate proposer") as settings:
        check_scene(scene)
        clips = read_clips(video, fps=fps, start=start, stop=stop)
        frames = sum(len(clip) for clip in clips)
        err.print(f"{len(clips)} clip(s), {frames} frames of normal footage for scene '{scene}'")
        overrides = {key: value for key, value in (("epochs", epochs), ("max_train_minutes", max_minutes))
                     if value is not None}
        proposer = Proposer(ProposerConfig(**overrides), scene=scene)
        with progress_bar() as update:
            report = proposer.fit(clips, progress=update)  # type: ignore[arg-type]
        path = ProposerStore(settings).save(scene, proposer)
        err.print(f"trained on {report.frames} frames ({report.objects} object crops, {report.trajectories} "
                  f"trajectories) in {report.seconds:.0f} s; alarm threshold {report.threshold:.2f}")
        typer.echo(str(path))


def score(
    video: Annotated[Path, typer.Argument(help="Footage to score: a video file, frame folder or stream URL.")],
    scene: Scene,
    fps: Fps = None,
    start: Start = 0,
    stop: Stop = None,
    top: Annotated[int, typer.Option(help="How many of the highest-scoring frames to list.")] = 10,
    output: Annotated[Path | None, typer.Option("--json", help="Write per-frame and per-object scores here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a score-over-time PNG here.")] = None,
) -> None:
    """Score footage with a scene's proposer: per-frame anomaly scores, suspects above the threshold."""
    from sleuth.evals.plots import plot_video
    from sleuth.tools.frames import FrameReader
    from sleuth.tools.proposer import Proposer, check_scene
    from sleuth.tools.smoothing import anomalous_spans
    from sleuth.tools.toolset import open_tools

    with request("score") as settings:
        check_scene(scene)
        proposer = open_tools(settings).proposer(scene)  # in-process, or the Ray Serve deployment
        reader = FrameReader(str(video), fps=fps, start=start, stop=stop)
        frames = reader.read()
        if reader.skipped:
            err.print(f"[yellow]skipped {reader.skipped} undecodable frame(s)[/]")
        if isinstance(proposer, Proposer):
            with progress_bar() as update:
                result = proposer.score(frames, progress=update)  # type: ignore[arg-type]
        else:
            err.print(f"scoring {len(frames)} frames on Ray Serve...")
            result = proposer.score(frames)
        flags = [s >= (result.threshold or float("inf")) for s in result.frame_scores]
        spans = anomalous_spans(flags)
        typer.echo(f"{len(frames)} frames, threshold {result.threshold:.2f}, {sum(flags)} suspect frame(s) "
                   f"in {len(spans)} span(s)")
        for first, last in spans:
            typer.echo(f"  suspect {result.times_s[first]:.1f}-{result.times_s[last]:.1f} s "
                       f"(frames {result.frame_indices[first]}-{result.frame_indices[last]}), "
                       f"peak {max(result.frame_scores[first:last + 1]):.2f}")
        ranked = sorted(range(len(frames)), key=lambda i: -result.frame_scores[i])[:top]
        typer.echo("top frames: " + ", ".join(f"{result.frame_indices[i]} ({result.frame_scores[i]:.2f})"
                                              for i in ranked))
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps({
                "scene": scene, "video": str(video), "threshold": result.threshold,
                "frames": [{"index": i, "time_s": round(t, 3), "score": round(float(s), 4),
                            "objects": [{"track_id": o.track_id, "box": o.box, "score": round(o.score, 4),
                                         "tasks": o.tasks} for o in objs]}
                           for i, t, s, objs in zip(result.frame_indices, result.times_s, result.frame_scores,
                                                    result.objects, strict=True)]}, indent=1))
            err.print(f"wrote {output}")
        if plot:
            plot_video(plot, video=str(video), scores=list(result.frame_scores), threshold=result.threshold,
                       raw_scores=list(result.raw_scores), title=f"proposer scores, scene {scene}")
            err.print(f"wrote {plot}")
