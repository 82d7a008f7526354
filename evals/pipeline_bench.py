"""End-to-end benchmark of the main job: ``calibrate`` on normal footage, ``detect`` on the rest.

Everything runs through the product graphs with the configured (embedded by default) models;
each run keeps its scene state (proposers, rules, profiles, checkpoints) in ``<out>/state`` so it
never touches the user's scenes. Suites read one data folder (``../shared/data`` or any folder in
the same layout):

- ``ped2``: calibrate on ``ped2/training/frames`` (proposer, and rules induced from the default
  captioner's captions of those normal frames), detect every ``ped2/testing/frames`` clip; frame
  AUC/AP over all frames concatenated and per video, LLM calls per frame, seconds per frame.
- ``ped2-cogvlm``: the same proposer and gate, but CogVLM's captions of the test frames
  (``anomalyruler/ped2``) in place of the default captioner and the AnomalyRuler authors'
  rules: what perception costs against what reasoning costs.
- ``robbery``: ``videos/ucf_Robbery102_frames.mp4``, calibrate on frames 0-899, detect the rest
  (anomalous 1080-1560): frame AUC and events against the annotated span.
- ``vtest``: ``videos/vtest.avi`` (normal), calibrate on the first half, detect the second:
  false alarms (events) per minute.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sleuth.agents.schemas import RuleSet
from sleuth.config import Settings
from sleuth.evals.datasets import load_captions
from sleuth.evals.proposer_bench import (
    ROBBERY,
    VTEST,
    BenchmarkDataError,
    _frame_clips,
    _ped2_labels,
    _require,
    peak_memory_mb,
)
from sleuth.graphs.calibrate import CalibrateConfig, calibrate
from sleuth.graphs.detect import DetectReport, VideoDetectConfig, detect_video
from sleuth.graphs.runtime import Runtime
from sleuth.memory.scenes import SceneProfile, SceneStore
from sleuth.reports import write_html, write_json
from sleuth.tools.captioners.precomputed import PrecomputedCaptioner
from sleuth.tools.frames import FrameReader
from sleuth.tools.smoothing import anomalous_spans
from sleuth.tools.toolset import open_tools

SUITES = ("ped2", "ped2-cogvlm", "robbery", "vtest")
Log = Callable[[str], None]
Progress = Callable[[str, int, int], None]


def _progress(log: Log) -> Progress:
    last: dict[str, float] = {}

    def update(stage: str, done: int, total: int) -> None:
        if done == total or time.perf_counter() - last.get(stage, 0.0) > 30:
            last[stage] = time.perf_counter()
            log(f"  {stage} {done}/{total}")

    return update


class Bench:
    """One benchmark run: settings with a private state folder, and the runtime the graphs share."""

    def __init__(self, settings: Settings, out: Path, config: VideoDetectConfig, calibration: CalibrateConfig,
                 log: Log, *, keep: bool = False) -> None:
        self.keep = keep
        self.settings = settings.model_copy(update={"data_dir": out / "state"})
        self.out, self.config, self.calibration, self.log = out, config, calibration, log
        self.runtime = Runtime.from_settings(self.settings)
        self.llm_calls_start = 0

    def calls(self) -> int:
        return len(self.runtime.gateway.usage.records)

    def calibrate(self, sources: list[Path], scene: str, **overrides: Any) -> dict[str, Any]:
        profile = SceneStore(self.settings).load(scene)
        if self.keep and profile is not None:
            self.log(f"  {scene}: reusing the calibration of an earlier run")
            rules = self.runtime.memory.latest(scene)
            return {"reused": True, "llm_calls": 0, "frames": profile.frames,
                    "rule_floor": round(profile.rule_floor, 4),
                    "anomaly_rules": [r.text for r in rules.anomaly] if rules else [],
                    "normal_rules": [r.text for r in rules.normal] if rules else [],
                    "proposer_threshold": profile.proposer_threshold}
        started, calls = time.perf_counter(), self.calls()
        config = self.calibration.model_copy(update=overrides)
        result = calibrate(sources, scene=scene, config=config, runtime=self.runtime, progress=_progress(self.log))
        self.log(f"  calibrated {scene}: {len(result.anomaly_rules)} anomaly rules, floor {result.rule_floor:.3f}, "
                 f"{time.perf_counter() - started:.0f} s")
        return {"seconds": round(time.perf_counter() - started, 1), "llm_calls": self.calls() - calls,
                "frames": result.frames, "anomaly_rules": result.anomaly_rules, "normal_rules": result.normal_rules,
                "rule_floor": round(result.rule_floor, 4), "proposer_threshold": result.proposer_threshold}

    def detect(self, source: Path, scene: str, name: str, **overrides: Any) -> DetectReport:
        config = self.config.model_copy(update=overrides)
        report = detect_video(source, scene=scene, config=config, runtime=self.runtime, progress=_progress(self.log))
        write_json(report, self.out / "reports" / f"{name}.json")
        write_html(report, self.out / "reports" / f"{name}.html")
        return report


def _summary(reports: list[DetectReport], labels: list[np.ndarray] | None, calibration: dict[str, Any],
             seconds: float) -> dict[str, Any]:
    frames = sum(r.cost.frames for r in reports)
    detect_calls = sum(r.cost.llm_calls for r in reports)
    detect_seconds = sum(r.cost.seconds for r in reports)
    stages: dict[str, float] = {}
    for report in reports:
        for stage, value in report.cost.seconds_by_stage.items():
            stages[stage] = round(stages.get(stage, 0.0) + value, 1)
    result: dict[str, Any] = {
        "test_frames": frames, "gated_frames": sum(r.cost.gated_frames for r in reports),
        "gated_share": round(sum(r.cost.gated_frames for r in reports) / max(frames, 1), 3),
        "events": sum(len(r.events) for r in reports),
        "detect_llm_calls": detect_calls, "detect_llm_calls_per_frame": round(detect_calls / max(frames, 1), 4),
        "calibration_llm_calls": calibration.get("llm_calls", 0),
        "llm_calls_per_frame": round((detect_calls + calibration.get("llm_calls", 0)) / max(frames, 1), 4),
        "detect_seconds": round(detect_seconds, 1), "seconds_per_frame": round(detect_seconds / max(frames, 1), 4),
        "seconds_by_stage": stages, "calibration": calibration, "wall_seconds": round(seconds, 1),
        "dismissed_events": sum(len(r.dismissed) for r in reports),
        "judged_events": sum(e.anomaly_probability is not None for r in reports for e in [*r.events, *r.dismissed]),
    }
    if labels is not None:
        y = np.concatenate(labels)
        prior = np.concatenate([[f.score if f.prior_score is None else f.prior_score for f in r.frames]
                                for r in reports])
        result["validation"] = {
            "with": event_scores(reports, labels, dismissed=False),
            "without": {**event_scores(reports, labels, dismissed=True),
                        "frame_auc": round(100 * roc_auc_score(y, prior), 2)}}
        scores = np.concatenate([[f.score for f in r.frames] for r in reports])
        proposer = np.concatenate([[f.proposer for f in r.frames] for r in reports])
        per_video = {r.video: round(100 * roc_auc_score(lab, [f.score for f in r.frames]), 2)
                     for r, lab in zip(reports, labels, strict=True) if 0 < lab.sum() < len(lab)}
        anomalous_gated = np.concatenate([[f.gated for f in r.frames] for r in reports])[y == 1]
        result.update({
            "frame_auc": round(100 * roc_auc_score(y, scores), 2),
            "frame_ap": round(100 * average_precision_score(y, scores), 2),
            "proposer_only_auc": round(100 * roc_auc_score(y, proposer), 2),
            "mean_video_auc": round(float(np.mean(list(per_video.values()))), 2) if per_video else None,
            "video_auc": per_video, "anomalous_frames_gated": round(float(anomalous_gated.mean()), 3),
        })
    return result


def event_scores(reports: list[DetectReport], labels: list[np.ndarray], *, dismissed: bool) -> dict[str, Any]:
    """Event precision (events that overlap an annotated anomalous frame) and recall (annotated
    anomalous spans that an event overlaps), counting the LLM's dismissed candidates or not."""
    hits = events = found = spans = 0
    for report, y in zip(reports, labels, strict=True):
        position = {frame.index: k for k, frame in enumerate(report.frames)}
        reported = [*report.events, *(report.dismissed if dismissed else [])]
        ranges = [(position[e.start_frame], position[e.end_frame]) for e in reported]
        events += len(ranges)
        hits += sum(bool(np.asarray(y[a: b + 1]).any()) for a, b in ranges)
        for first, last in anomalous_spans(np.asarray(y, dtype=bool).tolist()):
            spans += 1
            found += any(a <= last and b >= first for a, b in ranges)
    return {"events": events, "true_events": hits, "event_precision": round(hits / events, 3) if events else None,
            "annotated_spans": spans, "spans_found": found,
            "event_recall": round(found / spans, 3) if spans else None}


def run_ped2(bench: Bench, data: Path) -> dict[str, Any]:
    root = _require(data / "ped2", "UCSD Ped2")
    labels = _ped2_labels(_require(root / "testing/labels.csv", "Ped2 test labels"))
    started = time.perf_counter()
    bench.log("ped2: calibrating on the training frames")
    calibration = bench.calibrate([root / "training/frames"], "ped2")
    reports, truth = [], []
    for clip in _frame_clips(root / "testing/frames"):
        bench.log(f"ped2: detect {clip.name}")
        report = bench.detect(clip, "ped2", f"ped2_{clip.name}")
        y = np.asarray(labels.get(clip.name, []))
        if len(y) != len(report.frames):
            raise BenchmarkDataError(f"video {clip.name}: {len(report.frames)} frames but {len(y)} labels",
                                     hint="check testing/labels.csv")
        reports.append(report)
        truth.append(y)
    return {"suite": "ped2", **_summary(reports, truth, calibration, time.perf_counter() - started)}


def run_ped2_cogvlm(bench: Bench, data: Path) -> dict[str, Any]:
    root = _require(data / "ped2", "UCSD Ped2")
    captions_root = _require(data / "anomalyruler/ped2", "the CogVLM captions of Ped2")
    labels = _ped2_labels(_require(root / "testing/labels.csv", "Ped2 test labels"))
    started = time.perf_counter()
    store = bench.runtime.memory
    source = bench.settings.data_dir / "proposers" / "ped2.pt"
    if not source.is_file():
        bench.log("ped2-cogvlm: calibrating the ped2 proposer first")
        bench.calibrate([root / "training/frames"], "ped2", induce=False)
    target = bench.settings.data_dir / "proposers" / "ped2-cogvlm.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    rules = RuleSet.parse((captions_root / "rules.txt").read_text(), scene="ped2-cogvlm", source="file")
    store.save(rules, note="AnomalyRuler authors' Ped2 rules")
    dataset = load_captions(captions_root)
    SceneStore(bench.settings).save(SceneProfile(scene="ped2-cogvlm", captioner="cogvlm (precomputed)",
                                                 rules_version=store.latest_version("ped2-cogvlm")))
    captions = {video.id: video.captions for video in dataset.videos}
    reports, truth = [], []
    default_tools = bench.runtime.tools
    try:
        for clip in _frame_clips(root / "testing/frames"):
            index = {frame.index: text for frame, text in zip(FrameReader(clip), captions[clip.name], strict=False)}
            bench.runtime.tools = open_tools(bench.settings, embedder=bench.runtime.embedder,
                                             captioner=PrecomputedCaptioner(index, name="cogvlm-captions"))
            bench.log(f"ped2-cogvlm: detect {clip.name}")
            reports.append(bench.detect(clip, "ped2-cogvlm", f"ped2_cogvlm_{clip.name}"))
            truth.append(np.asarray(labels[clip.name]))
    finally:
        bench.runtime.tools = default_tools
    return {"suite": "ped2-cogvlm", **_summary(reports, truth, {"rules": "anomalyruler/ped2/rules.txt",
                                                                "llm_calls": 0}, time.perf_counter() - started)}


def run_robbery(bench: Bench, data: Path) -> dict[str, Any]:
    video = _require(data / ROBBERY["file"], "the UCF-Crime Robbery102 clip")
    stop = int(ROBBERY["train_stop"])  # type: ignore[call-overload]
    first, last = ROBBERY["anomalous"]  # type: ignore[misc]
    started = time.perf_counter()
    bench.log(f"robbery: calibrating on frames 0-{stop - 1}")
    calibration = bench.calibrate([video], "robbery", stop=stop)
    report = bench.detect(video, "robbery", "robbery", start=stop)
    y = np.asarray([int(first <= f.index <= last) for f in report.frames])
    result = {"suite": "robbery", **_summary([report], [y], calibration, time.perf_counter() - started)}
    result["annotated_span"] = [first, last]
    result["event_spans"] = [[e.start_frame, e.end_frame] for e in report.events]
    result["events_overlapping_annotation"] = sum(e.end_frame >= first and e.start_frame <= last
                                                  for e in report.events)
    return result


def run_vtest(bench: Bench, data: Path) -> dict[str, Any]:
    video = _require(data / VTEST["file"], "vtest.avi")
    reader = FrameReader(video)
    half = (reader.info.frame_count or len(reader.read())) // 2
    started = time.perf_counter()
    bench.log(f"vtest: calibrating on frames 0-{half - 1}")
    calibration = bench.calibrate([video], "vtest", stop=half)
    report = bench.detect(video, "vtest", "vtest", start=half)
    minutes = (report.frames[-1].time_s - report.frames[0].time_s + 1 / reader.info.fps) / 60
    result = {"suite": "vtest", **_summary([report], None, calibration, time.perf_counter() - started)}
    result.update({"minutes": round(minutes, 2), "false_alarms_per_minute": round(len(report.events) / minutes, 2),
                   "false_alarms_per_minute_without_validation": round(
                       (len(report.events) + len(report.dismissed)) / minutes, 2),
                   "false_alarm_frames": sum(f.anomalous for f in report.frames)})
    return result


RUNNERS = {"ped2": run_ped2, "ped2-cogvlm": run_ped2_cogvlm, "robbery": run_robbery, "vtest": run_vtest}


def run_suites(suites: list[str], data: Path, out: Path, settings: Settings, log: Log, *,
               config: VideoDetectConfig | None = None, calibration: CalibrateConfig | None = None,
               fresh: bool = True) -> list[dict[str, Any]]:
    unknown = [s for s in suites if s not in RUNNERS]
    if unknown:
        raise BenchmarkDataError(f"unknown suite '{unknown[0]}'", hint=f"choose from {', '.join(SUITES)}")
    if fresh and (out / "state").exists():
        shutil.rmtree(out / "state")  # every run calibrates from scratch
    (out / "state" / "checkpoints.sqlite").unlink(missing_ok=True)  # and detects from scratch, always
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(settings, out, config or VideoDetectConfig(), calibration or CalibrateConfig(), log, keep=not fresh)
    results = []
    try:
        for suite in suites:
            result = RUNNERS[suite](bench, data)
            result["peak_memory_mb"] = round(peak_memory_mb())
            result["models"] = {"llm": bench.settings.llm.model, "embedder": bench.settings.embedder.model,
                                "captioner": bench.settings.tools.captioner.kind}
            log(f"{suite}: " + ", ".join(f"{k}={v}" for k, v in result.items() if k in (
                "frame_auc", "proposer_only_auc", "mean_video_auc", "false_alarms_per_minute", "llm_calls_per_frame",
                "seconds_per_frame", "gated_share", "events", "dismissed_events", "validation", "wall_seconds")))
            results.append(result)
            (out / "pipeline_bench.json").write_text(json.dumps(results, indent=1))
    finally:
        bench.runtime.close()
    return results
