"""What Sleuth is configured to use, and whether each part really works right now.

Every check does the real thing where it is cheap enough (starts the embedded model and asks it
for one token, loads the embedder and embeds a word, opens the Qdrant folder or URL), so the
report is true rather than assumed.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from sleuth.config import Settings, config_files
from sleuth.errors import SleuthError

Status = Literal["ok", "info", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    area: str
    status: Status
    detail: str


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_runtime(_: Settings) -> list[Check]:
    versions = ", ".join(f"{name} {_version(name) or 'missing'}" for name in
                         ("litellm", "langgraph", "xllamacpp", "opentelemetry-sdk", "pydantic",
                          "sentence-transformers", "transformers", "torch"))
    return [Check("sleuth", "ok", f"{_version('sleuth') or 'source'} on Python "
                  f"{platform.python_version()} ({sys.executable})"),
            Check("packages", "ok", versions)]


def check_gpu(_: Settings) -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("gpu", "fail", "torch is not installed: run the setup again")]
    build = f"torch {torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'})"
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return [Check("gpu", "ok", f"{names}; {build}")]
    return [Check("gpu", "info", f"none, running on {os.cpu_count()} CPU cores; {build}")]


def check_config(settings: Settings) -> list[Check]:
    files = config_files()
    source = ", ".join(map(str, files)) if files else "defaults (no sleuth.toml found)"
    env = sorted(name for name in os.environ if name.startswith("SLEUTH_"))
    detail = source + (f"; environment: {', '.join(env)}" if env else "")
    return [Check("config", "ok", detail),
            Check("cache", "ok" if _writable(settings.cache_dir) else "fail", str(settings.cache_dir))]


def _check_joined(model: Any, cache_dir: Path, role: str) -> Check:
    """The joined packaged model hashed whole against its pinned SHA-256, joined again when it differs."""
    from sleuth.llm import packaged

    parts = f"{model.description}, {len(model.parts)} parts {model.dist_prefix}1..{len(model.parts)}=={model.version}"
    target = packaged.joined_path(model, cache_dir)
    if not target.exists():
        return Check(f"{role} file", "ok", f"{parts}; not joined yet (joined and verified on first use)")
    if packaged.cached_and_verified(model, cache_dir, full=True):
        return Check(f"{role} file", "ok", f"{parts}; {target}: whole-file SHA-256 verified")
    try:
        packaged.ensure_joined(model, cache_dir, full=True)
    except SleuthError as exc:
        return Check(f"{role} file", "fail", f"{target} is corrupt and joining it again failed: {exc.one_line()}")
    return Check(f"{role} file", "warn", f"{target} was not the verified file (changed or corrupt): "
                 "joined again from the parts and verified")


def check_llm(settings: Settings, role: str = "llm") -> list[Check]:
    from sleuth.llm import packaged
    from sleuth.llm.gateway import Gateway

    config = getattr(settings, role)
    if not config.model and not getattr(config, "gguf", None):
        note = ("not configured (set vlm.model to a vision-capable LiteLLM model for image "
                "questions)") if role == "vlm" else "not configured"
        return [Check(role, "info", note)]
    checks = []
    if role == "llm" and not config.gguf and packaged.is_packaged(config.model):
        model = packaged.CATALOGUE[config.model]
        problems = packaged.parts_status(model)
        if problems:
            return [Check(role, "fail", f"{problems[0]} ({model.install_hint})")]
        checks.append(_check_joined(model, settings.cache_dir, role))
        if checks[-1].status == "fail":
            return checks
    gateway = Gateway(settings)
    started = time.perf_counter()
    try:
        endpoint = gateway.endpoint(role)
        result = gateway.chat([{"role": "user", "content": "Reply with OK."}], role=role,
                              max_tokens=2)
    except SleuthError as exc:
        return [*checks, Check(role, "fail", exc.one_line())]
    where = endpoint.api_base or "provider default URL"
    served = "embedded llama.cpp server" if endpoint.local else endpoint.provider
    checks.append(Check(role, "ok", f"{endpoint.display_name} via {served} at {where}: answered "
                        f"{result.text.strip()!r} in {time.perf_counter() - started:.1f} s "
                        "(start-up included)"))
    return checks


def check_embedder(settings: Settings) -> list[Check]:
    from sleuth.tools.embedder import TextEmbedder

    embedder = TextEmbedder(settings.embedder)
    started = time.perf_counter()
    try:
        vectors = embedder(["a person rides a bicycle"])
    except SleuthError as exc:
        return [Check("embedder", "fail", exc.one_line())]
    return [Check("embedder", "ok", f"{settings.embedder.model} at {embedder.model_path}: "
                  f"dimension {vectors.shape[1]}, loaded and embedded in "
                  f"{time.perf_counter() - started:.1f} s")]


def check_retriever(settings: Settings) -> list[Check]:
    """The CLIP/SigLIP retriever is loaded and embeds a query and an image; the default needs only the embedder."""
    if not settings.retriever.model:
        return [Check("retriever", "info", f"default: retrieval by caption text (captions embedded with "
                      f"{settings.embedder.model}); set retriever.model to a CLIP/SigLIP model to search images")]
    import numpy as np
    from sleuth.tools.retriever import ClipRetriever

    role = settings.retriever
    retriever = ClipRetriever(role.model, batch_size=role.batch_size, device=role.device)
    started = time.perf_counter()
    try:
        queries = retriever.embed_queries(["a person in a red coat"])
        retriever.embed_items([np.zeros((64, 32, 3), dtype=np.uint8)], [])
    except SleuthError as exc:
        return [Check("retriever", "fail", exc.one_line())]
    except Exception as exc:  # noqa: BLE001 - a model that loads but cannot embed is a failed check too
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        return [Check("retriever", "fail", f"{role.model}: {type(exc).__name__}: {reason}")]
    return [Check("retriever", "ok", f"{role.model} on {retriever.device}: dimension {queries.shape[1]}, loaded "
                  f"and embedded a query and an image in {time.perf_counter() - started:.1f} s")]


def check_perception(settings: Settings) -> list[Check]:
    """Each perception model's ONNX file is installed and unchanged, and computes its pinned fingerprint."""
    from sleuth.tools.perception import models

    checks = []
    for model in models.MODELS:
        area = f"perception {model.name}"
        try:
            path = models.model_path(model.name, settings.cache_dir)
        except SleuthError as exc:
            checks.append(Check(area, "fail", exc.one_line()))
            continue
        started = time.perf_counter()
        _, wrong = models.check_behaviour(path, model)
        if wrong:
            checks.append(Check(area, "fail", f"{path} does not compute what it should ({wrong[0]}): delete it "
                                "and run `make setup`"))
        else:
            checks.append(Check(area, "ok", f"{path} ({model.source}): loaded, outputs match the pinned "
                                f"fingerprint in {time.perf_counter() - started:.1f} s"))
    return checks


def check_qdrant(settings: Settings) -> list[Check]:
    if settings.qdrant.url:
        return [_probe_url("qdrant", settings.qdrant.url, "server")]
    path = settings.qdrant.path or settings.data_dir / "qdrant"
    if not _writable(path):
        return [Check("qdrant", "fail", f"local mode folder {path} is not writable: set "
                      "qdrant.path or QDRANT_URL")]
    try:
        from sleuth.memory.qdrant import QdrantConnection

        connection = QdrantConnection(settings, owner="doctor")  # waits its turn like every Sleuth process
        try:
            with connection.hold() as client:
                collections = [c.name for c in client.get_collections().collections]
        finally:
            connection.close()
    except ImportError:
        return [Check("qdrant", "fail", "qdrant-client is not installed: run the setup again")]
    except SleuthError as exc:
        return [Check("qdrant", "fail", exc.one_line())]
    except Exception as exc:  # noqa: BLE001 - whatever Qdrant says, in one line
        return [Check("qdrant", "fail", f"local mode in {path}: {str(exc).splitlines()[0][:160]}")]
    return [Check("qdrant", "ok", f"local mode in {path}; collections: "
                  f"{', '.join(collections) or 'none yet'}")]


def check_services(settings: Settings) -> list[Check]:
    ray = _version("ray")
    tools = settings.tools
    where = (f"Ray Serve app '{tools.serve_app}'" + (f" at {tools.ray_address}" if tools.ray_address else "")
             if tools.backend == "ray" else "in-process")
    checks = [Check("ray serve", "info", (f"ray {ray} installed; " if ray else "ray not installed; ")
                    + f"model tools run {where} (`sleuth serve tools` starts the app)")]
    from sleuth.tools.proposer import ProposerStore

    scenes = ProposerStore(settings).scenes()
    checks.append(Check("video tools", "info", f"captioner {tools.captioner.kind}"
                        + (f" ({tools.captioner.model})" if tools.captioner.model else "")
                        + f"; calibrated scenes: {', '.join(scenes) or 'none yet (sleuth calibrate proposer)'}"))
    tracing = settings.tracing
    if tracing.exporter == "otlp":
        endpoint = tracing.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT",
                                                      "http://localhost:4318")
        checks.append(_probe_url("tracing", endpoint, "OTLP endpoint", warn_only=True))
    else:
        checks.append(Check("tracing", "info", f"exporter {tracing.exporter}; message content "
                            f"{'recorded' if tracing.capture_content else 'not recorded'}"))
    return checks


def check_data(settings: Settings) -> list[Check]:
    if not settings.data_dirs:
        return [Check("data", "info", "no data folders configured (data_dirs)")]
    return [Check("data", "ok" if path.is_dir() and os.access(path, os.R_OK) else "fail",
                  f"{path}" + ("" if path.is_dir() else " does not exist"))
            for path in settings.data_dirs]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def _probe_url(area: str, url: str, what: str, warn_only: bool = False) -> Check:
    parsed = urlparse(url)
    host, port = parsed.hostname or "localhost", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=3):
            return Check(area, "ok", f"{what} {url} reachable")
    except OSError as exc:
        return Check(area, "warn" if warn_only else "fail", f"{what} {url} unreachable ({exc.strerror or exc})")


CHECKS: list[Callable[[Settings], list[Check]]] = [
    check_runtime, check_gpu, check_config, check_llm,
    lambda settings: check_llm(settings, "vlm"),
    check_embedder, check_retriever, check_perception, check_qdrant, check_services, check_data,
]


def run_checks(settings: Settings) -> list[Check]:
    return [check for function in CHECKS for check in function(settings)]
