"""``sleuth watch``: alerts from a live source while it runs."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sleuth.cli.runner import err, request
from sleuth.config import Settings
from sleuth.errors import SleuthError

if TYPE_CHECKING:
    from sleuth.live.watch import WatchConfig


def watch(
    source: Annotated[str | None, typer.Argument(help="An RTSP/RTMP/HTTP(S) stream URL, a folder that receives "
                                                 "video files, or a video file.")] = None,
    scene: Annotated[str | None, typer.Option(help="The calibrated scene the camera shows.")] = None,
    cameras: Annotated[Path | None, typer.Option(help="A YAML file of several cameras watched at once (each a "
                                                 "name, a source and a scene; see docs/guide.md), instead of "
                                                 "SOURCE and --scene.")] = None,
    webhook: Annotated[str | None, typer.Option(help="Also POST each alert (JSON) to this http(s) URL; alerts "
                                                "the receiver did not take are kept on disk and sent later.")] = None,
    output: Annotated[Path, typer.Option(help="Folder of the rolling report (watch.html, watch.json), the "
                                         "key frames and the webhook's spool.")] = Path("results/watch"),
    camera: Annotated[str | None, typer.Option(help="The camera's name in alerts (default: the scene).")] = None,
    fps: Annotated[float | None, typer.Option(help="Frames analysed per second of the source (default: the rate "
                                              "the scene was calibrated at).")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this much source time.")] = None,
    llm_reasons: Annotated[bool, typer.Option(help="Each event's reason is a full deduction by the LLM (its alert "
                                              "waits a few seconds for it).")] = False,
    chunk: Annotated[int, typer.Option(min=1, help="Frames scored at a time: fewer alert sooner and cost more "
                                       "work per frame.")] = 3,
    threads: Annotated[bool, typer.Option(help="With --cameras: every camera on a thread of this process, the "
                                          "models shared (less memory, about one core in all), instead of one "
                                          "process per camera.")] = False,
) -> None:
    """Watch a live camera of a calibrated scene: each event is a JSON line on stdout as it happens
    (and a POST to --webhook), with the evidence, the reason and the key frames. Runs until Ctrl-C.
    With --cameras, every camera of the file at once."""
    from sleuth.graphs.runtime import Runtime
    from sleuth.live.alerts import AlertRouter, JsonLinesSink, WebhookSender
    from sleuth.live.watch import WatchConfig, Watcher

    with request("watch") as settings:
        config = WatchConfig(fps=fps, max_seconds=max_seconds, llm_reasons=llm_reasons, chunk=chunk)
        if cameras is not None:
            if source is not None or scene is not None:
                raise SleuthError("give either SOURCE and --scene or --cameras, not both",
                                  hint="put every camera in the --cameras file")
            watch_many(cameras, settings, config=config, output=output, webhook=webhook, threads=threads)
            return
        if source is None or scene is None:
            raise SleuthError("nothing to watch", hint="pass SOURCE and --scene S, or --cameras cameras.yaml")
        sinks: list = [JsonLinesSink()]
        if webhook:
            sinks.append(WebhookSender(webhook, output / "spool"))
        stop = threading.Event()
        runtime = Runtime.from_settings(settings)
        watcher = Watcher(source, scene=scene, router=AlertRouter(sinks), output=output, config=config,
                          runtime=runtime, camera=camera, stop=stop, log=lambda line: err.print(line, markup=False))
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        err.print(f"watching {source} (scene {scene}) at {watcher.fps:g} frames/s; Ctrl-C stops", markup=False)
        try:
            summary = watcher.run()
        except KeyboardInterrupt:
            stop.set()
            summary = watcher.summary
        finally:
            signal.signal(signal.SIGTERM, previous)
            runtime.close()
        pending = f"; {summary.pending_alerts} alert(s) not delivered yet, kept in {output / 'spool'}" \
            if summary.pending_alerts else ""
        lag = f", judged {max(summary.lag_s):.1f} s after arrival at most" if summary.lag_s else ""
        err.print(f"watched {summary.frames} frames ({summary.seconds:.1f} s{lag}): {summary.events} event(s), "
                  f"{summary.gaps} gap(s), {summary.llm_calls} LLM call(s){pending}; report: {summary.report}",
                  markup=False)


def watch_many(path: Path, settings: Settings, *, config: WatchConfig, output: Path, webhook: str | None,
               threads: bool = False) -> None:
    """Every camera of the YAML file ``path`` at once: one process each, or (``threads``) one thread
    each on a shared runtime."""
    from sleuth.graphs.runtime import Runtime
    from sleuth.live.alerts import JsonLinesSink
    from sleuth.live.cameras import CameraProcesses, CameraWatch, load_cameras

    cameras = load_cameras(path)
    if webhook and not cameras.webhook:
        cameras = cameras.model_copy(update={"webhook": webhook})
    stop = threading.Event()
    log = lambda line: err.print(line, markup=False)  # noqa: E731
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if not threads:
            err.print(f"{len(cameras.cameras)} camera(s), one process each; Ctrl-C stops", markup=False)
            codes = CameraProcesses(cameras, data_dir=settings.data_dir, output=output, shared=[JsonLinesSink()],
                                    config=config, stop=stop, log=log).run()
            failed = [name for name, code in codes.items() if code not in (0, -signal.SIGTERM)]
            err.print(f"stopped; reports in {output}/<camera>/watch.html"
                      + (f"; failed: {', '.join(failed)} (see their lines above)" if failed else ""), markup=False)
            if failed:
                raise typer.Exit(1)  # the others ran; a script still learns that not every camera was watched
            return
        runtime = Runtime.from_settings(settings)
        try:
            group = CameraWatch(cameras, runtime=runtime, output=output, shared=[JsonLinesSink()], config=config,
                                stop=stop, log=log)
            for camera in group.describe():
                err.print(f"watching {camera['source']} as {camera['camera']} (scene {camera['scene']}) at "
                          f"{camera['fps']:g} frames/s", markup=False)
            err.print(f"{len(group.watchers)} camera(s) on threads of one process; Ctrl-C stops", markup=False)
            summaries = group.run()
        finally:
            runtime.close()
    finally:
        signal.signal(signal.SIGTERM, previous)
    for name, summary in summaries.items():
        pending = f", {summary.pending_alerts} alert(s) kept in {output / name / 'spool'}" \
            if summary.pending_alerts else ""
        err.print(f"{name}: {summary.frames} frames ({summary.seconds:.1f} s), {summary.events} event(s), "
                  f"{summary.gaps} gap(s){pending}; report: {summary.report}", markup=False)
