"""Typed results of the ``explain`` graph (Holmes-VAU: judgments at clip, event and video level)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Judgment(BaseModel):
    """The multimodal model's (or, without one, the LLM's over captions) verdict on a stretch of video."""

    level: Literal["clip", "event", "video"]
    start_s: float
    end_s: float
    frames: list[int] = Field(default_factory=list, description="Source frame indices the judgment looked at.")
    anomalous: bool
    judgment: str = Field(description="One sentence: is something anomalous here, and what.")
    description: str = Field(description="What happens, in order.")
    analysis: str = Field(description="Why it is (or is not) anomalous, citing rules and frames.")
    event_id: int | None = None


class Explanation(BaseModel):
    """Everything ``explain`` wrote for one video."""

    video: str
    scene: str
    sampled_frames: list[int] = Field(description="Source frame indices the anomaly-focused sampler chose.")
    source: Literal["vlm", "captions"] = Field(description="vlm: frames went to a vision model; captions: the "
                                               "LLM reasoned over the captioner's descriptions.")
    clips: list[Judgment] = Field(default_factory=list)
    events: list[Judgment] = Field(default_factory=list)
    video_judgment: Judgment | None = None
    llm_calls: int = 0
    model: str | None = None
