"""Audit the explanations in detect reports: are they true to the evidence and to the scores?

    python -m sleuth.evals.explanations results/demo/report.json [more.json ...]

For each report (``sleuth detect --explain --json``) it counts what the model wrote (sentences
kept and removed, by reason: the raw model's faithfulness) and checks what a person reads:

- every kept sentence passes the faithfulness check again (times, frames, colours, directions,
  objects and actions in the evidence; no contradiction of the verdict; plain English);
- verdicts agree with the scores: the video is anomalous exactly when there are events, a clip
  only when it overlaps an event, every event is anomalous;
- no sentence is repeated within a judgment.

It prints one line per report and a total, and exits 1 when any check fails.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from sleuth.agents.explain import Observation, Verdict, evidence_of
from sleuth.agents.faithfulness import sentences, unsupported
from sleuth.records import DetectReport


def _reason(removed: str) -> str:
    found = re.search(r"\[([^\]]*)\]$", removed)
    if not found:
        return "other"
    reason = found.group(1)
    for short in ("repeats", "cut off", "not plain English", "the task", "scores call", "cites", "names the"):
        if reason.startswith(short) or short in reason:
            return short
    return reason


def audit(report: DetectReport) -> tuple[dict[str, int], list[str]]:
    """Counts (kept, removed, removed by reason) and the failed checks of one report."""
    counts: Counter[str] = Counter()
    problems: list[str] = []
    explanation = report.explanation
    if explanation is None:
        return dict(counts), ["no explanation in the report (run detect with --explain)"]
    by_index = {frame.index: frame for frame in report.frames}
    judgments = [*explanation.clips, *explanation.events,
                 *([explanation.video_judgment] if explanation.video_judgment else [])]
    for judgment in judgments:
        observations = [Observation(index=i, time_s=by_index[i].time_s, score=by_index[i].score,
                                    # what the model read, else detect's caption of the frame
                                    caption=explanation.captions.get(str(i)) or by_index[i].caption)
                        for i in judgment.frames if i in by_index]
        evidence = evidence_of(observations, Verdict(judgment.anomalous, judgment.judgment), report.rules,
                               report.events, times=(judgment.start_s, judgment.end_s))
        name = f"{judgment.level} {judgment.start_s:.1f}-{judgment.end_s:.1f} s"
        kept = sentences(judgment.description) + sentences(judgment.analysis)
        counts["kept"] += len(kept)
        counts["removed"] += len(judgment.removed)
        for removed in judgment.removed:
            counts[f"removed: {_reason(removed)}"] += 1
        keys = [" ".join(re.findall(r"[a-z0-9]+", s.lower())) for s in kept]
        if len(set(keys)) < len(keys):
            problems.append(f"{name}: a sentence is repeated")
        for sentence in kept:
            if sentence.startswith(("At ", "Anomaly scores:", "Frames ")):
                continue  # built from the evidence itself (no model)
            reason = unsupported(sentence, evidence)
            if reason:
                problems.append(f"{name}: {sentence!r} {reason}")
        overlaps = any(e.start_s <= judgment.end_s and e.end_s >= judgment.start_s for e in report.events)
        if judgment.level == "video" and judgment.anomalous != bool(report.events):
            problems.append(f"{name}: verdict {judgment.anomalous} with {len(report.events)} event(s)")
        if judgment.level == "clip" and judgment.anomalous and not overlaps:
            problems.append(f"{name}: anomalous, but it overlaps no event")
        if judgment.level == "event" and not judgment.anomalous:
            problems.append(f"{name}: a detected event judged normal")
    return dict(counts), problems


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m sleuth.evals.explanations REPORT.json [...]", file=sys.stderr)
        return 2
    total: Counter[str] = Counter()
    failed = 0
    for path in argv:
        report = DetectReport.model_validate_json(Path(path).read_text())
        counts, problems = audit(report)
        total.update(counts)
        written = counts.get("kept", 0) + counts.get("removed", 0)
        print(f"{path}: {written} sentences written, {counts.get('kept', 0)} kept, "
              f"{counts.get('removed', 0)} removed; {len(problems)} failed checks")
        for problem in problems:
            print(f"  - {problem}")
        failed += len(problems)
    written = total.get("kept", 0) + total.get("removed", 0)
    reasons = ", ".join(f"{key[9:]} {value}" for key, value in sorted(total.items()) if key.startswith("removed: "))
    share = f"{100 * total.get('kept', 0) / written:.0f} %" if written else "n/a"
    print(f"total: {written} sentences, {share} kept ({reasons or 'none removed'}); {failed} failed checks")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
