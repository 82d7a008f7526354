"""The settings of the graph run in progress: its context, or the graph's defaults."""

from __future__ import annotations

from typing import TypeVar

from langgraph.runtime import get_runtime
from pydantic import BaseModel

Config = TypeVar("Config", bound=BaseModel)


def run_settings(schema: type[Config], default: Config) -> Config:
    """The run's context when it is a ``schema`` (LangGraph turns a dict context into one, since the
    graph names ``schema`` as its ``context_schema``), else ``default``. Call it inside a node."""
    context = get_runtime().context
    return context if isinstance(context, schema) else default
