"""Configuration of the ``calibrate`` graph (every field documents itself)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CalibrateConfig(BaseModel):
    fps: float | None = Field(default=None, gt=0, description="Sample the footage at this rate (None: every frame).")
    start: int = Field(default=0, ge=0, description="First source frame of each clip.")
    stop: int | None = Field(default=None, ge=1, description="Stop before this source frame of each clip.")
    train_proposer: bool = Field(default=True, description="Train the scene's SSL proposer.")
    induce: bool = Field(default=True, description="Caption normal frames and induce rules (off: keep or "
                         "import the scene's rules).")
    caption_frames: int = Field(default=60, ge=1, description="Normal frames captioned for rule induction, "
                                "spread evenly over the footage.")
    caption_context: int = Field(default=4, ge=0, description="Frames captioned either side of each sampled "
                                 "frame (the structured captioner needs them for speeds); its caption is kept.")
    captions_per_call: int = Field(default=20, ge=1, description="Captions per induction call (HyCoVAD: 20); "
                                   "the rule sets of the calls are aggregated.")
    max_false_alarm_share: float = Field(default=0.02, ge=0, le=1, description="An induced anomaly rule that "
                                         "flags more than this share of the normal captions is demoted to normal.")
    epochs: int | None = Field(default=None, ge=1, description="Proposer training epochs (None: its default).")
    max_train_minutes: float | None = Field(default=None, gt=0, description="Stop proposer training after this.")
    proposer: dict[str, Any] = Field(default_factory=dict, description="ProposerConfig overrides, e.g. "
                                     "{'width': 32} (see sleuth.tools.proposer.ProposerConfig).")
    seed: int = 0
