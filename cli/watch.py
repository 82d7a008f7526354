"""``sleuth watch``: alerts from a live source while it runs."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from sleuth.cli.runner import err, request


def watch(
    source: Annotated[str, typer.Argument(help="An RTSP/RTMP/HTTP(S) stream URL, a folder that receives video "
                                          "files, or a video file.")],
    scene: Annotated[str, typer.Option(help="The calibrated scene the camera shows.")],
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
) -> None:
    """Watch a live camera of a calibrated scene: each event is a JSON line on stdout as it happens
    (and a POST to --webhook), with the evidence, the reason and the key frames. Runs until Ctrl-C."""
    from sleuth.graphs.runtime import Runtime
    from sleuth.live.alerts import AlertRouter, JsonLinesSink, WebhookSender
    from sleuth.live.watch import WatchConfig, Watcher

    with request("watch") as settings:
        config = WatchConfig(fps=fps, max_seconds=max_seconds, llm_reasons=llm_reasons)
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
