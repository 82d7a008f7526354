"""Ray Serve deployments, one per model tool, each wrapping the same plain class that runs in-process.

Nothing about resources is fixed here: replicas, autoscaling, ``max_ongoing_requests``, CPUs and
GPUs per replica (``ray_actor_options``) and batch sizes (``user_config``) come from the Serve
config (``serve/tools.yaml``, or a RayService's ``serveConfigV2``).

Each replica builds its tool in the constructor. A tool that fails to load does not crash the
replica; its one-line reason is kept and :meth:`_ToolReplica.check_health` raises it, so the
replica never becomes ready and ``serve status`` shows why.

This module imports only Ray and numpy at the top: the Serve controller imports it to build the
application, and the tools' heavy dependencies (torch, OpenCV) load inside the replicas only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from ray import serve
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.tools.remote import CAPTIONER, EMBEDDER, PROPOSER, RETRIEVER, SAMPLER, TOOL_DEPLOYMENTS

if TYPE_CHECKING:
    from ray.serve.handle import DeploymentHandle
    from sleuth.tools.frames import Frame
    from starlette.requests import Request

INGRESS = "ToolsIngress"  # the tools' deployment names come from sleuth.tools.remote, the client side

logger = logging.getLogger("ray.serve")
T = TypeVar("T")


class ToolNotReady(RuntimeError):
    """The replica's tool failed to load; the message says why and what to do."""


def replica_settings(args: Mapping[str, Any]) -> Settings:
    """The settings a replica builds its tool from.

    ``args`` are the application's args: ``config`` (a sleuth.toml path on the replica's node)
    and ``settings`` (nested overrides, e.g. what ``sleuth serve tools`` resolved on the driver),
    applied on top; the replica's own ``SLEUTH_*`` environment fills in the rest.
    """
    values: dict[str, Any] = {}
    if args.get("config"):
        path = Path(str(args["config"]))
        try:
            values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SleuthError(f"cannot read the app's sleuth config {path}: {exc}",
                              hint="fix `args.config` in the Serve config") from None
    return load_settings(**deep_merge(values, dict(args.get("settings") or {})))


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SleuthError):
        return exc.one_line()
    first = (str(exc).splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _split(values: Any, sizes: Sequence[int]) -> list[Any]:
    """Cut one batch result back into the callers' parts."""
    bounds = np.cumsum(sizes)[:-1].tolist()
    if isinstance(values, np.ndarray):
        return np.split(values, bounds)
    values = list(values)
    return [values[start:stop] for start, stop in zip([0, *bounds], [*bounds, len(values)], strict=True)]


def _configure_batching(method: Any, user_config: Mapping[str, Any]) -> None:
    if "max_batch_size" in user_config:
        method.set_max_batch_size(int(user_config["max_batch_size"]))
    if "batch_wait_timeout_s" in user_config:
        method.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))


class _ToolReplica:
    """Loads one tool in the constructor and reports a failed load through ``check_health``."""

    name = "tool"

    def __init__(self) -> None:
        self._failure: str | None = None

    def _build(self, build: Callable[[], T]) -> T | None:
        try:
            tool = build()
        except Exception as exc:  # noqa: BLE001 - reported by check_health, the replica stays up to say so
            self._failure = f"{self.name} failed to load: {_one_line(exc)}"
            logger.exception(self._failure)
            return None
        self._failure = None
        return tool

    def _ready(self, tool: T | None) -> T:
        if tool is None:
            raise ToolNotReady(self._failure or f"{self.name} is not loaded")
        return tool

    def check_health(self) -> None:
        """Serve's readiness and liveness check: fails while the wrapped model is not loaded."""
        if self._failure:
            raise ToolNotReady(self._failure)


@serve.deployment
class Embedder(_ToolReplica):
    """:class:`~sleuth.tools.embedder.TextEmbedder`; concurrent calls are batched into one encode."""

    name = EMBEDDER

    def __init__(self, args: Mapping[str, Any]) -> None:
        super().__init__()
        self.embedder = self._build(lambda: self._load(args))

    @staticmethod
    def _load(args: Mapping[str, Any]) -> Any:
        from sleuth.tools.embedder import TextEmbedder

        embedder = TextEmbedder(replica_settings(args).embedder)
        _ = embedder.dimension  # loads the weights now: a ready replica has its model in memory
        return embedder

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """``user_config``: ``max_batch_size`` (calls per batch), ``batch_wait_timeout_s``."""
        _configure_batching(self._embed_batch, user_config)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 unit vectors, as ``TextEmbedder(texts)``."""
        result = await self._embed_batch(list(texts))
        if isinstance(result, BaseException):
            raise result
        return result

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, requests: list[list[str]]) -> list[np.ndarray | BaseException]:
        try:
            embedder = self._ready(self.embedder)
            vectors = await asyncio.to_thread(embedder, [text for texts in requests for text in texts])
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
            return [exc] * len(requests)
        return _split(vectors, [len(texts) for texts in requests])


@serve.deployment
class Captioner(_ToolReplica):
    """The configured captioner (``sleuth.tools.captioners.build_captioner``), batched over calls.

    A captioner whose captions depend on neighbouring frames (the structured describer tracks
    objects across them) captions each call's frames alone; one that sets
    ``independent_frames = True`` (a VLM) gets the frames of all calls in a batch at once.
    A captioner with a ``load()`` method has it called when the replica starts.
    """

    name = CAPTIONER

    def __init__(self, args: Mapping[str, Any]) -> None:
        super().__init__()
        self.captioner = self._build(lambda: self._load(args))

    @staticmethod
    def _load(args: Mapping[str, Any]) -> Any:
        from sleuth.tools.captioners import build_captioner

        captioner = build_captioner(replica_settings(args))
        load = getattr(captioner, "load", None)
        if callable(load):  # a lazily loading VLM loads its weights now, so ready means loaded
            load()
        return captioner

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """``user_config``: ``max_batch_size`` (calls per batch), ``batch_wait_timeout_s``."""
        _configure_batching(self._caption_batch, user_config)

    async def caption(self, frames: Sequence[Frame]) -> list[str]:
        """One caption per frame, as ``captioner.caption(frames)``."""
        result = await self._caption_batch(list(frames))
        if isinstance(result, BaseException):
            raise result
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _caption_batch(self, requests: list[list[Frame]]) -> list[list[str] | BaseException]:
        try:
            captioner = self._ready(self.captioner)
        except ToolNotReady as exc:
            return [exc] * len(requests)
        if getattr(captioner, "independent_frames", False):
            try:
                captions = await asyncio.to_thread(captioner.caption, [f for frames in requests for f in frames])
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
                return [exc] * len(requests)
            return _split(captions, [len(frames) for frames in requests])
        results: list[list[str] | BaseException] = []
        for frames in requests:
            try:
                results.append(await asyncio.to_thread(captioner.caption, frames))
            except Exception as exc:  # noqa: BLE001 - only this caller gets its error
                results.append(exc)
        return results


@serve.deployment
class Sampler(_ToolReplica):
    """:class:`~sleuth.tools.sampler.AnomalyFocusedSampler`; ``user_config`` may set ``n`` and ``tau``."""

    name = SAMPLER

    def __init__(self, args: Mapping[str, Any]) -> None:
        super().__init__()
        self.sampler = self._build(self._load)

    @staticmethod
    def _load(**options: Any) -> Any:
        from sleuth.tools.sampler import AnomalyFocusedSampler

        return AnomalyFocusedSampler(**options)

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        options = {key: user_config[key] for key in ("n", "tau") if key in user_config}
        if options:
            self.sampler = self._build(lambda: self._load(**options))

    def sample(self, scores: Sequence[float] | np.ndarray) -> list[int]:
        """Sorted frame positions, dense where the anomaly scores are high."""
        return self._ready(self.sampler).sample(scores)


@serve.deployment
class Proposer(_ToolReplica):
    """Per-scene SSL proposers from :class:`~sleuth.tools.proposer.ProposerStore`.

    The store keeps each scene's loaded checkpoint and reloads it when the file changes (a
    scene recalibrated while the app runs), so only the first call for a scene pays the load.
    """

    name = PROPOSER

    def __init__(self, args: Mapping[str, Any]) -> None:
        super().__init__()
        self.store = self._build(lambda: self._load(args))
        self._lock = threading.Lock()

    @staticmethod
    def _load(args: Mapping[str, Any]) -> Any:
        from sleuth.tools.proposer import ProposerStore

        return ProposerStore(replica_settings(args))

    def score(self, scene: str, frames: Sequence[Frame]) -> Any:
        """``ProposalScores`` of ``frames`` from the scene's trained proposer."""
        store = self._ready(self.store)
        with self._lock:  # one load per scene even when calls for it arrive together
            proposer = store.load(scene)
        return proposer.score(list(frames))

    def scenes(self) -> list[str]:
        """Scenes with a trained proposer checkpoint."""
        return list(self._ready(self.store).scenes())


@serve.deployment
class Retriever(_ToolReplica):
    """The configured retriever (``sleuth.tools.retriever.build_retriever``), batched over calls.

    Concurrent ``embed_queries`` calls are merged into one encode, and so are ``embed_items``
    calls. With the embedded default (caption text) the replica holds its own text embedder.
    """

    name = RETRIEVER

    def __init__(self, args: Mapping[str, Any]) -> None:
        super().__init__()
        self.retriever = self._build(lambda: self._load(args))
        self._dimension: int | None = None

    @staticmethod
    def _load(args: Mapping[str, Any]) -> Any:
        from sleuth.tools.retriever import build_retriever

        retriever = build_retriever(replica_settings(args))
        retriever.embed_queries(["a person"])  # loads the weights now: a ready replica has its model in memory
        return retriever

    def reconfigure(self, user_config: Mapping[str, Any]) -> None:
        """``user_config``: ``max_batch_size`` (calls per batch), ``batch_wait_timeout_s``."""
        _configure_batching(self._queries_batch, user_config)
        _configure_batching(self._items_batch, user_config)

    def info(self) -> dict[str, Any]:
        """``name`` (the model shown in reports), ``vector`` (the gallery vector it searches) and ``dimension``."""
        retriever = self._ready(self.retriever)
        if self._dimension is None:
            self._dimension = int(retriever.embed_queries(["a person"]).shape[1])
        return {"name": retriever.name, "vector": retriever.vector, "dimension": self._dimension}

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 unit vectors, as ``retriever.embed_queries(texts)``."""
        result = await self._queries_batch(list(texts))
        if isinstance(result, BaseException):
            raise result
        return result

    async def embed_items(self, images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
        """(n, d) float32 unit vectors, as ``retriever.embed_items(images, captions)``."""
        result = await self._items_batch((list(images), list(captions)))
        if isinstance(result, BaseException):
            raise result
        return result

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _queries_batch(self, requests: list[list[str]]) -> list[np.ndarray | BaseException]:
        try:
            retriever = self._ready(self.retriever)
            vectors = await asyncio.to_thread(retriever.embed_queries, [text for texts in requests for text in texts])
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
            return [exc] * len(requests)
        return _split(vectors, [len(texts) for texts in requests])

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _items_batch(self, requests: list[tuple[list[np.ndarray], list[str]]]
                           ) -> list[np.ndarray | BaseException]:
        try:
            retriever = self._ready(self.retriever)
        except ToolNotReady as exc:
            return [exc] * len(requests)
        # Merged only when every caller gives an image and a caption per item; otherwise each call
        # runs alone, so a caller that left out the part the retriever uses gets its own error.
        if all(len(images) == len(captions) for images, captions in requests):
            try:
                vectors = await asyncio.to_thread(retriever.embed_items,
                                                  [image for images, _ in requests for image in images],
                                                  [caption for _, captions in requests for caption in captions])
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
                return [exc] * len(requests)
            return _split(vectors, [len(images) for images, _ in requests])
        results: list[np.ndarray | BaseException] = []
        for images, captions in requests:
            try:
                results.append(await asyncio.to_thread(retriever.embed_items, images, captions))
            except Exception as exc:  # noqa: BLE001 - only this caller gets its error
                results.append(exc)
        return results


@serve.deployment
class ToolsIngress:
    """The application's ingress: holds the tool handles and answers a small JSON API over HTTP.

    Graphs do not go through it (they get a handle per deployment); it gives the app one entry
    point and lets non-Python clients embed texts, embed search queries and sample scores:
    ``GET <route>`` lists the tools, ``POST <route>/embed {"texts": [...]}``,
    ``POST <route>/retrieve {"texts": [...]}`` (the retriever's query vectors) and
    ``POST <route>/sample {"scores": [...]}``.
    """

    def __init__(self, embedder: DeploymentHandle, captioner: DeploymentHandle,
                 sampler: DeploymentHandle, proposer: DeploymentHandle, retriever: DeploymentHandle) -> None:
        self.embedder = embedder
        self.captioner = captioner
        self.sampler = sampler
        self.proposer = proposer
        self.retriever = retriever

    async def __call__(self, request: Request) -> Any:
        from starlette.responses import JSONResponse

        action = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET":
            return {"tools": list(TOOL_DEPLOYMENTS)}
        if action not in ("embed", "retrieve", "sample"):
            return JSONResponse({"error": f"unknown action '{action}': use embed, retrieve or sample"},
                                status_code=404)
        body = await request.json()
        field = "scores" if action == "sample" else "texts"
        if not isinstance(body, dict) or not isinstance(body.get(field), list):
            return JSONResponse({"error": f"send a JSON object with a list '{field}'"}, status_code=400)
        if action == "embed":
            vectors = await self.embedder.embed.remote(body[field])
            return {"vectors": vectors.tolist()}
        if action == "retrieve":
            vectors = await self.retriever.embed_queries.remote(body[field])
            return {"vectors": vectors.tolist()}
        return {"indices": await self.sampler.sample.remote(body[field])}
