"""Cassettes: recorded model answers, replayed by request, so prompt evals run without a model.

A :class:`Cassette` attached to a :class:`~sleuth.llm.gateway.Gateway` (``gateway.cassette``) sees
every chat call. In ``record`` mode the real answer is stored under a key made of what decides
it (role, messages, tools, response format, token limit, temperature, log-probabilities asked
for); in ``replay`` mode the stored answer comes back and no endpoint is started or called. A
request that was never recorded is a one-line :class:`CassetteMiss`: a prompt or a case changed,
so the suite must be recorded again. One JSON file per suite and model.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Literal

from sleuth.errors import SleuthError

Mode = Literal["record", "replay"]


class CassetteMiss(SleuthError):
    """Replay met a request that the cassette has no answer for."""


class Cassette:
    def __init__(self, path: str | Path, mode: Mode) -> None:
        self.path = Path(path)
        self.mode = mode
        self.hits = 0
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._entries = json.loads(self.path.read_text()).get("entries", {})
        elif mode == "replay":
            raise CassetteMiss(f"no cassette at {self.path}", hint="record it first: sleuth eval prompts --record")

    @staticmethod
    def key(role: str, request: dict[str, Any]) -> str:
        decisive = {name: request.get(name) for name in ("messages", "tools", "response_format", "max_tokens",
                                                          "temperature", "top_logprobs")}
        text = json.dumps({"role": role, **decisive}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, key: str) -> dict[str, Any]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise CassetteMiss(f"{self.path.name} has no recorded answer for a request (key {key[:12]})",
                                   hint="a prompt or a case changed since recording: run sleuth eval prompts --record")
            self.hits += 1
            return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = entry

    def save(self) -> Path:
        """Write the recorded answers (sorted, so a re-recording diffs cleanly)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            text = json.dumps({"entries": dict(sorted(self._entries.items()))}, indent=1, sort_keys=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(text + "\n")
        temporary.replace(self.path)
        return self.path

    def __len__(self) -> int:
        return len(self._entries)
