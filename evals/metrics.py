"""Frame-level detection metrics: ROC AUC and average precision, overall and per video.

The headline number of the video anomaly detection literature is the frame-level ROC AUC over
all frames of all test videos concatenated (AnomalyRuler, HyCoVAD and most others report it this
way). Per-video AUCs are reported too; a video whose frames are all normal or all anomalous has
no ROC curve, so its AUC and AP are ``None`` and it is left out of the per-video means.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field


class VideoMetrics(BaseModel):
    video: str
    frames: int
    anomalous_frames: int
    auc: float | None = Field(description="Frame ROC AUC; None when the video has one class only.")
    ap: float | None = Field(description="Average precision; None when the video has one class only.")
    flagged_frames: int | None = Field(default=None, description="Frames decided anomalous.")


class Metrics(BaseModel):
    frames: int
    anomalous_frames: int
    auc: float | None = Field(description="Frame ROC AUC over all frames of all videos concatenated.")
    ap: float | None = Field(description="Average precision over all frames concatenated.")
    mean_video_auc: float | None = Field(description="Mean of the defined per-video AUCs.")
    mean_video_ap: float | None = None
    videos_with_auc: int = 0
    precision: float | None = Field(default=None, description="Of the decisions (frames flagged anomalous).")
    recall: float | None = None
    f1: float | None = None
    accuracy: float | None = None
    per_video: list[VideoMetrics] = Field(default_factory=list)


ArrayLike = Sequence[int] | Sequence[float] | np.ndarray


def _arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return y, s


def _two_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def frame_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """ROC AUC of ``scores`` against 0/1 ``labels``; None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, s = _arrays(labels, scores)
    return float(roc_auc_score(y, s)) if _two_classes(y) else None


def frame_ap(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Average precision (anomalous = positive); None when only one class is present."""
    from sklearn.metrics import average_precision_score

    y, s = _arrays(labels, scores)
    return float(average_precision_score(y, s)) if _two_classes(y) else None


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(defined)) if defined else None


def _decision_metrics(labels: np.ndarray, decisions: np.ndarray) -> dict[str, float | None]:
    tp = int(np.sum((decisions == 1) & (labels == 1)))
    fp = int(np.sum((decisions == 1) & (labels == 0)))
    fn = int(np.sum((decisions == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall else None)
    accuracy = float(np.mean(decisions == labels)) if labels.size else None
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def evaluate(labels: Mapping[str, Sequence[int]], scores: Mapping[str, Sequence[float]],
             decisions: Mapping[str, Sequence[bool | int]] | None = None) -> Metrics:
    """Metrics over videos (same keys in ``labels`` and ``scores``, concatenated in that order)."""
    missing = set(labels) ^ set(scores)
    if missing:
        raise ValueError(f"labels and scores differ in videos: {sorted(missing)}")
    per_video = []
    for video, video_labels in labels.items():
        y, s = _arrays(video_labels, scores[video])
        flagged = int(np.sum(np.asarray(decisions[video], dtype=int))) if decisions is not None else None
        per_video.append(VideoMetrics(video=video, frames=int(y.size), anomalous_frames=int(y.sum()),
                                      auc=frame_auc(y, s), ap=frame_ap(y, s), flagged_frames=flagged))
    all_labels = [label for video in labels for label in labels[video]]
    all_scores = [score for video in labels for score in scores[video]]
    extra: dict[str, float | None] = {}
    if decisions is not None:
        all_decisions = np.asarray([int(d) for video in labels for d in decisions[video]], dtype=int)
        extra = _decision_metrics(np.asarray(all_labels, dtype=int), all_decisions)
    aucs = [video.auc for video in per_video]
    return Metrics(frames=len(all_labels), anomalous_frames=int(sum(all_labels)),
                   auc=frame_auc(all_labels, all_scores), ap=frame_ap(all_labels, all_scores),
                   mean_video_auc=_mean(aucs), mean_video_ap=_mean([video.ap for video in per_video]),
                   videos_with_auc=sum(auc is not None for auc in aucs), per_video=per_video, **extra)


# -- ranking metrics (search) -------------------------------------------------------------------

def recall_at_k(ranked: Sequence[str], positives: Collection[str], k: int) -> float | None:
    """1.0 when a positive is among the first ``k`` of ``ranked``, else 0.0; None without positives.

    The text-based person search convention (CUHK-PEDES, AnomalyLMM): Recall@K is the share of
    queries with at least one correct item in the top K, so per query it is a hit (1) or a miss (0).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if not positives:
        return None
    return 1.0 if any(item in positives for item in ranked[:k]) else 0.0


def average_precision(ranked: Sequence[str], positives: Collection[str]) -> float | None:
    """Average precision of a ranked list (best first) against the set of all positive ids.

    AP = (sum of precision@i over the ranks i that hold a positive) / (number of positives), where
    the denominator counts every positive in the gallery, so positives the list does not contain
    count as missed (a top-10 list can score at most 10 / positives). None without positives.
    """
    if not positives:
        return None
    hits, total = 0, 0.0
    seen: set[str] = set()
    for rank, item in enumerate(ranked, start=1):
        if item in positives and item not in seen:
            seen.add(item)
            hits += 1
            total += hits / rank
    return total / len(positives)


def mean_over_queries(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values (a query with no positive in the gallery has none)."""
    return _mean(list(values))
