"""Typed result of the ``calibrate`` graph."""

from __future__ import annotations

from pydantic import BaseModel, Field


class CalibrateResult(BaseModel):
    scene: str
    clips: int
    frames: int
    proposer_checkpoint: str | None = None
    proposer_threshold: float | None = None
    train_seconds: float | None = None
    captions: int = 0
    rules_version: int | None = None
    rules_changed: bool = Field(default=False, description="False when the induced rules equal the stored ones.")
    anomaly_rules: list[str] = Field(default_factory=list)
    normal_rules: list[str] = Field(default_factory=list)
    rule_floor: float = 0.0
    llm_calls: int = 0
    seconds: float = 0.0
    profile: str | None = Field(default=None, description="Path of the scene profile written.")
