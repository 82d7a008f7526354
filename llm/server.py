"""The embedded llama.cpp servers (xllamacpp), started lazily, one per model file, at most
:data:`MAX_SERVED` at once per process (the agent's model beside the graphs' model; a third
stops the one used longest ago).

It serves the OpenAI API on 127.0.0.1 at a free port; the gateway reaches it through LiteLLM
like any other OpenAI-compatible endpoint. Prefix caching is on (``cache_prompt``), so prompts
that share a long prefix (rules, instructions) are only evaluated once.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sleuth.config import LLMRole
from sleuth.errors import EndpointError, ModelFileError
from sleuth.llm.packaged import resolve_gguf


@dataclass(frozen=True)
class ServedModel:
    name: str
    path: Path
    api_base: str
    load_seconds: float


MAX_SERVED = 2
_lock = threading.Lock()
_servers: dict[Path, tuple[object, ServedModel]] = {}  # by model file; the last used last


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(api_base: str, timeout_s: float) -> None:
    health = api_base.removesuffix("/v1") + "/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise EndpointError(f"embedded llama.cpp server did not become ready in {timeout_s:.0f} s",
                        hint="raise llm.startup_timeout_s or check free memory")


def ensure_started(role: LLMRole, cache_dir: Path) -> ServedModel:
    """Start the embedded server for ``role``'s model if it is not running yet; return where it listens."""
    with _lock:
        name, path = resolve_gguf(role.model, role.gguf, cache_dir)
        if path in _servers:
            _servers[path] = _servers.pop(path)  # now the most recently used
            return _servers[path][1]
        while len(_servers) >= MAX_SERVED:
            del _servers[next(iter(_servers))]  # xllamacpp.Server stops its loop in its destructor
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.model_alias = {name}
        params.n_ctx = role.n_ctx
        params.n_parallel = role.n_parallel
        params.cpuparams.n_threads = role.n_threads or (os.cpu_count() or 1)
        params.cpuparams_batch.n_threads = params.cpuparams.n_threads
        params.n_gpu_layers = role.n_gpu_layers
        params.cache_prompt = True
        params.use_jinja = True
        params.port = _free_port()
        params.verbosity = -1
        started = time.perf_counter()
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:  # the C++ side reports load failures as RuntimeError/ValueError
            raise ModelFileError(f"llama.cpp could not load {path}: {exc}",
                                 hint="check that the file is a complete GGUF model") from None
        api_base = f"http://127.0.0.1:{params.port}/v1"
        _wait_healthy(api_base, role.startup_timeout_s)
        served = ServedModel(name, path, api_base, time.perf_counter() - started)
        _servers[path] = (server, served)
        return served


def running() -> ServedModel | None:
    """The embedded server used last, if any."""
    with _lock:
        return next(reversed(_servers.values()))[1] if _servers else None


def stop() -> None:
    """Stop the embedded servers (also registered to run at interpreter exit)."""
    with _lock:
        _servers.clear()  # xllamacpp.Server stops its loop in its destructor


atexit.register(stop)
