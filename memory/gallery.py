"""Galleries: the indexed person crops, object crops and whole frames that ``sleuth search`` retrieves.

One gallery is one Qdrant collection (``sleuth_gallery_<name>``) with named vectors: ``caption``
(the item's description embedded with the text embedder) on every item, and ``image`` (a
CLIP/SigLIP-family embedding of the crop) when a CLIP-family retriever indexed it. Each point's
payload says where the item comes from (video, frame index, time, crop box) and holds its caption.

The collection's metadata remembers which model made each named vector, so a search with another
model fails with one clear line instead of returning meaningless neighbours. Point ids are
deterministic (gallery, video, frame, box), so indexing a video again overwrites its items.

Storage follows ``settings.qdrant`` like the rule memory (see :mod:`sleuth.memory.qdrant`): in local
mode each method that reads and then writes (or reads several times) holds the folder for its
whole length, so another process cannot come in between; between calls other processes may use it.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from threading import Lock
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import numpy as np
from pydantic import BaseModel, Field
from qdrant_client import QdrantClient, models
from sleuth.config import Settings, load_settings
from sleuth.errors import SleuthError
from sleuth.memory import qdrant
from sleuth.memory.qdrant import QdrantConnection

Kind = Literal["person", "object", "frame"]
KINDS: tuple[Kind, ...] = ("person", "object", "frame")
PREFIX = "sleuth_gallery_"
_NAMESPACE = uuid.UUID("0b7f6a52-2d4e-4c1a-8a57-93c5e1f0d2b4")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PAGE = 1024
_BATCH = 256


class GalleryError(SleuthError):
    """A gallery cannot do what was asked (bad name, other model, storage problem)."""


class GalleryNotFound(GalleryError):
    """No gallery of that name is stored."""


class GalleryUnavailable(GalleryError, qdrant.QdrantUnavailable):
    """The Qdrant server in ``QDRANT_URL`` cannot be reached or refused the request."""


class GalleryLocked(GalleryError, qdrant.QdrantLocked):
    """The local-mode folder stayed in use by another process for longer than ``qdrant.lock_wait_s``."""


_ERRORS = qdrant.ErrorKinds(what="gallery store", base=GalleryError, unavailable=GalleryUnavailable,
                            locked=GalleryLocked)


class GalleryItem(BaseModel):
    """One retrievable item: a crop of one object in one frame, or a whole frame."""

    id: str = Field(description="Deterministic uuid5 of (gallery, video, frame, box).")
    video: str = Field(description="Absolute path of the source video or frame folder.")
    frame: int = Field(description="Source frame index.")
    time_s: float
    kind: Kind = Field(description="person/object crop, or the whole frame.")
    box: tuple[int, int, int, int] | None = Field(
        default=None, description="x1, y1, x2, y2 in source pixels; None for whole frames.")
    track: int | None = None
    caption: str = Field(description="The captioner's description of the crop or frame.")


class SearchHit(BaseModel):
    item: GalleryItem
    score: float = Field(description="Cosine similarity (S1).")


class GalleryInfo(BaseModel):
    name: str
    items: int
    vectors: dict[str, int] = Field(description="Named vector -> dimension.")
    models: dict[str, str] = Field(description="Named vector -> the model that made it.")
    videos: list[str] = Field(default_factory=list)
    created: str = Field(default="", description="When the gallery was created (ISO 8601, UTC).")


def item_id(gallery: str, video: str, frame: int, box: Sequence[int] | None) -> str:
    """Deterministic point id: the same crop of the same frame of the same video is one point."""
    where = "frame" if box is None else ",".join(str(int(v)) for v in box)
    return str(uuid.uuid5(_NAMESPACE, f"{gallery}/{video}/{frame}/{where}"))


def check_name(gallery: str) -> str:
    if not _NAME.match(gallery):
        raise GalleryError(f"invalid gallery name {gallery!r}",
                           hint="use letters, digits, '-', '_' or '.' (up to 64, starting with a letter or digit)")
    return gallery


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _held(method: Callable[Concatenate[GalleryStore, _P], _R]) -> Callable[Concatenate[GalleryStore, _P], _R]:
    """Run the method in one :meth:`~sleuth.memory.qdrant.QdrantStore.hold` of the store."""
    @wraps(method)
    def held(self: GalleryStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.hold():
            return method(self, *args, **kwargs)
    return held


def _reindex_hint(gallery: str) -> str:
    return f"rebuild it with `sleuth index <videos> --gallery {gallery} --replace`, or index into a new gallery"


class GalleryStore(qdrant.QdrantStore):
    """Galleries in Qdrant. ``GalleryStore()`` reads the settings like the CLI; close it (or use ``with``).

    ``GalleryStore.in_memory()`` keeps everything in this process (tests).
    """

    def __init__(self, settings: Settings | None = None, *, client: QdrantClient | None = None,
                 timeout_s: int = 5) -> None:
        self.settings = settings or load_settings()
        self._connection = QdrantConnection(self.settings, owner="galleries", errors=_ERRORS, client=client,
                                            timeout_s=timeout_s)

    @classmethod
    def in_memory(cls, settings: Settings | None = None) -> GalleryStore:
        """A store that lives in this process only (nothing on disk)."""
        return cls(settings or Settings(), client=QdrantClient(":memory:"))

    # -- galleries ------------------------------------------------------------------------------

    def exists(self, gallery: str) -> bool:
        with self._connection.guard():
            return self.client.collection_exists(PREFIX + check_name(gallery))

    def _collection(self, gallery: str) -> str:
        """The collection of an existing gallery (GalleryNotFound otherwise)."""
        if not self.exists(gallery):
            raise self.not_found(gallery)
        return PREFIX + gallery

    def names(self) -> list[str]:
        """Every stored gallery's name, sorted."""
        with self._connection.guard():
            collections = self.client.get_collections().collections
        return sorted(c.name[len(PREFIX):] for c in collections if c.name.startswith(PREFIX))

    def not_found(self, gallery: str) -> GalleryNotFound:
        known = ", ".join(self.names()) or "none"
        return GalleryNotFound(f"no gallery '{gallery}' (stored galleries: {known})",
                               hint=f"list them with `sleuth galleries`, or build it with "
                                    f"`sleuth index <video> --gallery {gallery}`")

    @_held
    def create(self, gallery: str, vectors: Mapping[str, tuple[int, str]], *, replace: bool = False) -> None:
        """Make ``gallery`` with named vectors ``name -> (dimension, model name)``.

        An existing gallery is kept when it has the same vectors from the same models (indexing
        adds to it) and dropped first with ``replace``; other vectors or models are an error.
        """
        if not vectors:
            raise GalleryError("a gallery needs at least one named vector")
        collection = PREFIX + check_name(gallery)
        wanted = {name: (int(dim), str(model)) for name, (dim, model) in vectors.items()}
        if self.exists(gallery):
            if not replace:
                info = self._schema(gallery)
                stored = {name: (info.vectors.get(name, 0), info.models.get(name, "?")) for name in info.vectors}
                if stored != wanted:
                    raise GalleryError(f"gallery '{gallery}' holds {_describe(stored)}, not {_describe(wanted)}",
                                       hint=_reindex_hint(gallery))
                return
            self.delete(gallery)
        metadata = {"models": {name: model for name, (_, model) in wanted.items()}, "videos": [],
                    "created": datetime.now(UTC).isoformat(timespec="seconds")}
        with self._connection.guard():
            self.client.create_collection(
                collection,
                vectors_config={name: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                                for name, (dim, _) in wanted.items()},
                metadata=metadata)
            with warnings.catch_warnings():  # local mode: "payload indexes have no effect"
                warnings.simplefilter("ignore")
                for field, schema in (("kind", models.PayloadSchemaType.KEYWORD),
                                      ("video", models.PayloadSchemaType.KEYWORD)):
                    self.client.create_payload_index(collection, field, field_schema=schema)

    @_held
    def delete(self, gallery: str) -> None:
        """Drop ``gallery`` and all its items."""
        collection = self._collection(gallery)
        with self._connection.guard():
            self.client.delete_collection(collection)

    @_held
    def _schema(self, gallery: str, *, count: bool = False) -> GalleryInfo:
        """The gallery's vectors, models and videos; its item count only with ``count``."""
        collection = self._collection(gallery)
        with self._connection.guard():
            description = self.client.get_collection(collection)
            items = self.client.count(collection, exact=True).count if count else 0
        params = description.config.params.vectors
        vectors = ({name: int(p.size) for name, p in params.items()} if isinstance(params, dict)
                   else {"": int(params.size)} if params is not None else {})
        metadata = dict(getattr(description.config, "metadata", None) or {})
        return GalleryInfo(name=gallery, items=items, vectors=vectors,
                           models={k: str(v) for k, v in (metadata.get("models") or {}).items()},
                           videos=sorted(metadata.get("videos") or []), created=str(metadata.get("created", "")))

    def info(self, gallery: str) -> GalleryInfo:
        """Name, item count, vectors (dimension and model) and videos of ``gallery``."""
        return self._schema(gallery, count=True)

    @_held
    def galleries(self) -> list[GalleryInfo]:
        """Every stored gallery, by name."""
        return [self.info(name) for name in self.names()]

    # -- items ----------------------------------------------------------------------------------

    @_held
    def add(self, gallery: str, items: Sequence[GalleryItem], vectors: Mapping[str, np.ndarray]) -> None:
        """Store ``items`` with one row per item of each named vector (same ids overwrite)."""
        collection = PREFIX + gallery
        info = self._schema(gallery)
        if set(vectors) != set(info.vectors):
            raise GalleryError(f"gallery '{gallery}' stores vectors {sorted(info.vectors)}, got {sorted(vectors)}",
                               hint=_reindex_hint(gallery))
        arrays = {}
        for name, array in vectors.items():
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 2 or array.shape != (len(items), info.vectors[name]):
                raise GalleryError(f"'{name}' vectors of shape {array.shape} for {len(items)} items of gallery "
                                   f"'{gallery}' ({info.vectors[name]}-dimensional)", hint=_reindex_hint(gallery))
            arrays[name] = array
        if not items:
            return
        points = [models.PointStruct(id=item.id, vector={name: arrays[name][row].tolist() for name in arrays},
                                     payload=item.model_dump(mode="json", exclude={"id"}))
                  for row, item in enumerate(items)]
        videos = sorted(set(info.videos) | {item.video for item in items})
        with self._connection.guard():
            for start in range(0, len(points), _BATCH):
                self.client.upsert(collection, points=points[start:start + _BATCH], wait=True)
            if videos != info.videos:
                self.client.update_collection(collection, metadata={"videos": videos})

    @_held
    def remove_video(self, gallery: str, video: str) -> None:
        """Drop the items of one source video (before indexing it again with other settings)."""
        collection = self._collection(gallery)
        with self._connection.guard():
            self.client.delete(collection, points_selector=models.FilterSelector(
                filter=models.Filter(must=[_match("video", video)])), wait=True)

    @_held
    def items(self, gallery: str) -> list[GalleryItem]:
        """Every item of ``gallery``, by video, frame, kind and box."""
        collection = self._collection(gallery)
        found: list[GalleryItem] = []
        offset: Any = None
        with self._connection.guard():
            while True:
                page, offset = self.client.scroll(collection, limit=_PAGE, offset=offset, with_payload=True,
                                                  with_vectors=False)
                found.extend(_item(record.id, record.payload) for record in page)
                if offset is None:
                    break
        return sorted(found, key=lambda i: (i.video, i.frame, KINDS.index(i.kind) if i.kind in KINDS else 9,
                                            i.box or (-1, -1, -1, -1)))

    @_held
    def search(self, gallery: str, vector: str, query: np.ndarray, *, limit: int,
               kinds: Sequence[str] | None = None, model: str | None = None) -> list[SearchHit]:
        """The ``limit`` items most similar to ``query`` on the named ``vector``, best first.

        ``kinds``: only these item kinds. ``model``: the model that made ``query``; when the
        gallery's ``vector`` was made by another one this is an error naming ``--replace``.
        """
        collection = PREFIX + gallery
        info = self._schema(gallery)
        if vector not in info.vectors:
            made = ", ".join(f"{name} by '{m}'" for name, m in info.models.items()) or "other vectors"
            raise GalleryError(f"gallery '{gallery}' has no '{vector}' vectors (it holds {made})"
                               + (f": it cannot be searched with '{model}'" if model else ""),
                               hint=_reindex_hint(gallery))
        stored = info.models.get(vector)
        if model is not None and stored is not None and stored != model:
            raise GalleryError(f"gallery '{gallery}' was indexed with '{stored}' ({vector} vectors) but the "
                               f"retriever is '{model}'", hint=_reindex_hint(gallery))
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != info.vectors[vector]:
            raise GalleryError(f"a {query.shape[0]}-dimensional query for the {info.vectors[vector]}-dimensional "
                               f"'{vector}' vectors of gallery '{gallery}'", hint=_reindex_hint(gallery))
        if limit < 1:
            return []
        flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchAny(any=list(kinds)))]) \
            if kinds else None
        with self._connection.guard():
            points = self.client.query_points(collection, query=query.tolist(), using=vector, query_filter=flt,
                                              limit=limit, with_payload=True).points
        return [SearchHit(item=_item(point.id, point.payload), score=float(point.score)) for point in points]


def _item(point_id: Any, payload: Mapping[str, Any] | None) -> GalleryItem:
    return GalleryItem.model_validate({**(payload or {}), "id": str(point_id)})


def _match(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _describe(vectors: Mapping[str, tuple[int, str]]) -> str:
    return ", ".join(f"{name} vectors by '{model}' ({dim}-d)" for name, (dim, model) in sorted(vectors.items()))


# -- images ---------------------------------------------------------------------------------------

_FRAMES: OrderedDict[tuple[str, int, int, int], np.ndarray] = OrderedDict()
_FRAMES_LOCK = Lock()
_FRAMES_KEPT = 8


def crop_box(image: np.ndarray, box: Sequence[int] | None, *, margin: float = 0.1) -> np.ndarray:
    """``box`` grown by ``margin`` of its size on each side, clipped to the image (None: the whole image)."""
    if box is None:
        return image
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    dx, dy = int(round((x2 - x1) * margin)), int(round((y2 - y1) * margin))
    x1, y1 = max(0, min(width - 1, x1 - dx)), max(0, min(height - 1, y1 - dy))
    x2, y2 = max(x1 + 1, min(width, x2 + dx)), max(y1 + 1, min(height, y2 + dy))
    return image[y1:y2, x1:x2]


def _read_frame(video: str, frame: int) -> np.ndarray:
    from sleuth.tools.frames import FrameReader, VideoError

    hint = "the video was moved, changed or deleted since indexing: put it back, or index it again with " \
           "`sleuth index <video> --gallery NAME --replace`"
    path = Path(video)
    try:
        stat = path.stat()
    except OSError:
        raise GalleryError(f"the source of a gallery item is gone: {video}", hint=hint) from None
    key = (video, frame, stat.st_mtime_ns, stat.st_size)
    with _FRAMES_LOCK:
        if key in _FRAMES:
            _FRAMES.move_to_end(key)
            return _FRAMES[key]
    try:
        frames = FrameReader(video, start=frame, stop=frame + 1).read()
    except VideoError as exc:
        raise GalleryError(f"cannot re-read frame {frame} of {video}: {exc.message}", hint=hint) from None
    if not frames or frames[0].index != frame:
        raise GalleryError(f"{video} has no frame {frame} any more", hint=hint)
    with _FRAMES_LOCK:
        _FRAMES[key] = frames[0].image
        while len(_FRAMES) > _FRAMES_KEPT:
            _FRAMES.popitem(last=False)
    return frames[0].image


def item_image(item: GalleryItem, *, margin: float = 0.1) -> np.ndarray:
    """The item's pixels, read again from its source: the crop grown by ``margin``, or the whole frame (RGB)."""
    return crop_box(_read_frame(item.video, item.frame), item.box, margin=margin).copy()
