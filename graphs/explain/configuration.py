"""Configuration of the ``explain`` graph (every field documents itself)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ExplainConfig(BaseModel):
    frames: int = Field(default=16, ge=1, description="Frames the anomaly-focused sampler picks for the whole "
                        "video (Holmes-VAU: 16).")
    tau: float = Field(default=0.1, gt=0, description="Sampler density floor: a frame's density is its min-max "
                       "normalised score plus tau, so small values concentrate the frames on score peaks and "
                       "large ones approach uniform sampling.")
    clip_size: int = Field(default=4, ge=1, description="Consecutive sampled frames judged together as one clip "
                           "(one model call per clip).")
    event_frames: int = Field(default=8, ge=1, description="Frames sampled inside each event's span for its "
                              "event-level judgment.")
    max_events: int = Field(default=5, ge=0, description="Events explained per video (the first ones given).")
    caption_context: int = Field(default=4, ge=0, description="Without a VLM: consecutive frames on either side "
                                 "of a sampled frame that the captioner sees with it, so motion and speeds can be "
                                 "estimated; the sampled frame's own caption is kept.")
    use_vlm: Literal["auto", "never", "always"] = Field(
        default="auto", description="auto: the frames' images go to the vision model when one is configured "
        "(settings.vlm.model), else the LLM reasons over captions; never: always captions; always: require a VLM.")
    image_width: int = Field(default=512, ge=64, description="Images sent to a VLM are downscaled to this width.")
    threshold: float = Field(default=0.5, ge=0, le=1, description="Score at or above which a frame counts as "
                             "anomalous for the verdicts (detect passes its own); with the detector's events, "
                             "only a clip that overlaps an event is anomalous.")
    max_tokens: int = Field(default=400, ge=64, description="Answer length limit per model call (tokens).")
