"""``sleuth``: investigate anomalies in surveillance video.

Each command is a thin layer over the Python API; later issues add commands here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sleuth.cli.api import api
from sleuth.cli.chat import chat
from sleuth.cli.eval_agent import eval_agent
from sleuth.cli.eval_captions import eval_captions
from sleuth.cli.eval_chat import eval_chat
from sleuth.cli.eval_prompts import eval_prompts
from sleuth.cli.eval_search import eval_search
from sleuth.cli.explain import explain
from sleuth.cli.index import galleries, index
from sleuth.cli.pipeline import calibrate_scene, detect
from sleuth.cli.proposer import calibrate_app, score
from sleuth.cli.report import report
from sleuth.cli.rules import rules_app
from sleuth.cli.runner import err, fail, request
from sleuth.cli.search import search
from sleuth.cli.serve import serve_app
from sleuth.cli.ui import ui
from sleuth.cli.watch import watch

app = typer.Typer(
    name="sleuth",
    help="Investigate anomalies in surveillance video with LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Benchmarks and evaluations (accuracy and cost).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
eval_app.command("captions")(eval_captions)
eval_app.command("search")(eval_search)
eval_app.command("agent")(eval_agent)
eval_app.command("chat")(eval_chat)
eval_app.command("prompts")(eval_prompts)
app.add_typer(rules_app, name="rules")
calibrate_app.callback(invoke_without_command=True)(calibrate_scene)
app.add_typer(calibrate_app, name="calibrate")
app.command("detect")(detect)
app.command("watch")(watch)
app.command("explain")(explain)
app.command("report")(report)
app.command("score")(score)
app.command("index")(index)
app.command("galleries")(galleries)
app.command("search")(search)
app.command("chat")(chat)
app.command("ui")(ui)
serve_app.command("api")(api)
app.add_typer(serve_app, name="serve")
out = Console(highlight=False, soft_wrap=True)

_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Show which models, endpoints, services and data paths are configured, and test each."""
    from sleuth.doctor import run_checks

    with request("doctor") as settings:
        checks = run_checks(settings)
    if as_json:
        out.print_json(json.dumps([check.__dict__ for check in checks]))
    else:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("area")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for check in checks:
            table.add_row(check.area, f"[{_STYLE[check.status]}]{check.status}[/]", check.detail)
        out.print(table)
    failed = [check.area for check in checks if check.status == "fail"]
    if failed:
        raise fail(f"{len(failed)} check(s) failed: {', '.join(failed)}", 1)


def _load_schema(value: str) -> dict[str, Any]:
    text = Path(value).read_text() if not value.lstrip().startswith("{") and Path(value).is_file() else value
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"--json-schema is neither a JSON file nor valid JSON ({exc.msg}): pass a "
                   "schema such as '{\"type\":\"object\",...}' or a path to one") from None
    if not isinstance(schema, dict):
        raise fail("--json-schema must be a JSON object")
    return schema


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The question or instruction.")],
    json_schema: Annotated[str | None, typer.Option(
        "--json-schema", help="A JSON schema (inline or a file): answer with validated JSON.")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    role: Annotated[str, typer.Option(help="Model role to ask: llm or vlm.")] = "llm",
    image: Annotated[list[Path] | None, typer.Option(help="Image file(s) for a VLM role.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Answer length limit.")] = None,
) -> None:
    """Ask the configured LLM one question; the answer streams as it is generated."""
    from sleuth.llm.gateway import Gateway, user_message

    schema = _load_schema(json_schema) if json_schema else None
    for path in image or []:
        if not path.is_file():
            raise fail(f"image {path} does not exist")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append(user_message(prompt, image or []))
    with request("ask") as settings:
        gateway = Gateway(settings)
        if schema is not None:
            answer = gateway.structured_json(messages, schema, role=role, max_tokens=max_tokens)
            out.print_json(json.dumps(answer))
        else:
            for piece in gateway.stream(messages, role=role, max_tokens=max_tokens):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        totals = gateway.usage.totals()
        last = gateway.usage.records[-1]
        err.print(f"[dim]{last.model} · {totals['calls']} call(s) · "
                  f"{totals['prompt_tokens']} prompt + {totals['completion_tokens']} completion "
                  f"tokens · {totals['latency_s']:.1f} s[/]")


@eval_app.command("llm")
def eval_llm(
    model: Annotated[list[str] | None, typer.Option(
        help="Packaged model name(s) or GGUF path(s); default: both packaged models.")] = None,
    output: Annotated[Path, typer.Option(help="Where to write the JSON result.")] = Path(
        "results/llm_bench.json"),
    repeats: Annotated[int, typer.Option(help="Repetitions per measurement (median).")] = 3,
) -> None:
    """Benchmark the embedded LLMs: load time, TTFT, tokens/s, cached prefix, peak memory."""
    from sleuth.evals.llm_bench import print_table, run_benchmarks

    with request("eval llm") as settings:
        results = run_benchmarks(model or ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"],
                                 repeats=repeats, settings=settings, log=err.print)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    print_table(results, out)
    err.print(f"wrote {output}")
    if any("error" in result for result in results):
        raise fail("some models could not be benchmarked (see the table)", 1)


@eval_app.command("proposer")
def eval_proposer(
    data: Annotated[Path, typer.Option(help="Data folder with ped2/ and videos/ (e.g. ../shared/data).")],
    suite: Annotated[list[str] | None, typer.Option(help="ped2, robbery, vtest (repeatable; default all).")] = None,
    output: Annotated[Path, typer.Option(help="Folder for the JSON result and the plots.")] = Path(
        "results/proposer"),
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default from ProposerConfig).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="ProposerConfig override KEY=VALUE.")] = None,
) -> None:
    """Benchmark the SSL proposer: frame AUC (Ped2, Robbery102), false alarms (vtest), speed, memory."""
    from sleuth.evals.proposer_bench import SUITES, run_suites
    from sleuth.tools.proposer import ProposerConfig

    overrides: dict[str, Any] = {"epochs": epochs} if epochs else {}
    for item in set_ or []:
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    with request("eval proposer"):
        config = ProposerConfig(**overrides)
        results = run_suites(list(suite or SUITES), data, output, config, log=err.print)
    output.mkdir(parents=True, exist_ok=True)
    (output / "proposer_bench.json").write_text(json.dumps({"config": config.model_dump(), "results": results},
                                                           indent=2))
    table = Table(box=None, header_style="bold")
    for column in ("suite", "frame AUC", "mean video AUC", "false alarms/min", "train s", "score fps", "peak MB"):
        table.add_column(column)
    for result in results:
        table.add_row(result["suite"], str(result.get("frame_auc", "")), str(result.get("mean_video_auc", "")),
                      str(result.get("false_alarms_per_minute", "")), str(result["train_seconds"]),
                      str(result["score_fps"]), str(result["peak_memory_mb"]))
    out.print(table)
    err.print(f"wrote {output / 'proposer_bench.json'} and plots")


@eval_app.command("pipeline")
def eval_pipeline(
    data: Annotated[Path, typer.Option(help="Data folder with ped2/, anomalyruler/ and videos/ (../shared/data).")],
    suite: Annotated[list[str] | None, typer.Option(
        help="ped2, ped2-cogvlm, robbery, vtest (repeatable; default all).")] = None,
    output: Annotated[Path, typer.Option(help="Folder for the JSON result and the reports.")] = Path(
        "results/pipeline"),
    gate: Annotated[float | None, typer.Option(help="Gate percentile (default 95; 0 captions every frame).")] = None,
    model: Annotated[str | None, typer.Option(help="LLM (e.g. qwen2.5-coder-1.5b); default: configured.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Reasoning (DetectConfig) override KEY=VALUE.")]
    = None,
    keep: Annotated[bool, typer.Option(help="Reuse the calibrations of an earlier run in --output.")] = False,
) -> None:
    """Benchmark the main job end to end: calibrate on normal footage, detect on the rest (AUC, cost)."""
    from sleuth.cli.pipeline import with_overrides
    from sleuth.evals.pipeline_bench import SUITES, run_suites
    from sleuth.graphs.detect import VideoDetectConfig

    with request("eval pipeline") as settings:
        if model:
            settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"model": model,
                                                                                          "gguf": None})})
        options: dict[str, Any] = {}
        if gate is not None:
            options["gate_percentile"] = gate
        if set_:
            options["reasoning"] = with_overrides(VideoDetectConfig().reasoning, set_)
        config = VideoDetectConfig(**options)
        results = run_suites(list(suite or SUITES), data, output, settings, err.print, config=config, fresh=not keep)
    table = Table(box=None, header_style="bold")
    for column in ("suite", "frame AUC", "proposer AUC", "false alarms/min", "events", "gated", "LLM calls/frame",
                   "s/frame", "peak MB"):
        table.add_column(column)
    for result in results:
        table.add_row(result["suite"], str(result.get("frame_auc", "")), str(result.get("proposer_only_auc", "")),
                      str(result.get("false_alarms_per_minute", "")), str(result["events"]),
                      f"{100 * result['gated_share']:.0f}%", str(result["llm_calls_per_frame"]),
                      str(result["seconds_per_frame"]), str(result["peak_memory_mb"]))
    out.print(table)
    err.print(f"wrote {output / 'pipeline_bench.json'} and an HTML report per video in {output / 'reports'}")


@eval_app.command("watch")
def eval_watch(
    data: Annotated[Path, typer.Option(help="Data folder with videos/ucf_Robbery102_frames.mp4 (../shared/data).")],
    output: Annotated[Path, typer.Option(help="Folder for the JSON result, the alerts and the report.")] = Path(
        "results/watch-bench"),
    webhook_down: Annotated[float, typer.Option(help="Seconds the webhook receiver is down at the start.")] = 60.0,
    keep: Annotated[bool, typer.Option(help="Reuse the calibration of an earlier run in --output.")] = False,
    fps: Annotated[float, typer.Option(help="Rate the scene is calibrated and watched at.")] = 5.0,
    cameras: Annotated[int | None, typer.Option(min=1, help="Instead: this many live cameras at once (each plays "
                                                "the clip once), watched in one process; does each keep up?")] = None,
    chunk: Annotated[int | None, typer.Option(min=1, help="Frames scored at a time (default: sleuth watch's).")] = None,
    threads: Annotated[bool, typer.Option(help="With --cameras: threads of one process, not a process each.")] = False,
) -> None:
    """Benchmark `sleuth watch` on a live loopback stream: alert latency, alerts lost while the webhook
    is down, reconnects, throughput; with --cameras N, N cameras watched at once."""
    from sleuth.evals.watch_bench import run, run_cameras
    from sleuth.live.watch import WatchConfig

    config = WatchConfig(**({"chunk": chunk} if chunk else {}))
    if cameras is not None:
        with request("eval watch") as settings:
            many = run_cameras(data, output, settings, err.print, cameras=cameras, reuse=keep, fps=fps, config=config,
                               threads=threads)
        for camera in many["per_camera"]:
            behind = camera["behind_s"]
            out.print(f"{camera['camera']}: {camera['frames_analysed']} of {many['frames_wanted_each']} frames, "
                      f"judged {behind['median']} s behind the stream (p95 {behind['p95']}, max {behind['max']}); "
                      f"robbery {'found' if camera['robbery_found'] else 'missed'}, "
                      f"{camera['false_alarms']} false alarm(s); alert latency {camera['live_latency_s']} s")
        out.print(f"{many['cameras']} camera(s) at {many['fps_each']:g} frames/s each, {many['mode']}: "
                  f"{'kept up' if many['kept_up'] else 'fell behind'}; peak memory {many['peak_memory_mb']} MB")
        err.print(f"wrote {output}/watch_cameras_{cameras}_{many['mode']}.json")
        return
    with request("eval watch") as settings:
        result = run(data, output, settings, err.print, webhook_down_s=webhook_down, reuse=keep, fps=fps,
                     config=config)
    latency, live = result["latency_s"], result["live_latency_s"]
    out.print(f"{result['frames_analysed']} frames analysed in {result['wall_seconds']} s "
              f"({result['analysed_frames_per_wall_second']} frames/s, {result['analysed_fps']:g} wanted); "
              f"{result['event_alerts']} event alert(s), {live['median']} s after the event went live (median; max "
              f"{live['max']} s), {latency['median']} s after its frame was decoded; "
              f"{result['alerts_emitted']} alerts emitted, {result['alerts_received']} received by the webhook "
              f"(down for the first {result['webhook_down_s']:g} s), {result['alerts_lost']} lost; "
              f"{len(result['gaps'])} gap(s) reported")
    err.print(f"wrote {output / 'watch_bench.json'}; the rolling report is {result['report']}")


@eval_app.command("long")
def eval_long(
    data: Annotated[Path, typer.Option(help="Data folder with videos/vtest.avi (../shared/data).")],
    output: Annotated[Path, typer.Option(help="Folder for the looped video, the JSON result, the memory plot and "
                                         "the detect report.")] = Path("results/long-bench"),
    minutes: Annotated[float, typer.Option(min=1, help="Length of the looped video to detect.")] = 60.0,
    explain: Annotated[bool, typer.Option(help="Detect with --explain (Holmes-VAU judgments too).")] = False,
    keep: Annotated[bool, typer.Option(help="Reuse the calibration of an earlier run in --output.")] = False,
) -> None:
    """Benchmark `sleuth detect` on long footage (vtest.avi looped to --minutes): resident memory over
    the run by stage (is it flat?), peak memory, frames per second, false alarms."""
    from sleuth.evals.long_bench import run

    with request("eval long") as settings:
        result = run(data, output, settings, err.print, minutes=minutes, reuse=keep, explain=explain)
    memory = result["memory"]
    tenths = memory["score_stage_tenths"]
    out.print(f"{result['frames']} frames ({result['minutes']} min) in {result['wall_seconds']} s; score stage "
              f"{result['score_frames_per_second']} frames/s; {result['events']} event(s) on normal footage "
              f"({result['false_alarms_per_minute']}/min)")
    out.print(f"peak resident memory {memory['peak_rss_mb']} MB ({memory['peak_anon_mb']} MB anonymous); while "
              f"scoring {tenths[0]['rss'] if tenths else '?'} MB after a tenth, {tenths[-1]['rss'] if tenths else '?'} "
              f"MB at the end (heap growth {memory['score_stage_anon_growth_mb_per_hour']} MB per hour of video)")
    for stage, peak in memory["by_stage"].items():
        out.print(f"  {stage}: peak {peak.get('rss')} MB ({peak.get('anon', '?')} MB anonymous)")
    err.print(f"wrote {output / 'long_bench.json'}, the plot {result['plot']} and the report "
              f"{output / 'reports' / 'long.html'}")


@eval_app.command("captioners")
def eval_captioners(
    video: Annotated[Path, typer.Option(help="Video file, frame folder or stream URL to caption.")],
    frames: Annotated[int, typer.Option(help="How many consecutive frames to caption.")] = 100,
    captioner: Annotated[list[str] | None, typer.Option(
        help="structured, transformers, litellm (repeatable; default all).")] = None,
    vlm_model: Annotated[str | None, typer.Option(
        help="Local VLM folder for the transformers captioner (default: tools.captioner.model).")] = None,
    random_vlm: Annotated[str | None, typer.Option(
        help="Without --vlm-model: a randomly initialised VLM of this shape (tiny, small): compute cost only.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per transformers batch.")] = 8,
    max_new_tokens: Annotated[int, typer.Option(
        min=1, help="Tokens per caption (exactly this many for random models).")] = 32,
    device: Annotated[list[str] | None, typer.Option(
        help="Devices for the transformers captioner (repeatable; default cpu, and cuda when present).")] = None,
    output: Annotated[Path, typer.Option(help="Where to write the JSON result.")] = Path("results/captioners.json"),
) -> None:
    """Benchmark the captioners: frames per second and peak memory on this machine."""
    from sleuth.evals.captioner_bench import KINDS, CaptionerBenchConfig, print_table, read_clip, run_benchmarks

    config = CaptionerBenchConfig(captioners=tuple(captioner or KINDS), vlm_model=vlm_model, random_vlm=random_vlm,
                                  batch_size=batch_size, max_new_tokens=max_new_tokens,
                                  devices=tuple(device) if device else None)
    with request("eval captioners") as settings:
        clip = read_clip(video, frames)
        report = run_benchmarks(clip, settings, config, source=str(video), log=err.print)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print_table(report, out)
    err.print(f"wrote {output}")
    if any("error" in row for row in report["results"]):
        raise fail("some captioners could not be benchmarked (see the table)", 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
