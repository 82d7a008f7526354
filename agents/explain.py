"""Explanation agents (Holmes-VAU's explanation stage): clip, event and video judgments.

Each function makes one structured model call with a prompt from ``prompts/explain.*.toml`` and
returns a :class:`~sleuth.graphs.explain.state.Judgment`. The model answers the small
:class:`ExplainAnswer` schema; level, times and frames are filled in here, so a model cannot get
them wrong. The frames reach the model either as images (a VLM role) or as the captioner's
descriptions, always with their frame numbers, times and anomaly scores so that answers can cite
them. When the answer stays invalid after the gateway's retry, the judgment falls back to one
built from the scores and captions (and says so) instead of failing the whole explanation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field
from sleuth import telemetry
from sleuth.errors import StructuredOutputError
from sleuth.graphs.detect.state import VideoEvent
from sleuth.graphs.explain.state import Judgment
from sleuth.llm.gateway import Gateway, user_message
from sleuth.prompts import load_prompt

NO_RULES = "(none given: judge what would be unusual, dangerous or out of place for this camera's scene)"


class ExplainAnswer(BaseModel):
    """What the model writes; the reasoning fields come before the decision.

    The length limits keep a whole answer under the default ``max_tokens`` (about 300 tokens):
    a grammar-constrained model (llama.cpp) must close each string in time, so a small model that
    starts repeating itself still returns valid JSON instead of being cut off mid-string.
    """

    description: str = Field(min_length=1, max_length=500,
                             description="What happens, in order, citing times (s) and frame numbers.")
    analysis: str = Field(min_length=1, max_length=500,
                          description="Why it is or is not anomalous, citing the rules and frames.")
    anomalous: bool
    judgment: str = Field(min_length=1, max_length=250,
                          description="One sentence: is something anomalous here, and what.")


@dataclass(frozen=True)
class Observation:
    """One sampled frame as the model sees it."""

    index: int  # source frame index
    time_s: float
    score: float  # anomaly score in [0, 1]
    caption: str | None = None


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


def _span(observations: Sequence[Observation]) -> tuple[float, float]:
    return (observations[0].time_s, observations[-1].time_s) if observations else (0.0, 0.0)


def judge_clip(observations: Sequence[Observation], *, scene: str, rules: Sequence[str] | None, gateway: Gateway,
               role: str = "llm", images: Sequence[bytes] = (), max_tokens: int = 400) -> Judgment:
    """Clip level: a few consecutive sampled frames, one call."""
    start_s, end_s = _span(observations)
    values = {"scene": scene, "start_s": f"{start_s:.2f}", "end_s": f"{end_s:.2f}", "material": _material(bool(images)),
              "observations": render_observations(observations, images=bool(images)), "rules": render_rules(rules)}
    with telemetry.agent_span("explain_clip"):
        answer = _ask("explain.clip", values, gateway=gateway, role=role, images=images, max_tokens=max_tokens)
    frames = [obs.index for obs in observations]
    if isinstance(answer, StructuredOutputError):
        return fallback_judgment("clip", observations, start_s, end_s, answer.errors)
    return Judgment(level="clip", start_s=start_s, end_s=end_s, frames=frames, **answer.model_dump())


def judge_event(event: VideoEvent, observations: Sequence[Observation], *, scene: str, rules: Sequence[str] | None,
                gateway: Gateway, role: str = "llm", images: Sequence[bytes] = (), max_tokens: int = 400) -> Judgment:
    """Event level: frames sampled inside one detected event's span, one call."""
    detector = [f"peak anomaly score {event.peak_score:.2f} at {event.peak_s:.2f} s (frame {event.peak_frame})"]
    if event.broken_rules:
        detector.append("rules it matched: " + "; ".join(event.broken_rules))
    if event.reason:
        detector.append(f"detector's reason: {event.reason}")
    values = {"scene": scene, "event_id": event.id, "start_s": f"{event.start_s:.2f}", "end_s": f"{event.end_s:.2f}",
              "start_frame": event.start_frame, "end_frame": event.end_frame, "detector": "\n".join(detector),
              "material": _material(bool(images)), "rules": render_rules(rules),
              "observations": render_observations(observations, images=bool(images))}
    with telemetry.agent_span("explain_event"):
        answer = _ask("explain.event", values, gateway=gateway, role=role, images=images, max_tokens=max_tokens)
    if isinstance(answer, StructuredOutputError):
        return fallback_judgment("event", observations, event.start_s, event.end_s, answer.errors, event_id=event.id)
    return Judgment(level="event", start_s=event.start_s, end_s=event.end_s, event_id=event.id,
                    frames=[obs.index for obs in observations], **answer.model_dump())


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
                frames: Sequence[int], scores: Sequence[float], rules: Sequence[str] | None, gateway: Gateway,
                role: str = "llm", max_tokens: int = 400) -> Judgment:
    """Video level: one text-only call over the clip and event judgments.

    The fallback (invalid answer) calls the video anomalous when any clip or event judgment is.
    """
    values = {"scene": scene, "start_s": f"{start_s:.2f}", "end_s": f"{end_s:.2f}", "rules": render_rules(rules),
              "clips": render_judgments(clips) or "(none)", "events": render_judgments(events) or "(no events given)"}
    with telemetry.agent_span("explain_video"):
        answer = _ask("explain.video", values, gateway=gateway, role=role, images=(), max_tokens=max_tokens)
    if isinstance(answer, StructuredOutputError):
        parts = list(clips) + list(events)
        flagged = [item for item in parts if item.anomalous]
        anomalous = bool(flagged) if parts else _mean(scores) >= 0.5
        spans = ", ".join(f"{item.start_s:.2f}-{item.end_s:.2f} s" for item in flagged)
        return Judgment(
            level="video", start_s=start_s, end_s=end_s, frames=list(frames), anomalous=anomalous,
            judgment=f"The model's answer was invalid; {len(flagged)} of {len(parts)} clip and event judgments "
                     f"found something anomalous{' (' + spans + ')' if spans else ''}.",
            description=" ".join(f"{item.start_s:.2f}-{item.end_s:.2f} s: {item.judgment}" for item in parts)
                        or "No clip or event was judged.",
            analysis=f"Built from the clip and event judgments because the model's answer failed validation "
                     f"({answer.errors}).")
    return Judgment(level="video", start_s=start_s, end_s=end_s, frames=list(frames), **answer.model_dump())


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def fallback_judgment(level: Literal["clip", "event"], observations: Sequence[Observation], start_s: float,
                      end_s: float, errors: str, event_id: int | None = None) -> Judgment:
    """A judgment from the scores and captions alone: anomalous when the mean score is at least 0.5."""
    mean = _mean([obs.score for obs in observations])
    anomalous = mean >= 0.5
    captions = " ".join(f"At {obs.time_s:.2f} s (frame {obs.index}): {obs.caption}" for obs in observations
                        if obs.caption)
    scores = ", ".join(f"frame {obs.index} at {obs.time_s:.2f} s: {obs.score:.2f}" for obs in observations)
    return Judgment(
        level=level, start_s=start_s, end_s=end_s, frames=[obs.index for obs in observations],
        anomalous=anomalous, event_id=event_id,
        judgment=f"The model's answer was invalid; by the anomaly scores (mean {mean:.2f}) this stretch "
                 f"{'looks anomalous' if anomalous else 'looks normal'}.",
        description=captions or f"Frames {', '.join(str(obs.index) for obs in observations)} (no captions).",
        analysis=f"Anomaly scores: {scores or 'none'}. The model's answer failed validation ({errors}).")
