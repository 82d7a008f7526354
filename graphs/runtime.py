"""What graphs need at run time (models, memory, checkpointer), built once from the settings."""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sleuth.config import Settings, load_settings
from sleuth.errors import ConfigError
from sleuth.llm.gateway import Gateway
from sleuth.tools.toolset import Embedder, ToolSet, open_tools

logger = logging.getLogger("sleuth.runtime")


def agent_model(settings: Settings) -> str | None:
    """The model the investigate agent uses by default: ``llm.agent_model`` when the LLM is the
    embedded packaged one (no GGUF file or endpoint of one's own) and its parts are installed
    (or already joined into the cache); else None (the agent uses ``llm.model``)."""
    from sleuth.llm import packaged

    llm = settings.llm
    wanted = llm.agent_model
    if not wanted or wanted == llm.model or llm.gguf or llm.api_base or not packaged.is_packaged(llm.model):
        return None
    if not packaged.is_packaged(wanted):
        return wanted if "/" in wanted else None
    model = packaged.CATALOGUE[wanted]
    if packaged.cached_and_verified(model, settings.cache_dir) is None and packaged.parts_status(model):
        logger.warning("the agent model %s is not installed; the agent uses %s (install it: %s)", wanted,
                       llm.model, "SLEUTH_EXTRAS=llm-1-5b make setup")
        return None
    return wanted


def with_model(settings: Settings, model: str | None) -> Settings:
    """``settings`` with ``model`` (a packaged name or a LiteLLM string) as the LLM; unchanged for None."""
    from sleuth.llm import packaged

    if not model or not (packaged.is_packaged(model) or "/" in model):
        return settings
    return settings.model_copy(update={"llm": settings.llm.model_copy(update={"model": model, "gguf": None})})


@dataclass
class Runtime:
    """Shared services of the graphs. Heavy parts (embedder, rule memory) load on first use."""

    settings: Settings
    gateway: Gateway
    embedder: Embedder
    tools: ToolSet | None = None  # model tools (in-process or Ray Serve, per settings.tools.backend)
    checkpoint_path: Path | None = None
    judgment_cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _memory: Any = None
    _checkpointer: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, model: str | None = None) -> Runtime:
        """``model`` overrides the LLM for these graphs (e.g. the packaged 1.5B for deduction)."""
        settings = with_model(settings or load_settings(), model)
        tools = open_tools(settings)
        return cls(settings=settings, gateway=Gateway(settings), embedder=tools.embedder, tools=tools,
                   checkpoint_path=settings.data_dir / "checkpoints.sqlite")

    def for_agent(self, model: str | None = None) -> Runtime:
        """The runtime of the investigate agent's own LLM calls (its steps and answers): ``model`` if
        given, else :func:`agent_model`; this runtime itself when that is its LLM already. It shares
        this runtime's tools, embedder and checkpointer; the tools the agent runs keep this one."""
        chosen = model or agent_model(self.settings)
        if not chosen or chosen == self.settings.llm.model:
            return self
        settings = with_model(self.settings, chosen)
        return Runtime(settings=settings, gateway=Gateway(settings), embedder=self.embedder, tools=self.tools,
                       checkpoint_path=self.checkpoint_path)

    def toolset(self) -> ToolSet:
        """The model tools, opened from the settings on first use when none were given."""
        with self._lock:
            if self.tools is None:
                inprocess = self.settings.tools.backend == "inprocess"
                self.tools = open_tools(self.settings, **({"embedder": self.embedder} if inprocess else {}))
            return self.tools

    @property
    def memory(self) -> Any:
        with self._lock:
            if self._memory is None:
                from sleuth.memory.rules import RuleMemory

                self._memory = RuleMemory(self.settings, self.embedder)
            return self._memory

    @property
    def checkpointer(self) -> Any:
        """The LangGraph checkpointer: Postgres at ``settings.checkpoint_url``, else SQLite at
        ``checkpoint_path`` (None when both are unset)."""
        with self._lock:
            if self._checkpointer is None and self.settings.checkpoint_url and self.checkpoint_path is not None:
                self._checkpointer = postgres_checkpointer(self.settings.checkpoint_url)
            if self._checkpointer is None and self.checkpoint_path is not None:
                from langgraph.checkpoint.sqlite import SqliteSaver

                self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(str(self.checkpoint_path), check_same_thread=False)
                self._checkpointer = SqliteSaver(connection)
            return self._checkpointer

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None


def postgres_checkpointer(url: str) -> Any:
    """A ``PostgresSaver`` on one autocommit connection, its tables created on first use."""
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError:
        raise ConfigError("checkpoint_url names Postgres, but its driver is not installed",
                          hint="pip install 'sleuth[postgres]' (langgraph-checkpoint-postgres, psycopg)") from None
    try:
        connection = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row,
                                     connect_timeout=5)
    except psycopg.Error as exc:
        where = url.split("@")[-1]  # never print the password
        raise ConfigError(f"cannot connect to Postgres at {where}: {str(exc).strip().splitlines()[0][:160]}",
                          hint="check checkpoint_url (SLEUTH_CHECKPOINT_URL) and that the server runs") from None
    saver = PostgresSaver(connection)
    saver.setup()
    return saver
