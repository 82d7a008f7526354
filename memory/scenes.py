"""Scene profiles: what calibration learned about a camera, beside its proposer and rules.

One small JSON file per scene (``<data_dir>/scenes/<scene>.json``) records the footage a scene
was calibrated on, its proposer, the rule version that calibration stored, and the *rule floor*:
the median rule score of the captioned normal frames, a health check of the rules (near the 0.5
decision threshold, the rules come close to flagging normal footage).

Several processes may use one data folder (``sleuth serve api`` beside ``sleuth calibrate``): a
profile is written to a temporary file of the writing process and renamed over the old one, so a
reader sees the old profile or the new one, never a mix, and two writers do not mix their bytes.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError


class SceneProfile(BaseModel):
    scene: str
    footage: list[str] = Field(default_factory=list)
    fps: float | None = None
    frames: int = 0
    proposer_checkpoint: str | None = None
    proposer_threshold: float | None = None
    rules_version: int | None = None
    rule_floor: float = Field(default=0.0, description="Median rule score of captioned normal frames (the "
                              "closer to the 0.5 threshold, the closer the rules come to flagging normal footage).")
    captioner: str | None = None
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


class SceneStore:
    def __init__(self, settings: Settings | None = None) -> None:
        self.folder = (settings or load_settings()).data_dir / "scenes"

    def path_for(self, scene: str) -> Path:
        return self.folder / f"{scene}.json"

    def load(self, scene: str) -> SceneProfile | None:
        """The scene's profile, or None when it was never calibrated with ``sleuth calibrate``."""
        path = self.path_for(scene)
        if not path.is_file():
            return None
        try:
            return SceneProfile.model_validate_json(path.read_text())
        except (ValidationError, json.JSONDecodeError, OSError):
            raise SleuthError(f"scene profile {path} is unreadable",
                              hint=f"recalibrate with `sleuth calibrate --scene {scene} --video ...`") from None

    def save(self, profile: SceneProfile) -> Path:
        path = self.path_for(profile.scene)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            partial.write_text(profile.model_dump_json(indent=1))
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return path

    def scenes(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.json")) if self.folder.is_dir() else []
