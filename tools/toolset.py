"""The one interface through which graphs reach the model tools, in this process or on Ray Serve.

A graph asks :func:`open_tools` for a :class:`ToolSet` and calls ``tools.embedder(texts)``,
``tools.captioner.caption(frames)``, ``tools.sampler.sample(scores)``,
``tools.proposer(scene).score(frames)`` and ``tools.retriever.embed_queries(texts)``. Whether
those run here or as Ray Serve deployments is configuration only (``tools.backend``): both
backends expose the same methods and return the same types.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sleuth.config import Settings, load_settings

if TYPE_CHECKING:
    from sleuth.tools.frames import Frame
    from sleuth.tools.retriever import Retriever


class Embedder(Protocol):
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 unit vectors."""
        ...


class Captioner(Protocol):
    def caption(self, frames: Sequence[Frame]) -> list[str]:
        """One caption per frame, in order."""
        ...


class Sampler(Protocol):
    def sample(self, scores: Sequence[float] | np.ndarray) -> list[int]:
        """Sorted positions into ``scores`` to look at."""
        ...


class SceneProposer(Protocol):
    def score(self, frames: Sequence[Frame]) -> Any:
        """A ``ProposalScores`` for ``frames`` (see :mod:`sleuth.tools.proposer`)."""
        ...


class ToolSet(Protocol):
    """What a graph sees of the model tools (a static type: the tools are built on first access)."""

    @property
    def embedder(self) -> Embedder: ...

    @property
    def captioner(self) -> Captioner: ...

    @property
    def sampler(self) -> Sampler: ...

    def proposer(self, scene: str) -> SceneProposer: ...

    @property
    def retriever(self) -> Retriever: ...


class InProcessTools:
    """The plain tool classes in this process, each built on first use and then reused.

    Any tool can be passed in ready-made (tests hand in fakes); the rest are built from
    ``settings``. Proposers come from the scene store, which reloads a recalibrated scene.
    """

    def __init__(self, settings: Settings, *, embedder: Embedder | None = None,
                 captioner: Captioner | None = None, sampler: Sampler | None = None,
                 proposer: Callable[[str], SceneProposer] | None = None,
                 retriever: Retriever | None = None) -> None:
        self.settings = settings
        self._tools: dict[str, Any] = {"embedder": embedder, "captioner": captioner, "sampler": sampler,
                                       "retriever": retriever}
        self._load_proposer = proposer
        self._lock = threading.RLock()

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if self._tools.get(name) is None:
                self._tools[name] = build()
            return self._tools[name]

    @property
    def embedder(self) -> Embedder:
        def build() -> Embedder:
            from sleuth.tools.embedder import TextEmbedder

            return TextEmbedder(self.settings.embedder)

        return self._get("embedder", build)

    @property
    def captioner(self) -> Captioner:
        def build() -> Captioner:
            from sleuth.tools.captioners import build_captioner

            return build_captioner(self.settings)

        return self._get("captioner", build)

    @property
    def sampler(self) -> Sampler:
        def build() -> Sampler:
            from sleuth.tools.sampler import AnomalyFocusedSampler

            return AnomalyFocusedSampler()

        return self._get("sampler", build)

    @property
    def retriever(self) -> Retriever:
        """``settings.retriever``: a CLIP-family model, or caption text with this toolset's embedder."""

        def build() -> Retriever:
            from sleuth.tools.retriever import build_retriever

            return build_retriever(self.settings, None if self.settings.retriever.model else self.embedder)

        return self._get("retriever", build)

    def proposer(self, scene: str) -> SceneProposer:
        """The scene's proposer. The store caches it and reloads it when the scene is recalibrated."""
        with self._lock:
            if self._load_proposer is None:
                from sleuth.tools.proposer import ProposerStore

                self._load_proposer = ProposerStore(self.settings).load
            return self._load_proposer(scene)


def open_tools(settings: Settings | None = None, **tools: Any) -> ToolSet:
    """The tools for ``settings.tools.backend``: 'inprocess' (plain classes) or 'ray' (Serve handles).

    ``tools`` (embedder=, captioner=, sampler=, proposer=, retriever=) replace single in-process tools.
    The 'ray' backend raises :class:`~sleuth.errors.SleuthError` when the Serve app is not running.
    """
    settings = settings or load_settings()
    if settings.tools.backend == "ray":
        if tools:
            raise TypeError(f"tool overrides ({', '.join(tools)}) apply to the in-process backend only")
        from sleuth.tools.remote import RayServeTools

        return RayServeTools(settings)
    return InProcessTools(settings, **tools)
