"""Typed results of the ``explain`` graph (Holmes-VAU: judgments at clip, event and video level)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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
