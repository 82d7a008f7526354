"""State reducers shared by the graphs (how a node's partial update merges into the state)."""

from __future__ import annotations

from typing import Any


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Keys of ``right`` win; nothing is removed."""
    return {**(left or {}), **(right or {})}


def add_counts(left: dict[str, int] | None, right: dict[str, int] | None) -> dict[str, int]:
    """Counters (LLM calls, tokens) summed key by key."""
    total = dict(left or {})
    for key, value in (right or {}).items():
        total[key] = total.get(key, 0) + value
    return total
