"""Search benchmark: Recall@1/5/10 and mAP of ``sleuth search`` on annotated real clips.

``sleuth eval search --data ../shared/data`` indexes the annotated clips of ``<data>/videos``
into the gallery ``bench-search`` (``--keep`` reuses it) and runs every query of
``search_annotations.json`` (next to this module), written by us by looking at the frames.

**Positives.** An annotation gives, per query, where the described person/event is: keyframe
boxes (x1, y1, x2, y2, source pixels) for people and objects, or a frame span for scene-level
queries. A gallery item matches a positive when

- it comes from the same video (compared by file name), and
- its frame lies within the positive's frame span (first to last keyframe) widened by
  ``tolerance_s`` (0.5 s) on each side, and
- for keyframes: the item is a crop (has a box) whose IoU with the keyframe box linearly
  interpolated at the item's frame (the nearest keyframe's box outside the span) is at least
  ``min_iou`` (0.3); for a span: the item is a whole frame (kind ``frame``).

So the ground truth does not depend on our tracker: a crop that merges two walkers, or cuts one
in half, does not match. The positives of a query are all gallery items that match one of its
positives; a query whose positives the index never cropped has no defined metric (counted apart).

**Metrics**, per query and averaged over the queries with positives, for two orders of the same
returned list (``SearchConfig.top_k`` items): retrieval alone (``SearchResult.retrieval``) and
after cloze re-ranking and fusion (``SearchResult.results``).

- Recall@K: 1 when a positive is among the first K, else 0 (the text-based person search
  convention), so the mean is the share of queries answered within K.
- AP: the sum of precision@i over the ranks i of the list that hold a positive, divided by the
  number of positives in the *gallery* (not in the list): positives not returned count as missed.
  mAP is its mean.

**Cost**: LLM calls and seconds per query, index seconds and peak resident memory of the process.

Written to ``output``: ``search_bench.json`` (everything) and ``search_bench.md`` (tables).
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from sleuth.errors import SleuthError
from sleuth.evals.metrics import average_precision, mean_over_queries, recall_at_k

if TYPE_CHECKING:
    from sleuth.config import Settings

ANNOTATIONS = Path(__file__).with_name("search_annotations.json")
GALLERY = "bench-search"
KS = (1, 5, 10)
Box = tuple[int, int, int, int]


class AnnotationError(SleuthError):
    """The annotation file is missing or invalid, or names a clip that is not under --data."""


# -- annotations ---------------------------------------------------------------------------------

class Positive(BaseModel):
    """Where one described person/event is: keyframe boxes (person/object) or a frame span (scene)."""

    video: str = Field(description="File name of the clip in <data>/videos.")
    keyframes: dict[int, Box] | None = Field(
        default=None, description="Source frame -> box x1, y1, x2, y2 (pixels); interpolated in between.")
    span: tuple[int, int] | None = Field(default=None, description="First and last frame (scene-level).")

    @field_validator("keyframes")
    @classmethod
    def _boxes(cls, keyframes: dict[int, Box] | None) -> dict[int, Box] | None:
        if keyframes is None:
            return None
        if not keyframes:
            raise ValueError("keyframes is empty")
        for frame, (x1, y1, x2, y2) in keyframes.items():
            if frame < 0 or x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
                raise ValueError(f"keyframe {frame}: box {[x1, y1, x2, y2]} is not x1 < x2, y1 < y2 in the frame")
        return dict(sorted(keyframes.items()))

    @model_validator(mode="after")
    def _one_kind(self) -> Positive:
        if (self.keyframes is None) == (self.span is None):
            raise ValueError("give either keyframes (boxes) or span (whole frames), not both or neither")
        if self.span is not None and not 0 <= self.span[0] <= self.span[1]:
            raise ValueError(f"span {list(self.span)} is not first <= last")
        return self

    @property
    def frames(self) -> tuple[int, int]:
        if self.span is not None:
            return self.span
        keys = list(self.keyframes or {})
        return keys[0], keys[-1]

    def box_at(self, frame: int) -> Box | None:
        """The keyframe box linearly interpolated at ``frame`` (clamped to the first/last keyframe)."""
        if self.keyframes is None:
            return None
        keys = list(self.keyframes)
        if frame <= keys[0]:
            return self.keyframes[keys[0]]
        if frame >= keys[-1]:
            return self.keyframes[keys[-1]]
        after = next(k for k in keys if k >= frame)
        before = max(k for k in keys if k <= frame)
        if after == before:
            return self.keyframes[before]
        t = (frame - before) / (after - before)
        a, b = self.keyframes[before], self.keyframes[after]
        return tuple(round(p + t * (q - p)) for p, q in zip(a, b, strict=True))  # type: ignore[return-value]


class Query(BaseModel):
    id: str
    query: str = Field(min_length=1)
    level: Literal["person", "object", "scene"]
    positives: list[Positive] = Field(min_length=1)
    note: str = Field(default="", description="What the embedded describer can say about the positives.")


class VideoMeta(BaseModel):
    fps: float = Field(gt=0)
    frames: int | None = None


class Annotations(BaseModel):
    version: int = 1
    description: str = ""
    matching: str = ""
    tolerance_s: float = Field(default=0.5, ge=0)
    min_iou: float = Field(default=0.3, gt=0, le=1)
    videos: dict[str, VideoMeta]
    queries: list[Query] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Annotations:
        ids = [query.id for query in self.queries]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate query ids: {', '.join(duplicates)}")
        for query in self.queries:
            for positive in query.positives:
                if positive.video not in self.videos:
                    raise ValueError(f"query {query.id!r}: video {positive.video!r} is not listed under videos")
                if (positive.span is not None) != (query.level == "scene"):
                    raise ValueError(f"query {query.id!r}: scene queries take spans, person/object queries "
                                     "take keyframe boxes")
        return self


def load_annotations(path: Path = ANNOTATIONS) -> Annotations:
    """Read and validate an annotation file; one-line :class:`AnnotationError` when it is not valid."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AnnotationError(f"cannot read the search annotations {path}", hint=exc.strerror or str(exc)) from None
    try:
        return Annotations.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AnnotationError(f"invalid search annotations {path}",
                              hint=f"{where}: {first['msg']} ({exc.error_count()} error(s))") from None


def clip_paths(annotations: Annotations, data: Path) -> list[Path]:
    """The annotated clips under ``<data>/videos`` (``data`` may also be the videos folder itself)."""
    folder = data / "videos" if (data / "videos").is_dir() else data
    paths = [folder / name for name in annotations.videos]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise AnnotationError(f"clip {missing[0]} not found in {folder}" +
                              (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                              hint="pass --data the shared data folder that holds videos/, e.g. ../shared/data")
    return paths


# -- matching ------------------------------------------------------------------------------------

class ItemLike(Protocol):
    """What matching needs of a gallery item (sleuth.memory.gallery.GalleryItem has it)."""

    @property
    def id(self) -> str: ...
    @property
    def video(self) -> str: ...
    @property
    def frame(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def box(self) -> Sequence[int] | None: ...


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matches(item: ItemLike, positive: Positive, *, fps: float, tolerance_s: float = 0.5,
            min_iou: float = 0.3) -> bool:
    """The matching rule of this module's docstring, for one item and one positive."""
    if Path(item.video).name != positive.video:
        return False
    first, last = positive.frames
    slack = tolerance_s * fps
    if not first - slack <= item.frame <= last + slack:
        return False
    if positive.span is not None:
        return item.kind == "frame"
    if item.box is None or item.kind == "frame":
        return False
    box = positive.box_at(item.frame)
    return box is not None and iou(item.box, box) >= min_iou


def positive_ids(query: Query, items: Sequence[ItemLike], annotations: Annotations) -> set[str]:
    """Ids of the gallery items that match any positive of ``query``."""
    found = set()
    for item in items:
        for positive in query.positives:
            if matches(item, positive, fps=annotations.videos[positive.video].fps,
                       tolerance_s=annotations.tolerance_s, min_iou=annotations.min_iou):
                found.add(item.id)
                break
    return found


# -- results -------------------------------------------------------------------------------------

class OrderMetrics(BaseModel):
    recall: dict[int, float | None] = Field(description="Recall@K (1 if a positive is in the top K).")
    ap: float | None = None
    first_hit: int | None = Field(default=None, description="1-based rank of the first positive, if any.")


class QueryResult(BaseModel):
    id: str
    query: str
    level: str
    positives: int = Field(description="Gallery items that match the annotation.")
    returned: int
    retrieval: OrderMetrics
    reranked: OrderMetrics
    llm_calls: int
    seconds: float
    top: list[dict[str, Any]] = Field(default_factory=list, description="The re-ranked list, for inspection.")
    error: str | None = None


class Summary(BaseModel):
    queries: int
    queries_with_positives: int
    recall: dict[int, float | None]
    map: float | None


class BenchResult(BaseModel):
    gallery: str
    retriever: str = ""
    config: dict[str, Any]
    annotations: str
    matching: str
    index: dict[str, Any]
    retrieval: Summary
    reranked: Summary
    per_query: list[QueryResult]
    cost: dict[str, Any]
    environment: dict[str, Any]
    outputs: dict[str, str] = Field(default_factory=dict)


def order_metrics(ranked: Sequence[str], positives: set[str], ks: Sequence[int] = KS) -> OrderMetrics:
    first = next((rank for rank, item in enumerate(ranked, start=1) if item in positives), None)
    return OrderMetrics(recall={k: recall_at_k(ranked, positives, k) for k in ks},
                        ap=average_precision(ranked, positives), first_hit=first)


def summarise(per_query: Sequence[QueryResult], order: Literal["retrieval", "reranked"],
              ks: Sequence[int] = KS) -> Summary:
    metrics = [getattr(result, order) for result in per_query]
    return Summary(queries=len(per_query), queries_with_positives=sum(m.ap is not None for m in metrics),
                   recall={k: mean_over_queries([m.recall.get(k) for m in metrics]) for k in ks},
                   map=mean_over_queries([m.ap for m in metrics]))


# -- the run -------------------------------------------------------------------------------------

Progress = Callable[[str], None]


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def run_search_benchmark(data: Path, output: Path, *, settings: Settings, config: Any = None, keep: bool = False,
                         annotations_path: Path = ANNOTATIONS, queries: Sequence[str] | None = None,
                         llm_model: str | None = None, progress: Progress | None = None) -> BenchResult:
    """Index the annotated clips (or reuse the gallery with ``keep``), run every query, score, write files."""
    say = progress or (lambda _line: None)
    annotations = load_annotations(annotations_path)
    selected = [q for q in annotations.queries if not queries or q.id in queries]
    if not selected:
        raise AnnotationError(f"no annotated query has the id(s) {', '.join(queries or [])}",
                              hint=f"ids are listed in {annotations_path}")
    paths = clip_paths(annotations, Path(data))

    from sleuth.graphs.runtime import Runtime
    from sleuth.graphs.search import SearchConfig, search
    from sleuth.graphs.search.index import index_videos
    from sleuth.memory.gallery import GalleryStore

    config = config or SearchConfig()
    runtime = Runtime.from_settings(settings, model=llm_model)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with GalleryStore(runtime.settings) as store:
        index: dict[str, Any] = {"reused": False}
        indexed = {Path(v).name for v in store.info(GALLERY).videos} if keep and store.exists(GALLERY) else set()
        if keep and indexed >= set(annotations.videos):
            index["reused"] = True
            say(f"reusing gallery {GALLERY} ({store.info(GALLERY).items} items)")
        else:
            say(f"indexing {len(paths)} clips into gallery {GALLERY}")
            started = time.monotonic()
            report = index_videos(paths, GALLERY, runtime=runtime, replace=True, store=store)
            index.update(report.model_dump(mode="json"))
            index["seconds"] = round(time.monotonic() - started, 2)
            say(f"indexed {sum(report.items.values())} items in {index['seconds']:.0f}s")
        items = store.items(GALLERY)
        index["gallery_items"] = len(items)
        per_query: list[QueryResult] = []
        retriever = ""
        for number, query in enumerate(selected, start=1):
            positives = positive_ids(query, items, annotations)
            started = time.monotonic()
            try:
                result = search(query.query, GALLERY, runtime=runtime, config=config, store=store)
            except SleuthError as exc:
                per_query.append(QueryResult(
                    id=query.id, query=query.query, level=query.level, positives=len(positives), returned=0,
                    retrieval=order_metrics([], positives), reranked=order_metrics([], positives), llm_calls=0,
                    seconds=round(time.monotonic() - started, 2), error=exc.one_line()))
                say(f"[{number}/{len(selected)}] {query.id}: error {exc.one_line()}")
                continue
            retriever = getattr(result, "retriever", "") or retriever
            retrieval = order_metrics([r.item.id for r in result.retrieval], positives)
            reranked = order_metrics([r.item.id for r in result.results], positives)
            top = [{"id": r.item.id, "video": Path(r.item.video).name, "frame": r.item.frame, "kind": r.item.kind,
                    "box": r.item.box, "caption": r.item.caption, "s1": round(r.s1, 4), "score": round(r.score, 4),
                    "positive": r.item.id in positives} for r in result.results]
            per_query.append(QueryResult(id=query.id, query=query.query, level=query.level, positives=len(positives),
                                         returned=len(result.results), retrieval=retrieval, reranked=reranked,
                                         llm_calls=result.llm_calls, seconds=round(result.seconds, 2), top=top))
            say(f"[{number}/{len(selected)}] {query.id}: {len(positives)} positives, R@1 "
                f"{_pct(retrieval.recall[1])} -> {_pct(reranked.recall[1])}, AP {_pct(retrieval.ap)} -> "
                f"{_pct(reranked.ap)}, {result.llm_calls} LLM calls, {result.seconds:.1f}s")
    runtime.close()
    answered = [q for q in per_query if q.error is None]
    cost = {"llm_calls_per_query": round(sum(q.llm_calls for q in answered) / max(len(answered), 1), 2),
            "seconds_per_query": round(sum(q.seconds for q in answered) / max(len(answered), 1), 2),
            "index_seconds": index.get("seconds"), "peak_memory_mb": _peak_mb(),
            "errors": len(per_query) - len(answered)}
    result = BenchResult(
        gallery=GALLERY, retriever=retriever, config=config.model_dump(mode="json"), annotations=str(annotations_path),
        matching=annotations.matching, index=index, retrieval=summarise(per_query, "retrieval"),
        reranked=summarise(per_query, "reranked"), per_query=per_query, cost=cost,
        environment={"created": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
                     "machine": platform.machine(), "llm": llm_model or runtime.settings.llm.model,
                     "command": " ".join(sys.argv)})
    result.outputs = {"result": str(output / "search_bench.json"), "table": str(output / "search_bench.md")}
    (output / "search_bench.json").write_text(result.model_dump_json(indent=2))
    (output / "search_bench.md").write_text(markdown(result))
    return result


def summary_rows(result: BenchResult) -> list[tuple[str, str, str]]:
    """(metric, retrieval alone, re-ranked) rows for the CLI and the markdown table."""
    rows = [(f"Recall@{k}", _pct(result.retrieval.recall.get(k)), _pct(result.reranked.recall.get(k))) for k in KS]
    rows.append(("mAP", _pct(result.retrieval.map), _pct(result.reranked.map)))
    return rows


def index_time(cost: dict[str, Any]) -> str:
    """``12.3 s``, or ``reused`` when the gallery of an earlier run was kept."""
    return "reused" if cost.get("index_seconds") is None else f"{cost['index_seconds']} s"


def markdown(result: BenchResult) -> str:
    lines = [f"# Search benchmark: gallery {result.gallery}", "",
             f"Retriever: {result.retriever or '?'}; {result.reranked.queries_with_positives} of "
             f"{result.reranked.queries} queries have positives in the gallery; "
             f"{result.cost['llm_calls_per_query']} LLM calls and {result.cost['seconds_per_query']} s per query; "
             f"index {index_time(result.cost)}; peak {result.cost['peak_memory_mb']} MB.", "",
             "| metric (%) | retrieval | re-ranked |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in summary_rows(result)]
    lines += ["", "| query | positives | first hit (retrieval -> re-ranked) | AP (retrieval -> re-ranked) | LLM calls |"
              " s |", "| --- | ---: | --- | --- | ---: | ---: |"]
    for q in result.per_query:
        hits = f"{q.retrieval.first_hit or '-'} -> {q.reranked.first_hit or '-'}"
        aps = f"{_pct(q.retrieval.ap)} -> {_pct(q.reranked.ap)}"
        lines.append(f"| {q.query}{' (error)' if q.error else ''} | {q.positives} | {hits} | {aps} | {q.llm_calls} "
                     f"| {q.seconds} |")
    lines += ["", f"Matching rule: {result.matching}", ""]
    return "\n".join(lines)


def describe_positives(annotations: Annotations, data: Path) -> Mapping[str, list[str]]:  # pragma: no cover
    """What the structured describer says at each keyframe of each positive (annotation aid, slow)."""
    from sleuth.tools.captioners.structured import describe_object
    from sleuth.tools.frames import read_frames
    from sleuth.tools.objects import ObjectStage

    said: dict[str, list[str]] = {}
    for name in annotations.videos:
        frames = read_frames(clip_paths(annotations, data)[list(annotations.videos).index(name)])
        tracked = ObjectStage().run(frames)
        areas = [o.size[0] * o.size[1] for f in tracked for o in f.objects] or [1]
        typical = sorted(areas)[len(areas) // 2]
        for query in annotations.queries:
            for positive in query.positives:
                if positive.video != name or positive.keyframes is None:
                    continue
                for frame, box in positive.keyframes.items():
                    best = max(tracked[frame].objects, key=lambda o: iou(o.box, box), default=None)
                    if best is not None and iou(best.box, box) >= annotations.min_iou:
                        text = describe_object(frames[frame].image, best, tracked[frame].width,
                                               tracked[frame].height, typical)
                    else:
                        text = "(no tracked box with IoU >= min_iou)"
                    said.setdefault(query.id, []).append(f"f{frame}: {text}")
    return said
