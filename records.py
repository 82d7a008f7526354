"""The records that pass between the layers: what a detect run found (frames, events, cost) and
what an explanation said (judgments at clip, event and video level).

The graphs write them, the agents read events and write judgments, the reports draw them and
``sleuth report result.json`` redraws the HTML from the JSON alone (key-frame thumbnails travel in
a :class:`DetectReport` as small base64 JPEGs). They import nothing of Sleuth, so every layer can
use them; the graphs that produce them re-export them from their ``state`` modules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["confirmed", "dismissed", "unjudged"]


class Judgment(BaseModel):
    """A stretch of video judged: the verdict from the scores, the prose from the model (a VLM over the frames,
    or the LLM over captions)."""

    level: Literal["clip", "event", "video"]
    start_s: float
    end_s: float
    frames: list[int] = Field(default_factory=list, description="Source frame indices the judgment looked at.")
    anomalous: bool = Field(description="The verdict, from the scores and the detector's events (never the model's).")
    judgment: str = Field(description="One sentence: the verdict and the scores behind it.")
    description: str = Field(description="What happens, in order (the model's prose, checked against the evidence).")
    analysis: str = Field(description="Which rules it matches or breaks (the model's prose, checked).")
    event_id: int | None = None
    removed: list[str] = Field(default_factory=list, description="Sentences the model wrote that were removed, "
                               "each with the reason (repeated, contradicting the verdict, not in the evidence).")


class Explanation(BaseModel):
    """Everything ``explain`` wrote for one video."""

    video: str
    scene: str
    sampled_frames: list[int] = Field(description="Source frame indices the anomaly-focused sampler chose.")
    source: Literal["vlm", "captions"] = Field(description="vlm: frames went to a vision model; captions: the "
                                               "LLM reasoned over the captioner's descriptions.")
    captions: dict[str, str] = Field(default_factory=dict, description="Source frame index -> the caption the "
                                     "model read for it (empty with a VLM): the evidence the prose is checked against.")
    clips: list[Judgment] = Field(default_factory=list)
    events: list[Judgment] = Field(default_factory=list)
    video_judgment: Judgment | None = None
    llm_calls: int = 0
    model: str | None = None


class FrameScore(BaseModel):
    """One sampled frame of the video."""

    index: int = Field(description="Source frame index (position in the file, before --fps sampling).")
    time_s: float
    score: float = Field(description="Final anomaly score in [0, 1] (rules and proposer, smoothed).")
    proposer: float = Field(description="The proposer's score mapped to [0, 1] (0.5 at its calibrated threshold).")
    rule_score: float | None = Field(default=None, description="Rule score before fusion and smoothing (the scene's "
                                     "rule floor for frames that were not captioned).")
    gated: bool = Field(description="Passed the gate: captioned and judged against the rules.")
    anomalous: bool
    caption: str | None = None
    evidence: str | None = Field(default=None, description="The caption piece that drove the rule score.")
    proposer_reason: str | None = Field(default=None, description="Why the proposer finds the frame's most "
                                        "unusual object unusual (its class or speed against the scene's normal "
                                        "footage), where a stream's z-score reaches 2.")
    prior_score: float | None = Field(default=None, description="The score before the LLM dismissed the candidate "
                                      "event this frame was part of (None: validation did not change it).")


class VideoEvent(BaseModel):
    """A contiguous span of anomalous frames."""

    id: int
    start_frame: int = Field(description="First source frame index of the span.")
    end_frame: int = Field(description="Last source frame index of the span (inclusive).")
    start_s: float
    end_s: float
    peak_frame: int
    peak_s: float
    peak_score: float
    broken_rules: list[str] = Field(default_factory=list)
    reason: str | None = None
    proposer_reason: str | None = Field(default=None, description="The proposer's stated reason at the event's "
                                        "frame with the highest proposer score that has one.")
    proposer_frame: int | None = Field(default=None, description="The source frame that reason is about.")
    key_frames: list[int] = Field(default_factory=list, description="Source frame indices shown for the event.")
    verdict: Verdict = Field(default="unjudged", description="The LLM's validation: confirmed, dismissed, or "
                             "unjudged (validation off, over the call budget, or the LLM failed).")
    anomaly_probability: float | None = Field(default=None, description="The probability the LLM put on "
                                              "'anomaly' for the event (None: not judged).")


class Cost(BaseModel):
    frames: int = 0
    gated_frames: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    seconds_by_stage: dict[str, float] = Field(default_factory=dict)

    @property
    def llm_calls_per_frame(self) -> float:
        return self.llm_calls / self.frames if self.frames else 0.0


class DetectReport(BaseModel):
    """What ``detect`` found in one video (and, optionally, what ``explain`` said about it)."""

    video: str
    scene: str
    fps: float | None = Field(default=None, description="Sampling rate used (None: every frame).")
    threshold: float = Field(description="Score above which a frame is anomalous.")
    gate_threshold: float = Field(description="Proposer score (z units) a frame needs to be captioned.")
    rules_version: int = 0
    rules: list[str] = Field(default_factory=list, description="The scene's rules used, as 'kind: text'.")
    frames: list[FrameScore]
    events: list[VideoEvent]
    dismissed: list[VideoEvent] = Field(default_factory=list, description="Candidate events the LLM's validation "
                                        "dismissed (their frames are not anomalous), with its reason.")
    models: dict[str, str] = Field(default_factory=dict, description="Role -> model (llm, embedder, captioner, "
                                   "proposer checkpoint).")
    cost: Cost = Field(default_factory=Cost)
    trace_id: str | None = None
    thumbnails: dict[int, str] = Field(default_factory=dict, description="Source frame index -> base64 JPEG.")
    explanation: Explanation | None = None
    created: str | None = None
    warnings: list[str] = Field(default_factory=list, description="What the user should know about this run's "
                                "input, e.g. a truncated video of which only part was read (--allow-partial).")
