"""Configuration of the ``detect`` graph (every field documents itself)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sleuth.graphs.detect_captions.configuration import DetectConfig


def _reasoning_defaults() -> DetectConfig:
    return DetectConfig.for_video()


class VideoDetectConfig(BaseModel):
    fps: float | None = Field(default=None, gt=0, description="Sample the video at this rate (None: every frame).")
    start: int = Field(default=0, ge=0, description="First source frame.")
    stop: int | None = Field(default=None, ge=1, description="Stop before this source frame.")
    chunk_frames: int = Field(default=128, ge=8, description="Frames the proposer scores at a time while the "
                              "video is read once (memory stays flat in the video's length); each chunk is scored "
                              "with 16 frames of context either side.")
    gate_percentile: float = Field(default=95.0, ge=0, le=100, description="A frame is captioned when its "
                                   "proposer score reaches this percentile of the scene's normal (held-out "
                                   "calibration) scores. 0 captions every frame.")
    gate_context: int = Field(default=8, ge=0, description="Neighbouring frames either side of a gated frame "
                              "that are captioned and judged too.")
    caption_context: int = Field(default=4, ge=0, description="Extra frames a structured captioner sees either "
                                 "side of each captioned run (for speeds); their captions are not used.")
    reasoning: DetectConfig = Field(default_factory=_reasoning_defaults, description="Deduction, fusion with the "
                                    "proposer score, smoothing and event explanation (the detect_captions graph).")
    key_frames: int = Field(default=3, ge=1, le=12, description="Thumbnails per event (first, peak, last, ...).")
    thumbnail_width: int = Field(default=240, ge=32, le=1280)
    explain: bool = Field(default=False, description="Run the explain graph on the video and its events.")
    allow_partial: bool = Field(default=False, description="Analyse the frames of a file that ends well before "
                                "its header's frame count (truncated or corrupt) and report the shortfall as a "
                                "warning, instead of failing.")
