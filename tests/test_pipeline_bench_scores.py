"""The pipeline benchmark scores events and frames with and without the LLM's validation from one run."""

from __future__ import annotations

import numpy as np
from sleuth.evals.pipeline_bench import _summary
from sleuth.graphs.detect import DetectReport, FrameScore, VideoEvent


def event(first: int, last: int, verdict: str) -> VideoEvent:
    return VideoEvent(id=1, start_frame=first, end_frame=last, start_s=first / 10, end_s=last / 10, peak_frame=first,
                      peak_s=first / 10, peak_score=0.7, verdict=verdict, anomaly_probability=0.3)


def test_dismissed_candidates_count_only_on_the_without_side() -> None:
    scores = [0.1, 0.2, 0.6, 0.7, 0.2, 0.1, 0.3, 0.3, 0.1, 0.1]
    frames = [FrameScore(index=i, time_s=i / 10, score=s, proposer=s, gated=True, anomalous=s > 0.5,
                         prior_score=0.9 if i in (6, 7) else None) for i, s in enumerate(scores)]
    report = DetectReport(video="v", scene="s", threshold=0.5, gate_threshold=0.0, frames=frames,
                          events=[event(2, 3, "confirmed")], dismissed=[event(6, 7, "dismissed")])
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])  # two annotated spans: 2-3 and 7
    result = _summary([report], [labels], {"llm_calls": 0}, 1.0)
    assert result["dismissed_events"] == 1 and result["judged_events"] == 2
    with_validation, without = result["validation"]["with"], result["validation"]["without"]
    assert (with_validation["events"], with_validation["spans_found"], with_validation["event_recall"]) == (1, 1, 0.5)
    assert (without["events"], without["spans_found"], without["event_recall"]) == (2, 2, 1.0)
    # without validation the dismissed frames 6 and 7 keep their earlier 0.9, and frame 6 is normal
    assert without["frame_auc"] == 88.1 and result["frame_auc"] == 97.62
