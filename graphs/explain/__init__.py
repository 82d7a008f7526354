"""``explain`` (Holmes-VAU): anomaly-focused frame sampling, then judgments at clip, event and video level.

The graph itself loads on first use: ``sleuth.graphs.detect.state`` imports this package's
``state`` module, and the graph imports detect's state back, so an eager import here would be
circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sleuth.graphs.explain.configuration import ExplainConfig
from sleuth.graphs.explain.state import Explanation, Judgment

if TYPE_CHECKING:
    from sleuth.graphs.explain.graph import build_graph, explain_video

__all__ = ["ExplainConfig", "Explanation", "Judgment", "build_graph", "explain_video"]


def __getattr__(name: str) -> Any:
    if name in ("build_graph", "explain_video"):
        from sleuth.graphs.explain import graph

        return getattr(graph, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
