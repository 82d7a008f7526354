"""Rule induction and aggregation agents (work in progress: the lead developer writes this file)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sleuth.agents.schemas import RuleSet


def induce_rules(captions: Sequence[str], *, scene: str = "default", gateway: Any = None) -> RuleSet:
    """Induce normal and anomaly rules from captions (normal reference frames or unlabeled footage)."""
    raise NotImplementedError


def aggregate_rules(rulesets: Sequence[RuleSet], *, scene: str = "default", embedder: Any = None) -> RuleSet:
    """Merge rule sets: semantic de-duplication, stricter rule wins, every unique anomaly rule kept."""
    raise NotImplementedError


def induce_from_unlabeled(captions_by_video: Mapping[str, Sequence[str]], *, per_video: int = 20,
                          scene: str = "default", seed: int = 0, gateway: Any = None,
                          embedder: Any = None) -> RuleSet:
    """HyCoVAD: sample ``per_video`` captions of each video, induce per video, aggregate."""
    raise NotImplementedError
