"""Configuration of the ``detect_captions`` graph (every field documents itself)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DetectConfig(BaseModel):
    refine_window: int = Field(default=10, ge=1, description="HyCoVAD caption refinement window (frames).")
    smoothing: Literal["ema_vote", "anomalyruler", "none"] = Field(
        default="ema_vote", description="ema_vote: EMA then windowed majority vote; anomalyruler: the "
        "peer's own code (EMA alpha 0.33, one-frame window, second EMA at the video's mean score).")
    ema_alpha: float = Field(default=0.33, gt=0, le=1)
    vote_window: int = Field(default=5, ge=1, description="Majority-vote window (frames, odd).")
    threshold: float = Field(default=0.5, ge=0, le=1, description="Score above which a frame is anomalous.")
    max_rules: int = Field(default=40, ge=1, description="Rules given to deduction (most relevant first).")
    induce_sample: int = Field(default=20, ge=1, description="Captions sampled to induce rules when a "
                               "scene has none (HyCoVAD: 20 per video).")
