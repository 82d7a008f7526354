"""Explanation agents (Holmes-VAU's explanation stage): clip, event and video judgments.

Each judgment has two parts with different authors:

- **the verdict** (``anomalous`` and the one-sentence ``judgment``) comes from the scores and the
  detector's events, never from the model, so an explanation cannot call a stretch anomalous that
  the plot shows under the threshold (:func:`clip_verdict`, :func:`event_verdict`,
  :func:`video_verdict`);
- **the prose** (``description``, ``analysis``) is written by the model from the evidence (frame
  numbers, times, scores, captions or images, the scene's rules, the verdict), in plain English
  (a grammar-constrained character set for the local model), and every sentence is then checked
  against that evidence (:mod:`sleuth.agents.faithfulness`): repeated, contradicting or
  unsupported sentences are removed and listed in ``removed`` with the reason.

One structured model call per judgment, with a prompt from ``prompts/explain.*.toml``. When the
answer stays invalid after the gateway's retry, or nothing of it survives the check, the prose
is built from the captions and scores instead (and says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from sleuth import telemetry
from sleuth.agents.faithfulness import Evidence, clean
from sleuth.errors import StructuredOutputError
from sleuth.llm.gateway import Gateway, user_message
from sleuth.prompts import load_prompt
from sleuth.records import Judgment, VideoEvent

NO_RULES = "(none given: judge what would be unusual, dangerous or out of place for this camera's scene)"


def prose(max_length: int) -> str:
    """Plain English text, no quotes or backslashes: the grammar the local model writes prose in."""
    return rf"^[A-Za-z0-9 ,.;:'()%/+&?!-]{{1,{max_length}}}$"


class ExplainAnswer(BaseModel):
    """What the model writes: prose only; the verdict is not the model's to give.

    The patterns keep the text to plain English characters and each string short enough that a
    grammar-constrained small model closes it in time (valid JSON even when it starts repeating).
    """

    description: str = Field(min_length=1, max_length=400, pattern=prose(400),
                             description="What happens, in order, citing times (s) and frame numbers.")
    analysis: str = Field(min_length=1, max_length=300, pattern=prose(300),
                          description="Which rules of the scene it matches or breaks, consistent with the verdict.")


@dataclass(frozen=True)
class Observation:
    """One sampled frame as the model sees it."""

    index: int  # source frame index
    time_s: float
    score: float  # anomaly score in [0, 1]
    caption: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the scores say about a stretch of video: the decision and the sentence behind it (shown
    beside an anomalous/normal mark, so it does not repeat the word)."""

    anomalous: bool
    sentence: str

    def for_model(self) -> str:
        return f"{'ANOMALOUS' if self.anomalous else 'NORMAL'}. {self.sentence}"


def _peak(observations: Sequence[Observation]) -> Observation:
    return max(observations, key=lambda obs: obs.score)


Decision = Literal["event", "under", "above", "not_event"]


def decide(peak_score: float, threshold: float, overlapping: Sequence[VideoEvent],
           events: Sequence[VideoEvent] | None) -> Decision:
    """The one rule behind clip and video verdicts: an overlapping detected event makes a stretch
    anomalous; under ``threshold`` it is normal; above it, it is anomalous only when no detector
    ran (``events`` None), and otherwise not an event (detection found no rule supporting it)."""
    if overlapping:
        return "event"
    if peak_score < threshold:
        return "under"
    return "above" if events is None else "not_event"


def clip_verdict(observations: Sequence[Observation], *, threshold: float,
                 events: Sequence[VideoEvent] | None) -> Verdict:
    """Anomalous when the clip overlaps a detected event; without a detector's events (``None``),
    when a frame scores at or above ``threshold``."""
    if not observations:
        return Verdict(False, "No frames were judged.")
    peak = _peak(observations)
    start, end = observations[0].time_s, observations[-1].time_s
    overlapping = [e for e in events or [] if e.start_s <= end and e.end_s >= start]
    score, at = f"{peak.score:.2f}", f"{peak.time_s:.1f} s"
    match decide(peak.score, threshold, overlapping, events):
        case "event":
            names = ", ".join(f"event {e.id} ({e.start_s:.1f}-{e.end_s:.1f} s)" for e in overlapping)
            return Verdict(True, f"Overlaps {names}; highest score {score} at {at} (threshold {threshold:.2f}).")
        case "under":
            return Verdict(False, f"Highest score {score} at {at}, under the threshold {threshold:.2f}.")
        case "above":
            return Verdict(True, f"Score {score} at {at}, at or above the threshold {threshold:.2f}.")
        case _:
            return Verdict(False, f"Not an event: the score reaches {score} at {at}, above the threshold "
                                  f"{threshold:.2f}, but detection reported no event here (no rule of the scene "
                                  "supported it).")


def event_verdict(event: VideoEvent) -> Verdict:
    """A detected event is anomalous by definition; the sentence says why detection reported it."""
    rules = f"; rules it matched: {'; '.join(event.broken_rules)}" if event.broken_rules else ""
    return Verdict(True, f"Event {event.id}, {event.start_s:.1f}-{event.end_s:.1f} s: peak score "
                         f"{event.peak_score:.2f} at {event.peak_s:.1f} s{rules}.")


def video_verdict(*, start_s: float, end_s: float, peak_score: float, peak_s: float, threshold: float,
                  events: Sequence[VideoEvent] | None) -> Verdict:
    """Anomalous when detection reported an event; without a detector's events, when any frame
    reaches ``threshold`` (the same rule as a clip's, over the whole span)."""
    span = f"{start_s:.1f}-{end_s:.1f} s"
    score, at = f"{peak_score:.2f}", f"{peak_s:.1f} s"
    match decide(peak_score, threshold, events or [], events):
        case "event":
            listed = ", ".join(f"event {e.id} at {e.start_s:.1f}-{e.end_s:.1f} s" for e in events or [])
            return Verdict(True, f"{len(events or [])} event(s) in {span}: {listed}.")
        case "under":
            return Verdict(False, f"No frame in {span} reaches the threshold {threshold:.2f} "
                                  f"(highest score {score} at {at}).")
        case "above":
            return Verdict(True, f"Score {score} at {at}, at or above the threshold {threshold:.2f}.")
        case _:
            return Verdict(False, f"No anomalous event in {span}: the score reaches {score} at {at}, above the "
                                  f"threshold {threshold:.2f}, but no rule of the scene supported it.")


def render_observations(observations: Sequence[Observation], *, images: bool) -> str:
    lines = []
    for number, obs in enumerate(observations, 1):
        where = f"frame {obs.index} at {obs.time_s:.2f} s, anomaly score {obs.score:.2f}"
        if images:
            lines.append(f"- image {number}: {where}")
        else:
            lines.append(f"- {where}: {obs.caption or '(no caption)'}")
    return "\n".join(lines)


def render_rules(rules: Sequence[str] | None) -> str:
    return "\n".join(f"- {rule}" for rule in rules) if rules else NO_RULES


def _material(images: bool) -> str:
    return ("The attached images show these frames, in this order." if images else
            "An automatic captioner described each frame (positions, motion, speed relative to body size, colours).")


def _ask(prompt_id: str, values: Mapping[str, object], *, gateway: Gateway, role: str,
         images: Sequence[bytes], max_tokens: int) -> ExplainAnswer | StructuredOutputError:
    """The model's answer, or the error when it stayed invalid after the retry."""
    messages: list[dict[str, object]] = list(load_prompt(prompt_id).messages(**values))
    if images:
        messages[-1] = user_message(str(messages[-1]["content"]), list(images))
    try:
        return gateway.structured(messages, ExplainAnswer, role=role, max_tokens=max_tokens)
    except StructuredOutputError as exc:
        return exc


def evidence_of(observations: Sequence[Observation], verdict: Verdict, rules: Sequence[str] | None,
                events: Sequence[VideoEvent] = (), times: Sequence[float] = ()) -> Evidence:
    """What a judgment's prose may speak about: its frames, their captions, the rules, the verdict
    (and the events' bounds and peaks, and ``times`` the verdict states)."""
    return Evidence(frames=[obs.index for obs in observations], times=[obs.time_s for obs in observations] + [*times],
                    captions=[obs.caption for obs in observations if obs.caption], rules=list(rules or []),
                    anomalous=verdict.anomalous,
                    extra_times=[t for e in events for t in (e.start_s, e.end_s, e.peak_s)],
                    extra_frames=[f for e in events for f in (e.start_frame, e.end_frame, e.peak_frame)])


def written(level: str, observations: Sequence[Observation], verdict: Verdict, answer: ExplainAnswer |
            StructuredOutputError, evidence: Evidence, **fields: object) -> Judgment:
    """The judgment: the verdict from the scores, the model's prose as far as the evidence supports it."""
    start_s, end_s = _span(observations)
    frames = [obs.index for obs in observations]
    if isinstance(answer, StructuredOutputError):
        description, analysis = from_evidence(observations)
        return Judgment(level=level, start_s=start_s, end_s=end_s, frames=frames, anomalous=verdict.anomalous,
                        judgment=verdict.sentence, description=description,
                        analysis=f"{analysis} The model's answer was invalid ({answer.errors}).", **fields)
    (description, analysis), removed = clean([answer.description, answer.analysis], evidence)
    if not (description and analysis):  # nothing the model wrote survived for a field
        fallback_description, fallback_analysis = from_evidence(observations)
        description, analysis = description or fallback_description, analysis or fallback_analysis
    return Judgment(level=level, start_s=start_s, end_s=end_s, frames=frames, anomalous=verdict.anomalous,
                    judgment=verdict.sentence, description=description, analysis=analysis, removed=removed,
                    **fields)


def from_evidence(observations: Sequence[Observation]) -> tuple[str, str]:
    """Prose built from the captions and scores alone (no model)."""
    captions = " ".join(f"At {obs.time_s:.1f} s (frame {obs.index}): {obs.caption.rstrip('.')}."
                        for obs in observations if obs.caption)
    scores = ", ".join(f"frame {obs.index} at {obs.time_s:.1f} s: {obs.score:.2f}" for obs in observations)
    return (captions or f"Frames {', '.join(str(obs.index) for obs in observations)} (no captions).",
            f"Anomaly scores: {scores or 'none'}.")


def _span(observations: Sequence[Observation]) -> tuple[float, float]:
    return (observations[0].time_s, observations[-1].time_s) if observations else (0.0, 0.0)


def judge_clip(observations: Sequence[Observation], *, scene: str, rules: Sequence[str] | None, gateway: Gateway,
               threshold: float = 0.5, events: Sequence[VideoEvent] | None = None, role: str = "llm",
               images: Sequence[bytes] = (), max_tokens: int = 400) -> Judgment:
    """Clip level: a few consecutive sampled frames, one call. ``events``: the detector's events
    (None when no detector ran), which decide the verdict with the scores."""
    start_s, end_s = _span(observations)
    verdict = clip_verdict(observations, threshold=threshold, events=events)
    values = {"scene": scene, "start_s": f"{start_s:.2f}", "end_s": f"{end_s:.2f}", "material": _material(bool(images)),
              "observations": render_observations(observations, images=bool(images)), "rules": render_rules(rules),
              "verdict": verdict.for_model()}
    with telemetry.agent_span("explain_clip"):
        answer = _ask("explain.clip", values, gateway=gateway, role=role, images=images, max_tokens=max_tokens)
    return written("clip", observations, verdict, answer, evidence_of(observations, verdict, rules))


def judge_event(event: VideoEvent, observations: Sequence[Observation], *, scene: str, rules: Sequence[str] | None,
                gateway: Gateway, role: str = "llm", images: Sequence[bytes] = (), max_tokens: int = 400) -> Judgment:
    """Event level: frames sampled inside one detected event's span, one call."""
    verdict = event_verdict(event)
    detector = [f"peak anomaly score {event.peak_score:.2f} at {event.peak_s:.2f} s (frame {event.peak_frame})"]
    if event.broken_rules:
        detector.append("rules it matched: " + "; ".join(event.broken_rules))
    if event.reason:
        detector.append(f"detector's reason: {event.reason}")
    values = {"scene": scene, "event_id": event.id, "start_s": f"{event.start_s:.2f}", "end_s": f"{event.end_s:.2f}",
              "start_frame": event.start_frame, "end_frame": event.end_frame, "detector": "\n".join(detector),
              "material": _material(bool(images)), "rules": render_rules(rules), "verdict": verdict.for_model(),
              "observations": render_observations(observations, images=bool(images))}
    with telemetry.agent_span("explain_event"):
        answer = _ask("explain.event", values, gateway=gateway, role=role, images=images, max_tokens=max_tokens)
    judgment = written("event", observations, verdict, answer, evidence_of(observations, verdict, rules, [event]),
                       event_id=event.id)
    return judgment.model_copy(update={"start_s": event.start_s, "end_s": event.end_s})


def render_judgments(judgments: Sequence[Judgment]) -> str:
    lines = []
    for number, item in enumerate(judgments, 1):
        name = f"event {item.event_id}" if item.level == "event" else f"clip {number}"
        frames = ", ".join(str(index) for index in item.frames)
        verdict = "ANOMALOUS" if item.anomalous else "normal"
        lines.append(f"- {name}, {item.start_s:.2f}-{item.end_s:.2f} s (frames {frames}): {verdict}. "
                     f"{item.judgment} {item.description}")
    return "\n".join(lines)


def judge_video(clips: Sequence[Judgment], events: Sequence[Judgment], *, scene: str, start_s: float, end_s: float,
                observations: Sequence[Observation], peak_score: float, peak_s: float, threshold: float = 0.5,
                detected: Sequence[VideoEvent] | None = None, rules: Sequence[str] | None, gateway: Gateway,
                role: str = "llm", max_tokens: int = 400) -> Judgment:
    """Video level: one text-only call over the clip and event judgments. ``observations``: every
    sampled frame (the evidence the prose may cite); ``peak_score``/``peak_s``: the highest score
    of the whole video; ``detected``: the detector's events (None when no detector ran)."""
    verdict = video_verdict(start_s=start_s, end_s=end_s, peak_score=peak_score, peak_s=peak_s, threshold=threshold,
                            events=detected)
    values = {"scene": scene, "start_s": f"{start_s:.2f}", "end_s": f"{end_s:.2f}", "rules": render_rules(rules),
              "verdict": verdict.for_model(), "clips": render_judgments(clips) or "(none)",
              "events": render_judgments(events) or "(no events given)"}
    with telemetry.agent_span("explain_video"):
        answer = _ask("explain.video", values, gateway=gateway, role=role, images=(), max_tokens=max_tokens)
    evidence = evidence_of(observations, verdict, rules, list(detected or []), times=(start_s, end_s, peak_s))
    judgment = written("video", observations, verdict, answer, evidence)
    return judgment.model_copy(update={"start_s": start_s, "end_s": end_s})
