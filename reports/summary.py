"""One sentence on what a detect run found, in the scores' own terms, for the report and the CLI alike.

It never contradicts the plot: when no event was reported it says whether any frame rose above the
threshold, and if some did, why they are not an event (no rule of the scene supported them, or they
did not hold long enough for the decision's smoothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sleuth.records import DetectReport

RULE_SUPPORT = 0.5  # a frame's own rule score needed to support an event (DetectConfig.min_rule_score)


def clock(seconds: float) -> str:
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def findings(report: DetectReport) -> str:
    """What the run found, e.g. 'no anomalous event in 398 frames (00:39.7-01:19.4); ...'."""
    frames = report.frames
    if not frames:
        return "no frames were read"
    span = f"{len(frames)} frames ({clock(frames[0].time_s)}-{clock(frames[-1].time_s)})"
    if report.events:
        top = max(report.events, key=lambda event: event.peak_score)
        dismissed = (f"; the LLM dismissed {len(report.dismissed)} other candidate(s)" if report.dismissed else "")
        return (f"{len(report.events)} anomalous event(s) in {span}; the strongest, #{top.id} at "
                f"{clock(top.start_s)}-{clock(top.end_s)}, peaks at {top.peak_score:.2f} "
                f"(threshold {report.threshold:.2f}){dismissed}")
    dismissed = (f"; the LLM dismissed {len(report.dismissed)} candidate event(s) against the scene's rules"
                 if report.dismissed else "")
    peak = max(frames, key=lambda frame: frame.score)
    above = [frame for frame in frames if frame.score > report.threshold]
    if not above:
        return (f"no anomalous event in {span}{dismissed}; the highest score, {peak.score:.2f} at "
                f"{clock(peak.time_s)}, stays under the threshold {report.threshold:.2f}")
    rules = [frame.rule_score for frame in above if frame.rule_score is not None]
    if rules and max(rules) < RULE_SUPPORT:
        why = (f"no rule of the scene supported them (highest rule score {max(rules):.2f}, "
               f"{RULE_SUPPORT:.2f} needed), so they are not reported as an event")
    else:
        why = "they did not hold long enough to form an event"
    return (f"no anomalous event in {span}{dismissed}; {len(above)} frame(s) scored above the threshold "
            f"{report.threshold:.2f} (highest {peak.score:.2f} at {clock(peak.time_s)}), but {why}")
