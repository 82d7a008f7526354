"""AnomalyRuler-base: the keyword-only reference (no LLM), and the peer's temporal smoothing.

AnomalyRuler's "base" variant flags a frame when its caption contains a keyword of an anomaly rule
and then smooths the 0/1 flags over time (``majority_smooth.py`` in the authors' code). The
keywords and the matching are :mod:`sleuth.agents.keywords` (the same signal the detect_captions
graph fuses with the embedding margin). A frame scores 1 when its caption names any keyword, else
0; then the smoothing of :class:`~sleuth.graphs.detect_captions.DetectConfig` turns the flags into
scores in [0, 1] (``anomalyruler``: the authors' EMA alpha 0.33, one-frame majority at the
video's mean, second EMA at that mean). It is a reference number, not a detector to use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sleuth.agents.keywords import KeywordMatcher, anomaly_keywords, match, stem, stems
from sleuth.agents.schemas import RuleSet
from sleuth.graphs.detect_captions.configuration import DetectConfig
from sleuth.graphs.detect_captions.state import DetectResult, Event, FrameResult
from sleuth.tools.smoothing import anomalous_spans
from sleuth.tools.smoothing import smooth as graph_smooth

__all__ = ["anomaly_keywords", "detect_keywords", "events", "match", "smooth", "stem", "stems"]


def smooth(raw: Sequence[float], config: DetectConfig) -> tuple[np.ndarray, np.ndarray]:
    """Scores in [0, 1] and decisions, smoothed exactly like the detect graph's scores."""
    scores, decisions = graph_smooth(raw, method=config.smoothing, alpha=config.ema_alpha,
                                     window=config.vote_window, threshold=config.threshold)
    return np.asarray(scores, dtype=float), np.asarray(decisions, dtype=bool)


def events(frames: Sequence[FrameResult]) -> list[Event]:
    """Contiguous runs of anomalous frames."""
    spans: list[Event] = []
    for first, last in anomalous_spans([frame.anomalous for frame in frames]):
        run = frames[first:last + 1]
        peak = max(run, key=lambda f: f.score)
        rules = sorted({rule for f in run for rule in f.broken_rules})
        spans.append(Event(start=run[0].index, end=run[-1].index, peak_frame=peak.index,
                           peak_score=peak.score, broken_rules=rules))
    return spans


def detect_keywords(captions: Sequence[str], rules: RuleSet, *, video: str = "video", scene: str = "default",
                    config: DetectConfig | None = None, keywords: Sequence[str] | None = None) -> DetectResult:
    """Score every caption of one video with the keyword-only reference."""
    config = config or DetectConfig(smoothing="anomalyruler")
    matcher = KeywordMatcher(rules, keywords)
    hits = [matcher.match(caption) for caption in captions]
    raw = [1.0 if found else 0.0 for found in hits]
    scores, decisions = smooth(raw, config)
    frames = [FrameResult(index=index, score=float(np.clip(scores[index], 0, 1)), raw_score=raw[index],
                          anomalous=bool(decisions[index]), source="cheap", broken_rules=matcher.rules_of(found),
                          evidence=", ".join(found) or None)
              for index, found in enumerate(hits)]
    return DetectResult(video=video, scene=scene, rules_version=rules.version, frames=frames,
                        events=events(frames))
