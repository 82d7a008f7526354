"""``sleuth index``: turn footage into a searchable gallery of person crops, object crops and frames.

Per clip: every frame is read (the tracker needs consecutive frames) and the object stage runs
over the clip once; one frame every ``every_s`` seconds is kept. Each kept frame gives a whole-frame
item and crop items for its largest tracked objects (at least ``min_height`` pixels tall), labelled
``person`` or ``object`` by the tracker. Captions come from the structured describer (the tracks
already give speed, direction, size and colour) or, with another captioner configured, from that
captioner run on the crops and frames.

Every item gets the ``caption`` vector (its caption through the text embedder); with a
CLIP-family retriever also the ``image`` vector (the crop through the image tower). Frames are
processed in chunks, so memory stays bounded on long videos: tracking carries over from chunk to
chunk, and a crop's size words compare with the objects seen so far in the clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field
from sleuth import telemetry
from sleuth.graphs.runtime import Runtime
from sleuth.memory.gallery import GalleryItem, GalleryStore, Kind, check_name, crop_box, item_id
from sleuth.tools.frames import Frame, FrameReader, VideoError, clip_sources
from sleuth.tools.objects import FrameObjects, ObjectStage, TrackedObject

if TYPE_CHECKING:
    from sleuth.tools.retriever import Retriever

Progress = Callable[[str, int, int], None]
CHUNK_FRAMES = 256  # frames tracked at once (the first chunk also starts the background model)
EMBED_BATCH = 128  # items captioned and embedded at once
CROP_MARGIN = 0.1  # as item_image's default, so indexed and re-read crops match


class IndexConfig(BaseModel):
    every_s: float = Field(default=1.0, gt=0, description="Seconds between indexed frames.")
    min_height: int = Field(default=24, ge=1, description="Smallest object crop indexed, in source pixels.")
    max_crops: int = Field(default=8, ge=0, description="Largest objects indexed per frame.")
    frames: bool = Field(default=True, description="Also index whole frames.")


class IndexReport(BaseModel):
    gallery: str
    videos: list[str] = Field(description="The clips indexed (absolute paths).")
    frames_read: int
    frames_indexed: int = Field(description="Frames kept (one every every_s seconds).")
    items: dict[str, int] = Field(description="Items stored per kind: person, object, frame.")
    retriever: str
    vectors: list[str] = Field(description="The gallery's named vectors.")
    seconds: float


@dataclass
class _Pending:
    item: GalleryItem
    image: np.ndarray  # the crop (or whole frame) as RGB


def _clips(sources: Sequence[str | Path]) -> list[FrameReader]:
    """A reader per clip under ``sources``; a missing, empty or unreadable file fails before any work."""
    if not sources:
        raise VideoError("nothing to index", hint="pass a video file, a frame folder or a folder of clips")
    readers: list[FrameReader] = []
    for source in sources:
        for clip in clip_sources(source):
            reader = FrameReader(clip.resolve())
            reader.info  # noqa: B018 - opens the file: a corrupt one is one error now, not after minutes
            readers.append(reader)
    return readers


def _keep(every_s: float) -> Callable[[Frame], bool]:
    """One frame every ``every_s`` seconds on a grid from the first frame (like FrameReader's fps)."""
    next_time: list[float | None] = [None]

    def keep(frame: Frame) -> bool:
        due = next_time[0]
        if due is not None and frame.time_s + 1e-6 < due:
            return False
        next_time[0] = (frame.time_s if due is None else due) + every_s
        return True

    return keep


def _tracked_chunks(reader: FrameReader, every_s: float,
                    counted: Callable[[int], None]) -> Iterator[tuple[list[tuple[Frame, FrameObjects]], float]]:
    """(kept frames with their tracked objects, typical object area so far) per chunk of the clip."""
    stage, keep = ObjectStage(), _keep(every_s)
    areas: list[int] = []
    chunk: list[Frame] = []
    first = True

    def flush() -> tuple[list[tuple[Frame, FrameObjects]], float]:
        nonlocal first
        tracked = stage.run(chunk, prepare=first)
        first = False
        areas.extend(obj.size[0] * obj.size[1] for objects in tracked for obj in objects.objects)
        kept = [(frame, objects) for frame, objects in zip(chunk, tracked, strict=True) if keep(frame)]
        counted(len(chunk))
        chunk.clear()
        return kept, float(np.median(areas)) if areas else 1.0

    for frame in reader:
        chunk.append(frame)
        if len(chunk) >= CHUNK_FRAMES:
            yield flush()
    if chunk:
        yield flush()


def _crops(objects: FrameObjects, config: IndexConfig) -> list[TrackedObject]:
    tall = [obj for obj in objects.objects if obj.size[1] >= config.min_height]
    return sorted(tall, key=lambda obj: -obj.size[0] * obj.size[1])[:config.max_crops]


def _clip_box(obj: TrackedObject, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = obj.box
    return (max(0, x1), max(0, y1), min(width, x2), min(height, y2))


def _frame_items(gallery: str, video: str, frame: Frame, objects: FrameObjects, typical_area: float,
                 config: IndexConfig, structured: bool) -> list[_Pending]:
    """The kept frame's crops (largest first) and the whole frame, captioned here when structured."""
    from sleuth.tools.captioners.structured import describe_frame, describe_object

    height, width = frame.image.shape[:2]
    pending = []
    for obj in _crops(objects, config):
        box = _clip_box(obj, width, height)
        kind: Kind = "person" if obj.label == "person" else "object"
        caption = describe_object(frame.image, obj, width, height, typical_area) if structured else ""
        item = GalleryItem(id=item_id(gallery, video, frame.index, box), video=video, frame=frame.index,
                           time_s=round(frame.time_s, 3), kind=kind, box=box, track=obj.track_id, caption=caption)
        pending.append(_Pending(item, crop_box(frame.image, box, margin=CROP_MARGIN)))
    if config.frames:
        caption = describe_frame(frame.image, objects, typical_area) if structured else ""
        item = GalleryItem(id=item_id(gallery, video, frame.index, None), video=video, frame=frame.index,
                           time_s=round(frame.time_s, 3), kind="frame", box=None, caption=caption)
        pending.append(_Pending(item, frame.image))
    return pending


def index_videos(sources: Sequence[str | Path], gallery: str, *, runtime: Runtime,
                 config: IndexConfig | None = None, replace: bool = False, store: GalleryStore | None = None,
                 progress: Progress | None = None) -> IndexReport:
    """Index the clips under ``sources`` into ``gallery`` (created, or added to; dropped first with ``replace``).

    A clip indexed again replaces its earlier items. ``store``: an open gallery store (default: one
    from the runtime's settings, closed at the end). ``progress(stage, done, total)`` is called with
    ``frames`` (frames read) and ``items`` (items embedded).
    """
    config = config or IndexConfig()
    started = time.monotonic()
    check_name(gallery)
    readers = _clips(sources)
    total_frames = sum(reader.info.frame_count or 0 for reader in readers)
    report = (lambda stage, done, total: progress(stage, done, total)) if progress else (lambda *_: None)

    tools = runtime.toolset()
    retriever = tools.retriever
    structured = runtime.settings.tools.captioner.kind == "structured"
    captioner = None if structured else tools.captioner
    caption_dim = int(np.asarray(runtime.embedder(["a person"])).shape[1])
    vectors = {"caption": (caption_dim, _caption_model(runtime, retriever))}
    if retriever.vector == "image":
        vectors["image"] = (int(np.asarray(retriever.embed_queries(["a person"])).shape[1]), retriever.name)

    counts = {"person": 0, "object": 0, "frame": 0}
    read = kept = embedded = found = 0
    own_store = store is None
    store = store or GalleryStore(runtime.settings)
    try:
        with telemetry.agent_span("index") as span:
            span.set_attribute("sleuth.gallery", gallery)
            store.create(gallery, vectors, replace=replace)
            pending: list[_Pending] = []

            def counted(frames: int) -> None:
                nonlocal read
                read += frames
                report("frames", read, max(total_frames, read))

            def embed() -> None:
                nonlocal embedded
                batch = pending[:]
                pending.clear()
                if not batch:
                    return
                items = [p.item for p in batch]
                if captioner is not None:
                    frames = [Frame(p.item.frame, p.item.time_s, p.image) for p in batch]
                    items = [item.model_copy(update={"caption": caption})
                             for item, caption in zip(items, captioner.caption(frames), strict=True)]
                captions = [item.caption for item in items]
                arrays = {"caption": np.asarray(runtime.embedder(captions), dtype=np.float32)}
                if "image" in vectors:
                    arrays["image"] = np.asarray(retriever.embed_items([p.image for p in batch], captions),
                                                 dtype=np.float32)
                store.add(gallery, items, arrays)
                for item in items:
                    counts[item.kind] += 1
                embedded += len(items)
                report("items", embedded, found)

            for reader in readers:
                video = reader.source
                store.remove_video(gallery, video)
                for chunk, typical_area in _tracked_chunks(reader, config.every_s, counted):
                    for frame, objects in chunk:
                        kept += 1
                        new = _frame_items(gallery, video, frame, objects, typical_area, config, structured)
                        found += len(new)
                        pending.extend(new)
                    if len(pending) >= EMBED_BATCH:
                        embed()
                embed()
            span.set_attribute("sleuth.index.items", embedded)
    finally:
        if own_store:
            store.close()
    return IndexReport(gallery=gallery, videos=[reader.source for reader in readers], frames_read=read,
                       frames_indexed=kept, items=counts, retriever=f"{retriever.name} ({retriever.vector} vectors)",
                       vectors=sorted(vectors), seconds=round(time.monotonic() - started, 3))


def _caption_model(runtime: Runtime, retriever: Retriever) -> str:
    """The name a caption-text retriever over this runtime's embedder has (what search compares with)."""
    if retriever.vector == "caption":
        return retriever.name
    from sleuth.tools.retriever import CaptionTextRetriever

    return CaptionTextRetriever(runtime.embedder, name=runtime.settings.embedder.model).name
