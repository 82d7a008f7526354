"""Shared fixtures: an isolated configuration per test and a scripted OpenAI-compatible server.

The scripted server is for control-flow tests only (retries, errors, spans); everything that
claims model quality runs against the real packaged model in the tests marked ``slow``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test session, so the packaged GGUF is joined once. The perception models
    that the setup converted (too slow to convert per session) are copied in from the user's cache."""
    import shutil

    import platformdirs

    cache = tmp_path_factory.mktemp("sleuth-cache")
    user_cache = Path(os.environ.get("SLEUTH_CACHE_DIR") or platformdirs.user_cache_dir("sleuth"))
    installed = user_cache / "models" / "perception"
    if installed.is_dir():
        shutil.copytree(installed, cache / "models" / "perception", ignore=shutil.ignore_patterns("*.log", "*.partial"))
    return cache


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_cache: Path) -> Path:
    """No user config, no SLEUTH_* variables and private folders for every test."""
    for name in list(os.environ):
        if name.startswith("SLEUTH_") or name in ("QDRANT_URL", "QDRANT_API_KEY"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("SLEUTH_CACHE_DIR", str(model_cache))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@dataclass
class ScriptedOpenAI:
    """An OpenAI-compatible chat endpoint that answers from a script, recording every request."""

    replies: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    top_logprobs: dict[str, float] | None = None  # returned when a request asks for logprobs
    # Optional: answer from the request itself -> (reply, top_logprobs); overrides replies/top_logprobs.
    responder: Callable[[dict[str, Any]], tuple[str, dict[str, float] | None]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Request headers, names lower-cased: HTTP header names are case-insensitive, and clients differ.
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def next_reply(self) -> str:
        return self.replies.pop(0) if len(self.replies) > 1 else (self.replies or ["ok"])[0]


def _handler(script: ScriptedOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            script.headers.append({name.lower(): value for name, value in self.headers.items()})
            if script.delay_s:
                time.sleep(script.delay_s)
            reply, top_logprobs = (script.responder(body) if script.responder
                                   else (script.next_reply(), script.top_logprobs))
            usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                words = reply.split(" ")
                for index, word in enumerate(words):
                    piece = word if index == 0 else " " + word
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0,
                             "model": "scripted", "choices": [{"index": 0, "delta": {"content": piece},
                                                               "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = {"id": "c", "object": "chat.completion.chunk", "created": 0,
                         "model": "scripted",
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(final)}\n\n".encode())
                usage_chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0,
                               "model": "scripted", "choices": [], "usage": usage}
                self.wfile.write(f"data: {json.dumps(usage_chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                return
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": reply}}
            if body.get("logprobs") and top_logprobs is not None:
                top = [{"token": token, "logprob": value, "bytes": None} for token, value in top_logprobs.items()]
                choice["logprobs"] = {"content": [{"token": reply, "logprob": top_logprobs.get(reply, -1.0),
                                                   "bytes": None, "top_logprobs": top}]}
            payload = {"id": "r", "object": "chat.completion", "created": 0, "model": "scripted",
                       "choices": [choice], "usage": usage}
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def scripted_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedOpenAI]:
    """A running scripted endpoint, configured as the ``llm`` role."""
    script = ScriptedOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    monkeypatch.setenv("SLEUTH_LLM__MODEL", "openai/scripted")
    monkeypatch.setenv("SLEUTH_LLM__API_BASE", script.url)
    monkeypatch.setenv("SLEUTH_LLM__NUM_RETRIES", "0")
    yield script
    httpd.shutdown()


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class HashEmbedder:
    """Deterministic unit vectors from hashed words: texts sharing words are similar."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row, 0] = 0.05
            for word in re.findall(r"[a-z]+", text.lower()):
                vectors[row, 1 + zlib.crc32(word.encode()) % (self.dim - 1)] += 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
