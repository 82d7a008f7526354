"""Typed input, output and result records of the ``detect_captions`` graph."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sleuth.records import Verdict

ScoreSource = Literal["keyword", "llm", "reused", "cheap", "fallback"]


class FrameResult(BaseModel):
    """One frame's verdict."""

    index: int
    score: float = Field(description="Smoothed anomaly score in [0, 1], usable for ROC curves.")
    raw_score: float = Field(description="Score before temporal smoothing.")
    rule_score: float | None = Field(default=None, description="The rules' score of the frame before fusion with "
                                     "the proposer and smoothing.")
    anomalous: bool = Field(description="Decision after smoothing.")
    source: ScoreSource = Field(
        description="keyword: the caption names a keyword of an anomaly rule; llm: judged by the LLM; "
        "reused: a judgment of an identical or near-identical "
        "caption piece was reused; cheap: scored from cheap signals only (the gate let it pass); "
        "fallback: the LLM answer stayed invalid, so cheap signals scored it.")
    broken_rules: list[str] = Field(default_factory=list)
    evidence: str | None = Field(default=None, description="The caption piece that drove the score.")
    reason: str | None = None
    prior_score: float | None = Field(default=None, description="The score before the LLM's validation dismissed "
                                      "the event this frame was part of (None: validation left it as it was).")


class Event(BaseModel):
    """A contiguous span of anomalous frames."""

    start: int
    end: int = Field(description="Last frame of the span (inclusive).")
    peak_frame: int
    peak_score: float
    evidence_frame: int | None = Field(default=None, description="The frame whose own rule score is highest: what "
                                       "the event is explained from (the score's peak can lag it after smoothing).")
    broken_rules: list[str] = Field(default_factory=list)
    reason: str | None = None
    verdict: Verdict = Field(default="unjudged", description="The LLM's validation of the event (HyCoVAD's "
                             "second stage): confirmed, dismissed (its frames are no longer anomalous), or "
                             "unjudged (validation off, over the call budget, or the LLM failed).")
    anomaly_probability: float | None = Field(default=None, description="The probability the LLM put on "
                                              "'anomaly' when it judged the event (from its answer token's "
                                              "log-probabilities); None if it did not judge it.")


class DetectResult(BaseModel):
    video: str
    scene: str
    rules_version: int
    frames: list[FrameResult]
    events: list[Event]
    dismissed: list[Event] = Field(default_factory=list, description="Candidate events the LLM's validation "
                                   "dismissed, with its reason.")
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallback_frames: int = 0

    @property
    def scores(self) -> list[float]:
        return [frame.score for frame in self.frames]
