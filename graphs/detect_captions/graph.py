"""The detect_captions graph (work in progress: the lead developer is writing this file)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sleuth.agents.schemas import RuleSet
from sleuth.graphs.detect_captions.configuration import DetectConfig
from sleuth.graphs.detect_captions.state import DetectResult


def build_graph(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def detect_captions(captions: Sequence[str], *, video: str = "video", scene: str = "default",
                    rules: RuleSet | None = None, proposer_scores: Sequence[float] | None = None,
                    config: DetectConfig | None = None, runtime: Any = None,
                    thread_id: str | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> DetectResult:
    """Score every caption of one video. ``progress(stage, done, total)`` reports progress.

    ``rules=None`` takes the scene's latest rules from the rule memory (inducing them from a
    sample of the captions when the scene has none). Interrupted runs resume from the
    checkpoint of ``thread_id``.
    """
    raise NotImplementedError
