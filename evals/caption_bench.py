"""Caption benchmark: frame-level accuracy and cost of Sleuth on a caption dataset.

``sleuth eval captions --data ../shared/data/anomalyruler/ped2`` (any folder in the layout of
:mod:`sleuth.evals.datasets`). Three modes:

- ``rules``: deduction only, with the rules of a file (the dataset's ``rules.txt``);
- ``induced``: Sleuth induces the rules from a sample of the *unlabeled* captions of the test
  videos (HyCoVAD style), then deduces. Labels are read only after every score is final;
- ``keyword``: AnomalyRuler-base, the keyword-only reference (no LLM), from a rules file.

The order of work makes the label isolation visible: :func:`load_captions` (no label value is
read), rules, scoring of every video, and only then :func:`load_labels` and the metrics.

Written to ``output``: ``result.json`` (metrics overall and per video, cost, configuration, rules,
timestamps, command line), ``scores.csv`` (one row per frame), ``rules.txt`` (the rules used) and
``plots/video_NN.png`` (score against frame, ground truth shaded).

Cost is measured, not estimated: seconds per frame (wall clock of scoring, rule induction
reported apart), LLM calls per frame and prompt/completion tokens (as the graph reports them),
frames scored by the fallback, and the peak resident memory of the process (``ru_maxrss``; the
embedded llama.cpp server runs in-process, so it is included).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sleuth.agents.schemas import RuleSet
from sleuth.errors import SleuthError
from sleuth.evals.datasets import CaptionDataset, load_captions, load_labels
from sleuth.evals.metrics import Metrics, evaluate
from sleuth.graphs.detect_captions.configuration import DetectConfig
from sleuth.graphs.detect_captions.state import DetectResult

Mode = Literal["rules", "induced", "keyword"]
MODES: tuple[str, ...] = ("rules", "induced", "keyword")

# Published frame-level ROC AUC (%) on the caption datasets (all frames concatenated).
PUBLISHED: dict[str, dict[str, float]] = {
    "ped2": {"AnomalyRuler": 97.9, "AnomalyRuler-base": 96.5},
    "avenue": {"AnomalyRuler": 89.7, "AnomalyRuler-base": 82.2},
}


class RulesFileError(SleuthError):
    """A rules file is missing, unreadable or has no anomaly rule."""


# -- progress ------------------------------------------------------------------------------------

class Reporter(Protocol):
    """What the benchmark tells about its progress (the CLI shows it with rich)."""

    def stage(self, text: str) -> None: ...
    def begin(self, videos: int, frames: int) -> None: ...
    def video_started(self, video: str, frames: int) -> None: ...
    def video_progress(self, video: str, stage: str, done: int, total: int) -> None: ...
    def video_done(self, video: str, frames: int, llm_calls: int) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    def stage(self, text: str) -> None:
        pass

    def begin(self, videos: int, frames: int) -> None:
        pass

    def video_started(self, video: str, frames: int) -> None:
        pass

    def video_progress(self, video: str, stage: str, done: int, total: int) -> None:
        pass

    def video_done(self, video: str, frames: int, llm_calls: int) -> None:
        pass

    def close(self) -> None:
        pass


class RichReporter:
    """Progress bars on a rich console (stderr in the CLI): videos, frames, LLM calls so far."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=console, transient=False)
        self._videos: Any = None
        self._frames: Any = None
        self._current: Any = None
        self._calls = 0
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self.progress.start()
            self._started = True

    def stage(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/]")

    def begin(self, videos: int, frames: int) -> None:
        self._start()
        self._videos = self.progress.add_task("videos", total=videos, info="")
        self._frames = self.progress.add_task("frames", total=frames, info="LLM calls 0")

    def video_started(self, video: str, frames: int) -> None:
        self._current = self.progress.add_task(f"video {video}", total=frames, info="")

    def video_progress(self, video: str, stage: str, done: int, total: int) -> None:
        if self._current is not None:
            self.progress.update(self._current, description=f"video {video} · {stage}"[:28],
                                 completed=done, total=max(total, 1))

    def video_done(self, video: str, frames: int, llm_calls: int) -> None:
        self._calls += llm_calls
        if self._current is not None:
            self.progress.remove_task(self._current)
            self._current = None
        self.progress.advance(self._videos)
        self.progress.update(self._frames, advance=frames, info=f"LLM calls {self._calls}")

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False


# -- result --------------------------------------------------------------------------------------

class VideoCost(BaseModel):
    video: str
    frames: int
    seconds: float
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    fallback_frames: int
    events: int
    sources: dict[str, int] = Field(description="Frames per score source (llm, reused, cheap, fallback).")


class Cost(BaseModel):
    frames: int
    videos: int
    scoring_s: float = Field(description="Wall clock of scoring every video (induction excluded).")
    s_per_frame: float
    llm_calls: int
    llm_calls_per_frame: float
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_per_frame: float
    completion_tokens_per_frame: float
    fallback_frames: int
    sources: dict[str, int]
    induce_s: float | None = None
    induce_llm_calls: int | None = None
    induce_prompt_tokens: int | None = None
    induce_completion_tokens: int | None = None
    peak_rss_mb: float = Field(description="Peak resident memory of this process (ru_maxrss).")
    peak_rss_children_mb: float = Field(description="Peak resident memory of the largest child process.")
    wall_s: float = Field(description="Whole run: loading, induction, scoring, metrics and outputs.")


class RulesInfo(BaseModel):
    source: str = Field(description="'file' (--rules), 'dataset' (the dataset's rules.txt) or 'induced'.")
    file: str | None = None
    anomaly_rules: int
    normal_rules: int
    version: int = 0
    keywords: list[str] | None = Field(default=None, description="Keyword mode: the keywords matched.")


class CaptionBenchmarkResult(BaseModel):
    benchmark: str = "captions"
    dataset: str
    data: str
    mode: Mode
    method: str
    model: str | None
    rules: RulesInfo
    videos: list[str]
    max_frames: int | None
    metrics: Metrics
    per_video_cost: list[VideoCost]
    cost: Cost
    config: dict[str, Any]
    published_auc: dict[str, float] | None = None
    started_at: str
    finished_at: str
    command: str
    host: dict[str, Any]
    outputs: dict[str, Any]


_METHODS = {
    "rules": "Sleuth detect_captions, deduction with rules from a file",
    "induced": "Sleuth detect_captions, rules induced from unlabeled test captions, then deduction",
    "keyword": "AnomalyRuler-base keyword reference (no LLM)",
}


# -- rules ---------------------------------------------------------------------------------------

def read_rules(path: Path, *, scene: str = "default") -> RuleSet:
    """Parse a rules.txt file; it must hold at least one anomaly rule."""
    path = Path(path)
    if not path.is_file():
        raise RulesFileError(f"rules file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError(f"rules file {path} cannot be read ({exc})") from None
    rules = RuleSet.parse(text, scene=scene, source="file")
    if not rules.anomaly:
        raise RulesFileError(
            f"rules file {path} has no anomaly rules ({len(rules.normal)} normal)",
            hint="expected a heading such as '**Anomaly Human Activities:**' followed by numbered rules")
    return rules


def _usage(gateway: Any) -> dict[str, int]:
    try:
        totals = gateway.usage.totals()
        return {key: int(totals.get(key, 0)) for key in ("calls", "prompt_tokens", "completion_tokens")}
    except Exception:  # noqa: BLE001 - cost accounting must not break the benchmark
        return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}


def _induce(dataset: CaptionDataset, *, scene: str, config: DetectConfig, settings: Any,
            reporter: Reporter, runtime: Any = None) -> tuple[RuleSet, dict[str, Any]]:
    """Rules from the unlabeled captions only (``dataset`` carries no label)."""
    from sleuth.agents import rules as rule_agents
    from sleuth.llm.gateway import Gateway

    reporter.stage(f"inducing rules from {config.induce_sample} captions per video of {len(dataset.videos)} "
                   "unlabeled videos")
    gateway = runtime.gateway if runtime is not None else Gateway(settings) if settings is not None else None
    before = _usage(gateway) if gateway is not None else {}
    started = time.perf_counter()
    rules = rule_agents.induce_from_unlabeled(dataset.captions_by_video(), per_video=config.induce_sample,
                                              scene=scene, gateway=gateway,
                                              embedder=runtime.embedder if runtime is not None else None)
    after = _usage(gateway) if gateway is not None else {}
    usage = {key: after[key] - before.get(key, 0) for key in after}
    cost = {"induce_s": round(time.perf_counter() - started, 3), "induce_llm_calls": usage.get("calls"),
            "induce_prompt_tokens": usage.get("prompt_tokens"),
            "induce_completion_tokens": usage.get("completion_tokens")}
    if not rules.anomaly:
        raise SleuthError(f"rule induction on {dataset.name} produced no anomaly rules "
                          f"({len(rules.normal)} normal)", hint="try a larger model or pass --rules FILE")
    return rules, cost


# -- scoring -------------------------------------------------------------------------------------

def _score_video(mode: Mode, captions: Sequence[str], *, video: str, scene: str, rules: RuleSet,
                 keywords: list[str] | None, config: DetectConfig, runtime: Any, thread_id: str,
                 progress: Callable[[str, int, int], None]) -> DetectResult:
    if mode == "keyword":
        from sleuth.evals.keyword_baseline import detect_keywords

        result = detect_keywords(captions, rules, video=video, scene=scene, config=config, keywords=keywords)
        progress("keywords", len(captions), len(captions))
        return result
    from sleuth.graphs import detect_captions as graph  # looked up at call time (tests replace it)

    return graph.detect_captions(captions, video=video, scene=scene, rules=rules, config=config,
                                 runtime=runtime, thread_id=thread_id, progress=progress)


def _peak_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _per_frame(total: float, frames: int) -> float:
    return round(total / frames, 6) if frames else 0.0


def run_caption_benchmark(data: Path, *, rules_file: Path | None = None, mode: Mode = "induced",
                          output: Path, config: DetectConfig | None = None,
                          videos: list[str] | None = None, max_frames: int | None = None,
                          progress: Reporter | None = None, settings: Any = None,
                          runtime: Any = None, llm_model: str | None = None) -> CaptionBenchmarkResult:
    """Run the benchmark on the caption dataset ``data`` and write its outputs into ``output``.

    ``rules_file`` is required in ``rules`` mode; ``keyword`` mode falls back to the dataset's
    ``rules.txt``; ``induced`` mode ignores it. ``config`` defaults to :class:`DetectConfig`
    (``anomalyruler`` smoothing in keyword mode). ``videos`` and ``max_frames`` select a subset.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    reporter: Reporter = progress or NullReporter()
    config = config or (DetectConfig(smoothing="anomalyruler") if mode == "keyword" else DetectConfig())
    try:
        return _run(Path(data), rules_file=rules_file, mode=mode, output=Path(output), config=config, videos=videos,
                    max_frames=max_frames, reporter=reporter, settings=settings, runtime=runtime,
                    llm_model=llm_model)
    finally:
        reporter.close()


def _run(data: Path, *, rules_file: Path | None, mode: Mode, output: Path, config: DetectConfig,
         videos: list[str] | None, max_frames: int | None, reporter: Reporter, settings: Any,
         runtime: Any, llm_model: str | None = None) -> CaptionBenchmarkResult:
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    wall = time.perf_counter()
    # 1. Captions only: no label value has been read yet.
    dataset = load_captions(Path(data), videos=videos, max_frames=max_frames)
    scene = dataset.name

    # 2. Rules, from a file or induced from the unlabeled captions.
    induce_cost: dict[str, Any] = {}
    keywords: list[str] | None = None
    if mode != "keyword" and runtime is None:
        from sleuth.graphs.runtime import Runtime

        # One runtime for every video: one model server, one embedder, one judgment cache.
        runtime = Runtime.from_settings(settings if settings is not None else _settings(), model=llm_model)
    if runtime is not None:
        settings = runtime.settings
    if mode == "induced":
        settings = settings if settings is not None else _settings()
        rules, induce_cost = _induce(dataset, scene=scene, config=config, settings=settings, reporter=reporter,
                                     runtime=runtime)
        rules_info = RulesInfo(source="induced", anomaly_rules=len(rules.anomaly), normal_rules=len(rules.normal),
                               version=rules.version)
    else:
        source = "file" if rules_file is not None else "dataset"
        path = rules_file if rules_file is not None else dataset.rules_file
        if path is None:
            raise RulesFileError(f"{mode} mode needs a rules file and {dataset.root} has no rules.txt",
                                 hint="pass --rules FILE")
        rules = read_rules(path, scene=scene)
        if mode == "keyword":
            from sleuth.evals.keyword_baseline import anomaly_keywords

            keywords = anomaly_keywords(rules)
            if not keywords:
                raise RulesFileError(f"no keyword could be taken from the anomaly rules of {path}")
        rules_info = RulesInfo(source=source, file=str(path), anomaly_rules=len(rules.anomaly),
                               normal_rules=len(rules.normal), version=rules.version, keywords=keywords)
    model = None
    if mode != "keyword":
        settings = settings if settings is not None else _settings()
        model = _model_name(settings)

    # 3. Score every video.
    run_stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    results: dict[str, DetectResult] = {}
    costs: list[VideoCost] = []
    reporter.begin(len(dataset.videos), dataset.frames)
    scoring = 0.0
    for video in dataset.videos:
        reporter.video_started(video.id, video.frames)

        def report(stage: str, done: int, total: int, _video: str = video.id) -> None:
            reporter.video_progress(_video, stage, done, total)

        began = time.perf_counter()
        result = _score_video(mode, video.captions, video=video.id, scene=scene, rules=rules, keywords=keywords,
                              config=config, runtime=runtime, progress=report,
                              thread_id=f"bench-{scene}-{mode}-{video.id}-{run_stamp}")
        seconds = time.perf_counter() - began
        scoring += seconds
        if len(result.frames) != video.frames:
            raise RuntimeError(f"video {video.id}: the scorer returned {len(result.frames)} frames "
                               f"for {video.frames} captions")
        results[video.id] = result
        costs.append(VideoCost(video=video.id, frames=video.frames, seconds=round(seconds, 3),
                               llm_calls=result.llm_calls, prompt_tokens=result.prompt_tokens,
                               completion_tokens=result.completion_tokens,
                               fallback_frames=result.fallback_frames, events=len(result.events),
                               sources=dict(Counter(frame.source for frame in result.frames))))
        reporter.video_done(video.id, video.frames, result.llm_calls)
    reporter.close()  # the bars end here; what follows is quick

    # 4. Only now: the labels, the metrics and the outputs.
    labeled = load_labels(dataset)
    labels = labeled.labels_by_video()
    metrics = evaluate(labels, {v: r.scores for v, r in results.items()},
                       {v: [f.anomalous for f in r.frames] for v, r in results.items()})
    reporter.stage("writing scores, plots and result")
    output.mkdir(parents=True, exist_ok=True)
    (output / "rules.txt").write_text(rules.render())
    scores_path = write_scores(output / "scores.csv", results, labels)
    events_path = output / "events.json"  # every event with its broken rules and reason, per video
    events_path.write_text(json.dumps({video: [event.model_dump() for event in result.events]
                                       for video, result in results.items()}, indent=1))
    plots = write_plots(output / "plots", results, labels, metrics, threshold=config.threshold)

    frames = dataset.frames
    calls = sum(c.llm_calls for c in costs)
    prompt = sum(c.prompt_tokens for c in costs)
    completion = sum(c.completion_tokens for c in costs)
    sources: Counter[str] = Counter()
    for c in costs:
        sources.update(c.sources)
    cost = Cost(frames=frames, videos=len(costs), scoring_s=round(scoring, 3), s_per_frame=_per_frame(scoring, frames),
                llm_calls=calls, llm_calls_per_frame=_per_frame(calls, frames), prompt_tokens=prompt,
                completion_tokens=completion, prompt_tokens_per_frame=_per_frame(prompt, frames),
                completion_tokens_per_frame=_per_frame(completion, frames),
                fallback_frames=sum(c.fallback_frames for c in costs), sources=dict(sources), **induce_cost,
                peak_rss_mb=_peak_mb(resource.RUSAGE_SELF), peak_rss_children_mb=_peak_mb(resource.RUSAGE_CHILDREN),
                wall_s=round(time.perf_counter() - wall, 3))
    result = CaptionBenchmarkResult(
        dataset=dataset.name, data=str(Path(data).resolve()), mode=mode, method=_METHODS[mode], model=model,
        rules=rules_info, videos=[video.id for video in dataset.videos], max_frames=max_frames, metrics=metrics,
        per_video_cost=costs, cost=cost, config=config.model_dump(),
        published_auc=PUBLISHED.get(dataset.name) if not videos and not max_frames else None,
        started_at=started_at, finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        command=shlex.join(sys.argv), host=_host(),
        outputs={"result": str(output / "result.json"), "scores": str(scores_path),
                 "events": str(events_path), "rules": str(output / "rules.txt"),
                 "plots": [str(path) for path in plots]})
    (output / "result.json").write_text(result.model_dump_json(indent=2))
    return result


# -- outputs -------------------------------------------------------------------------------------

def write_scores(path: Path, results: dict[str, DetectResult], labels: dict[str, list[int]]) -> Path:
    """One row per frame: video, frame, label, score, decision, source, raw_score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "frame", "label", "score", "decision", "source", "raw_score"])
        for video, result in results.items():
            for frame, label in zip(result.frames, labels[video], strict=True):
                writer.writerow([video, frame.index, label, f"{frame.score:.6f}", int(frame.anomalous),
                                 frame.source, f"{frame.raw_score:.6f}"])
    return path


def write_plots(folder: Path, results: dict[str, DetectResult], labels: dict[str, list[int]], metrics: Metrics,
                *, threshold: float | None) -> list[Path]:
    from sleuth.evals.plots import plot_video

    aucs = {video.video: video.auc for video in metrics.per_video}
    return [plot_video(folder / f"video_{video}.png", video=video, scores=result.scores, labels=labels[video],
                       threshold=threshold, decisions=[frame.anomalous for frame in result.frames],
                       raw_scores=[frame.raw_score for frame in result.frames], auc=aucs.get(video))
            for video, result in results.items()]


def _settings() -> Any:
    from sleuth.config import load_settings

    return load_settings()


def _model_name(settings: Any) -> str | None:
    llm = getattr(settings, "llm", None)
    if llm is None:
        return None
    gguf = getattr(llm, "gguf", None)
    return str(gguf) if gguf else llm.model


def _host() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}


def summary_rows(result: CaptionBenchmarkResult) -> list[tuple[str, str]]:
    """(name, value) pairs for a summary table."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 100:.1f}"

    metrics, cost = result.metrics, result.cost
    rows = [("frame AUC (all frames)", pct(metrics.auc)), ("frame AP (all frames)", pct(metrics.ap)),
            (f"mean per-video AUC ({metrics.videos_with_auc} videos)", pct(metrics.mean_video_auc)),
            ("LLM calls / frame", f"{cost.llm_calls_per_frame:.3f}"), ("s / frame", f"{cost.s_per_frame:.4f}"),
            ("prompt + completion tokens", f"{cost.prompt_tokens} + {cost.completion_tokens}"),
            ("fallback frames", str(cost.fallback_frames)), ("peak RSS MB", f"{cost.peak_rss_mb:.0f}")]
    if cost.induce_s is not None:
        rows.insert(5, ("rule induction s", f"{cost.induce_s:.1f}"))
    if result.published_auc:
        rows.append(("published AUC", ", ".join(f"{k} {v}" for k, v in result.published_auc.items())))
    return rows
