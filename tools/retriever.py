"""Retriever tool: text queries and gallery items (person crops, frames) in one vector space.

Two kinds, both returning L2-normalised float32 rows, so a dot product is a cosine similarity:

* :class:`ClipRetriever` (vector ``"image"``): a CLIP/SigLIP-family dual encoder loaded with
  transformers ``AutoModel``/``AutoProcessor`` from a local folder or a Hugging Face id (offline);
  queries go through the text tower, items through the image tower.
* :class:`CaptionTextRetriever` (vector ``"caption"``): the embedded default. Items are their
  captions (the default captioner's descriptions), embedded with the text embedder like the query.

:func:`build_retriever` picks one from ``settings.retriever``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from sleuth import telemetry
from sleuth.errors import ModelFileError

if TYPE_CHECKING:
    from sleuth.config import Settings
    from sleuth.tools.toolset import Embedder

VectorName = Literal["image", "caption"]


class Retriever(Protocol):
    """What indexing and search use: one vector per query and per gallery item."""

    name: str  # the model name shown in reports (a CLIP path, or "<embedder> (captions)")
    vector: str  # the gallery's named vector it searches: "image" (CLIP-family) or "caption" (text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 unit rows."""
        ...

    def embed_items(self, images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
        """(n, d) float32 unit rows for n items, given as RGB uint8 HxWx3 crops and their captions."""
        ...


def _unit_rows(vectors: Any) -> np.ndarray:
    """float32 rows scaled to length 1 (a zero row stays zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected an (n, d) array of vectors, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)


def _items_count(images: Sequence[np.ndarray], captions: Sequence[str]) -> int:
    """The number of items; the unused sequence may be empty, otherwise both must match."""
    if len(images) and len(captions) and len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions: give one of each per item")
    return max(len(images), len(captions))


def _features(output: Any, kind: Literal["image", "text"]) -> Any:
    """The projected embeddings from ``get_*_features``: a tensor (transformers 4.x) or a ModelOutput (5.x)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    for field in (f"{kind}_embeds", "pooler_output"):
        value = getattr(output, field, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"get_{kind}_features returned {type(output).__name__} without embeddings")


class ClipRetriever:
    """A CLIP/SigLIP-family dual encoder through transformers, loaded lazily on first use.

    Works for any ``AutoModel`` with ``get_image_features``/``get_text_features`` (CLIPModel,
    SiglipModel, ...). SigLIP was trained with text padded to its full length, so its queries are
    padded to ``max_length``; CLIP's are padded to the longest in the batch.
    """

    vector: VectorName = "image"

    def __init__(self, model: str, *, batch_size: int = 32, device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.name = model
        self.model_path = model
        self.batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._processor: Any = None
        self._dimension: int | None = None
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def load(self) -> ClipRetriever:
        """Load the weights and processor now (the first call does it otherwise)."""
        self._load()
        return self

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                self._model, self._processor = self._read()
            return self._model, self._processor

    def _read(self) -> tuple[Any, Any]:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output
        hf_logging.set_verbosity_error()
        hint = "set retriever.model to a local CLIP/SigLIP model folder, or unset it to retrieve by captions"
        local = Path(self.model_path).expanduser()
        if self.model_path.startswith((".", "/", "~")) and not local.is_dir():
            raise ModelFileError(f"retriever model folder {local} does not exist", hint=hint)
        source = str(local) if local.is_dir() else self.model_path
        try:
            model = AutoModel.from_pretrained(source)
            processor = AutoProcessor.from_pretrained(source)
        except (OSError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ModelFileError(f"cannot load retriever '{self.model_path}': {reason}", hint=hint) from None
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ModelFileError(f"retriever '{self.model_path}' is a {type(model).__name__}, not a CLIP/SigLIP-"
                                 "family dual encoder (no image and text features)", hint=hint)
        return model.to(self.device).eval(), processor

    @property
    def dimension(self) -> int:
        """Length of the vectors (the projection size), read by embedding one short text."""
        if self._dimension is None:
            self._dimension = int(self._encode_texts(["a"]).shape[1])
        return self._dimension

    @property
    def _pads_to_max_length(self) -> bool:
        return "siglip" in str(getattr(self._model.config, "model_type", ""))

    def _text_max_length(self) -> int | None:
        text_config = getattr(self._model.config, "text_config", None)
        return getattr(text_config, "max_position_embeddings", None)

    def _encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model, processor = self._load()
        padding = "max_length" if self._pads_to_max_length else True
        rows = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = processor(text=list(texts[start:start + self.batch_size]), padding=padding,
                                  truncation=True, max_length=self._text_max_length(), return_tensors="pt")
                features = _features(model.get_text_features(**batch.to(self.device)), "text")
                rows.append(_unit_rows(features.float().cpu().numpy()))
        return np.vstack(rows)

    def _encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        model, processor = self._load()
        rows = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                pictures = [Image.fromarray(_rgb(image)) for image in images[start:start + self.batch_size]]
                batch = processor(images=pictures, return_tensors="pt")
                features = _features(model.get_image_features(**batch.to(self.device)), "image")
                rows.append(_unit_rows(features.float().cpu().numpy()))
        return np.vstack(rows)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 unit vectors from the text tower."""
        with telemetry.tool_span("retrieve_embed_queries") as span:
            span.set_attribute("sleuth.batch.size", len(texts))
            span.set_attribute("sleuth.retriever.model", self.name)
            if not texts:
                return np.zeros((0, self.dimension), dtype=np.float32)
            return self._encode_texts(texts)

    def embed_items(self, images: Sequence[np.ndarray], captions: Sequence[str] = ()) -> np.ndarray:
        """(len(images), d) float32 unit vectors from the image tower; captions are not used."""
        with telemetry.tool_span("retrieve_embed_items") as span:
            span.set_attribute("sleuth.batch.size", len(images))
            span.set_attribute("sleuth.retriever.model", self.name)
            if _items_count(images, captions) and not len(images):
                raise ValueError(f"the '{self.name}' retriever embeds item images: got captions only")
            if not len(images):
                return np.zeros((0, self.dimension), dtype=np.float32)
            return self._encode_images(images)


def _rgb(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 array (grey images are repeated over three channels, RGBA loses alpha)."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or 0 in array.shape[:2]:
        raise ValueError(f"expected an RGB HxWx3 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


class CaptionTextRetriever:
    """The embedded default: items are retrieved by their captions, embedded like the query text."""

    vector: VectorName = "caption"

    def __init__(self, embedder: Embedder, name: str = "all-MiniLM-L6-v2") -> None:
        self.embedder = embedder
        self.name = f"{name} (captions)"

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), d) float32 unit vectors: the embedder's vectors of the query texts."""
        with telemetry.tool_span("retrieve_embed_queries") as span:
            span.set_attribute("sleuth.batch.size", len(texts))
            span.set_attribute("sleuth.retriever.model", self.name)
            return _unit_rows(self.embedder(list(texts)))

    def embed_items(self, images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
        """(len(captions), d) float32 unit vectors of the captions; the images are not used."""
        with telemetry.tool_span("retrieve_embed_items") as span:
            span.set_attribute("sleuth.batch.size", len(captions))
            span.set_attribute("sleuth.retriever.model", self.name)
            if _items_count(images, captions) and not len(captions):
                raise ValueError(f"the '{self.name}' retriever embeds item captions: got images only")
            return _unit_rows(self.embedder(list(captions)))


def build_retriever(settings: Settings, embedder: Embedder | None = None) -> Retriever:
    """The retriever of ``settings.retriever``: a CLIP-family model, or caption text with ``embedder``.

    ``embedder`` (default: a :class:`~sleuth.tools.embedder.TextEmbedder` of ``settings.embedder``)
    is used only by the caption-text default.
    """
    role = settings.retriever
    if role.model:
        return ClipRetriever(role.model, batch_size=role.batch_size, device=role.device)
    if embedder is None:
        from sleuth.tools.embedder import TextEmbedder

        embedder = TextEmbedder(settings.embedder)
    return CaptionTextRetriever(embedder, name=settings.embedder.model)
