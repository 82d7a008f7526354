"""One proposer checkpoint per scene, in ``tools.proposer_dir`` (default ``<data_dir>/proposers``)."""

from __future__ import annotations

import re
from pathlib import Path

from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.tools.proposer.proposer import Proposer, ProposerError

_SCENE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_scene(scene: str) -> str:
    """Scene names become file names: letters, digits, '.', '_' and '-' only."""
    if not _SCENE.match(scene) or ".." in scene:
        raise SleuthError(f"invalid scene name '{scene}'",
                          hint="use letters, digits, '.', '_' or '-' (e.g. cam1, lobby-east)")
    return scene


class ProposerStore:
    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or load_settings()
        self.root = Path(settings.tools.proposer_dir or settings.data_dir / "proposers")
        self._cache: dict[str, tuple[float, Proposer]] = {}

    def path_for(self, scene: str) -> Path:
        return self.root / f"{check_scene(scene)}.pt"

    def scenes(self) -> list[str]:
        return sorted(path.stem for path in self.root.glob("*.pt")) if self.root.is_dir() else []

    def save(self, scene: str, proposer: Proposer) -> Path:
        proposer.scene = scene
        return proposer.save(self.path_for(scene))

    def load(self, scene: str) -> Proposer:
        """The scene's proposer; reloaded when the checkpoint file changed since the last load."""
        path = self.path_for(scene)
        if not path.is_file():
            known = ", ".join(self.scenes()) or "none yet"
            raise ProposerError(f"no proposer for scene '{scene}' (calibrated scenes: {known})",
                                hint=f"run `sleuth calibrate proposer --scene {scene} --video <normal footage>`")
        stamp = path.stat().st_mtime
        cached = self._cache.get(scene)
        if cached and cached[0] == stamp:
            return cached[1]
        proposer = Proposer.load(path)
        self._cache[scene] = (stamp, proposer)
        return proposer
