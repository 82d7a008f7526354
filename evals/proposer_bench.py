"""Proposer benchmarks: frame AUC on labelled data, false alarms on normal footage, speed, memory.

Three suites read from one data folder (``../shared/data`` or any folder in the same layout):

- ``ped2``: ``<data>/ped2``: train on ``training/frames/*`` (normal only), score every clip of
  ``testing/frames/*``, labels from ``testing/labels.csv``. Frame ROC AUC over all frames
  concatenated (as scored, and with each video's scores min-max normalised first, the protocol
  of MemAE and MNAD's evaluation code) and the mean of per-video AUCs (videos with both classes).
- ``robbery``: ``<data>/videos/ucf_Robbery102_frames.mp4``: train on frames 0-899 (normal), score
  the rest; anomalous frames 1080-1560 (UCF-Crime annotation).
- ``vtest``: ``<data>/videos/vtest.avi`` (normal only): train on the first half, score the second;
  alarms at the calibrated threshold: frames over it and alarm spans per minute.

Each suite reports training time, scoring frames per second and the process's peak memory;
``vtest`` also times the embedded structured captioner (768x576 frames).
"""

from __future__ import annotations

import csv
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sleuth.errors import SleuthError
from sleuth.evals.plots import plot_video
from sleuth.tools.frames import Frame, FrameReader, image_files
from sleuth.tools.proposer import Proposer, ProposerConfig
from sleuth.tools.smoothing import anomalous_spans

SUITES = ("ped2", "robbery", "vtest")
ROBBERY = {"file": "videos/ucf_Robbery102_frames.mp4", "train_stop": 900, "anomalous": (1080, 1560)}
VTEST = {"file": "videos/vtest.avi"}
Log = Callable[[str], None]


class BenchmarkDataError(SleuthError):
    """A benchmark's data is missing or not in the expected layout."""


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise BenchmarkDataError(f"{what} not found at {path}", hint="pass --data with the shared data folder")
    return path


def _frame_clips(folder: Path) -> list[Path]:
    clips = sorted(p for p in folder.iterdir() if p.is_dir() and image_files(p))
    if not clips:
        raise BenchmarkDataError(f"no frame folders in {folder}", hint="expected <split>/frames/<video>/NNN.jpg")
    return clips


def _ped2_labels(path: Path) -> dict[str, list[int]]:
    labels: dict[str, list[int]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            video = Path(row["image_path"]).parent.name
            labels.setdefault(video, []).append(int(row["label"]))
    return labels


def _train(clips: list[list[Frame]], config: ProposerConfig, log: Log) -> tuple[Proposer, dict[str, Any]]:
    proposer = Proposer(config)
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "train" and (time.perf_counter() - last[0] > 30 or done == total):
            last[0] = time.perf_counter()
            log(f"  training step {done}/{total}")

    report = proposer.fit(clips, progress=progress)
    return proposer, {"train_frames": report.frames, "train_objects": report.objects, "train_seconds":
                      round(report.seconds, 1), "epochs": report.epochs, "task_weights": report.task_weights,
                      "final_losses": report.losses[-1] if report.losses else {}, "threshold": report.threshold}


def _score(proposer: Proposer, frames: list[Frame]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = proposer.score(frames)
    return result, len(frames) / (time.perf_counter() - started)


def stream_ablation(scored: list[Any], truth: list[np.ndarray], config: ProposerConfig) -> dict[str, float]:
    """Frame AUC of each stream alone and of the default sum without each stream (same smoothing):
    what each stream contributes. Empty for checkpoints without attribute streams."""
    from sleuth.tools.proposer.proposer import _gaussian_smooth

    streams = sorted(set.intersection(*(set(s.streams) for s in scored))) if scored else []
    if len(streams) < 2:
        return {}
    y = np.concatenate(truth)
    weights = config.stream_weights

    def auc(chosen: list[str]) -> float:
        total = [sum(weights.get(name, 0.0) * s.streams[name] for name in chosen) for s in scored]
        smoothed = np.concatenate([_gaussian_smooth(np.asarray(t, float), config.smooth_frames) for t in total])
        return round(100 * roc_auc_score(y, smoothed), 2)

    result = {f"{name} alone": auc([name]) for name in streams}
    result.update({f"without {name}": auc([other for other in streams if other != name]) for name in streams})
    return result


def run_ped2(data: Path, config: ProposerConfig, out: Path, log: Log) -> dict[str, Any]:
    root = _require(data / "ped2", "UCSD Ped2")
    labels = _ped2_labels(_require(root / "testing/labels.csv", "Ped2 test labels"))
    train = [FrameReader(clip).read() for clip in _frame_clips(root / "training/frames")]
    log(f"ped2: training on {len(train)} clips, {sum(map(len, train))} frames")
    proposer, result = _train(train, config, log)
    scores, raw, truth, per_video, rates, scored_all = [], [], [], {}, [], []
    for clip in _frame_clips(root / "testing/frames"):
        frames = FrameReader(clip).read()
        y = np.asarray(labels.get(clip.name, []))
        if len(y) != len(frames):
            raise BenchmarkDataError(f"video {clip.name}: {len(frames)} frames but {len(y)} labels",
                                     hint="check testing/labels.csv")
        scored, fps = _score(proposer, frames)
        rates.append(fps)
        scored_all.append(scored)
        scores.append(scored.frame_scores)
        raw.append(scored.raw_scores)
        truth.append(y)
        if 0 < y.sum() < len(y):
            per_video[clip.name] = round(100 * roc_auc_score(y, scored.frame_scores), 2)
        plot_video(out / f"ped2_{clip.name}.png", video=clip.name, scores=list(scored.frame_scores), labels=list(y),
                   threshold=scored.threshold, raw_scores=list(scored.raw_scores), title=f"Ped2 test {clip.name}")
    y_all, s_all = np.concatenate(truth), np.concatenate(scores)
    # MemAE/MNAD's protocol: each test video's scores min-max normalised before concatenation
    normalised = np.concatenate([(s - s.min()) / (s.max() - s.min() + 1e-12) for s in scores])
    result.update({
        "suite": "ped2", "test_frames": int(len(y_all)),
        "frame_auc": round(100 * roc_auc_score(y_all, s_all), 2),
        "frame_auc_unsmoothed": round(100 * roc_auc_score(y_all, np.concatenate(raw)), 2),
        "frame_auc_per_video_normalised": round(100 * roc_auc_score(y_all, normalised), 2),
        "frame_ap": round(100 * average_precision_score(y_all, s_all), 2),
        "mean_video_auc": round(float(np.mean(list(per_video.values()))), 2) if per_video else None,
        "video_auc": per_video, "streams": stream_ablation(scored_all, truth, proposer.config),
        "score_fps": round(float(np.median(rates)), 1),
        "peak_memory_mb": round(peak_memory_mb()),
    })
    return result


def run_robbery(data: Path, config: ProposerConfig, out: Path, log: Log) -> dict[str, Any]:
    video = _require(data / ROBBERY["file"], "the UCF-Crime Robbery102 clip")
    stop = int(ROBBERY["train_stop"])  # type: ignore[call-overload]
    first, last = ROBBERY["anomalous"]  # type: ignore[misc]
    train = FrameReader(video, stop=stop).read()
    test = FrameReader(video, start=stop).read()
    log(f"robbery: training on frames 0-{stop - 1}, scoring {len(test)} frames")
    proposer, result = _train([train], config, log)
    scored, fps = _score(proposer, test)
    y = np.asarray([int(first <= frame.index <= last) for frame in test])
    flags = scored.frame_scores >= (scored.threshold or np.inf)
    spans = [(test[a].index, test[b].index) for a, b in anomalous_spans(flags.tolist())]
    plot_video(out / "robbery.png", video="Robbery102", scores=list(scored.frame_scores), labels=list(y),
               threshold=scored.threshold, raw_scores=list(scored.raw_scores), title="UCF-Crime Robbery102")
    result.update({
        "suite": "robbery", "test_frames": len(test),
        "frame_auc": round(100 * roc_auc_score(y, scored.frame_scores), 2),
        "frame_ap": round(100 * average_precision_score(y, scored.frame_scores), 2),
        "alarm_spans": spans, "annotated_span": [first, last],
        "streams": stream_ablation([scored], [y], proposer.config),
        "recall_at_threshold": round(float(flags[y == 1].mean()), 3),
        "false_positive_rate": round(float(flags[y == 0].mean()), 3),
        "score_fps": round(fps, 1), "peak_memory_mb": round(peak_memory_mb()),
    })
    return result


def run_vtest(data: Path, config: ProposerConfig, out: Path, log: Log) -> dict[str, Any]:
    video = _require(data / VTEST["file"], "vtest.avi")
    reader = FrameReader(video)
    total = reader.info.frame_count or len(reader.read())
    half = total // 2
    train = FrameReader(video, stop=half).read()
    test = FrameReader(video, start=half).read()
    log(f"vtest: training on frames 0-{half - 1}, scoring {len(test)} normal frames")
    proposer, result = _train([train], config, log)
    scored, fps = _score(proposer, test)
    flags = scored.frame_scores >= (scored.threshold or np.inf)
    spans = anomalous_spans(flags.tolist())
    minutes = (test[-1].time_s - test[0].time_s + 1 / reader.info.fps) / 60
    plot_video(out / "vtest.png", video="vtest", scores=list(scored.frame_scores), threshold=scored.threshold,
               raw_scores=list(scored.raw_scores), title="vtest.avi (normal), second half")
    from sleuth.tools.captioners.structured import StructuredDescriber

    started = time.perf_counter()
    StructuredDescriber().caption(test)
    caption_fps = len(test) / (time.perf_counter() - started)
    result.update({
        "suite": "vtest", "test_frames": len(test), "minutes": round(minutes, 2),
        "structured_captioner_fps": round(caption_fps, 1),
        "false_alarm_frames": int(flags.sum()), "false_alarm_frame_rate": round(float(flags.mean()), 4),
        "false_alarms_per_minute": round(len(spans) / minutes, 2), "alarm_spans": len(spans),
        "score_fps": round(fps, 1), "peak_memory_mb": round(peak_memory_mb()),
    })
    return result


RUNNERS = {"ped2": run_ped2, "robbery": run_robbery, "vtest": run_vtest}


def run_suites(suites: list[str], data: Path, out: Path, config: ProposerConfig, log: Log) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for suite in suites:
        if suite not in RUNNERS:
            raise BenchmarkDataError(f"unknown suite '{suite}'", hint=f"choose from {', '.join(SUITES)}")
        started = time.perf_counter()
        result = RUNNERS[suite](data, config, out, log)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        log(f"{suite}: " + ", ".join(f"{k}={v}" for k, v in result.items()
                                     if k in ("frame_auc", "mean_video_auc", "false_alarms_per_minute",
                                              "train_seconds", "score_fps", "peak_memory_mb")))
        results.append(result)
    return results
