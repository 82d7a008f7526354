"""Graph factories for LangGraph Studio and LangGraph Server (``langgraph.json`` names them).

The server brings its own persistence, so these graphs compile without Sleuth's checkpointer;
each factory builds one :class:`~sleuth.graphs.runtime.Runtime` from the settings (``sleuth.toml``
and ``SLEUTH_*`` in the server's environment) and shares it.
"""

from __future__ import annotations

import functools
from typing import Any

from sleuth.graphs.runtime import Runtime


@functools.cache
def _runtime() -> Runtime:
    runtime = Runtime.from_settings()
    runtime.checkpoint_path = None  # the server persists threads itself
    return runtime


def investigate(config: Any = None) -> Any:
    """The chat agent (its input: ``{"messages": [{"role": "user", "content": "..."}]}``)."""
    from sleuth.graphs.investigate import build_graph, default_context

    runtime = _runtime()
    return build_graph(runtime, context=lambda: default_context(runtime), agent_runtime=runtime.for_agent())


def search(config: Any = None) -> Any:
    """AnomalyLMM search (input: ``{"query": "...", "gallery": "..."}``)."""
    from sleuth.graphs.search import build_graph
    from sleuth.memory.gallery import GalleryStore

    runtime = _runtime()
    return build_graph(runtime, GalleryStore(runtime.settings))


def detect(config: Any = None) -> Any:
    """Detect on one video of a calibrated scene: input ``{"video": "...", "scene": "..."}``, output
    ``{"report": {...}}``; the run's context takes any field of ``VideoDetectConfig`` (``start``,
    ``stop``, ``fps``, ``gate_percentile``, ``explain``, ...)."""
    from sleuth.graphs.detect.graph import build_graph

    return build_graph(_runtime())


def explain(config: Any = None) -> Any:
    """Holmes-VAU explanations: input ``{"video": "...", "scene": "..."}``, optionally with detect's
    ``scores`` and ``events``, an ``event_id``, ``rules``, ``start`` and ``stop``; output
    ``{"explanation": {...}}``; the run's context takes any field of ``ExplainConfig``."""
    from sleuth.graphs.explain.graph import build_graph

    return build_graph(_runtime())


def calibrate(config: Any = None) -> Any:
    """Calibrate a scene on normal footage (input: ``{"sources": [...], "scene": "..."}``)."""
    from sleuth.graphs.calibrate.graph import build_graph

    return build_graph(_runtime())
