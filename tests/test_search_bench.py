"""The search benchmark's ground truth and metrics: annotations, the matching rule, Recall@K and AP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from sleuth.evals.metrics import average_precision, mean_over_queries, recall_at_k
from sleuth.evals.search_bench import (
    ANNOTATIONS,
    AnnotationError,
    Positive,
    QueryResult,
    clip_paths,
    load_annotations,
    matches,
    order_metrics,
    positive_ids,
    summarise,
)

SIZES = {"vtest.avi": (768, 576), "ucf_Robbery102_frames.mp4": (436, 254), "xd_GoldenEye_frames.mp4": (500, 204)}


@dataclass(frozen=True)
class Item:
    id: str
    video: str
    frame: int
    kind: str
    box: tuple[int, int, int, int] | None


# -- metrics -------------------------------------------------------------------------------------

def test_recall_at_k_is_a_hit_within_k() -> None:
    ranked = ["a", "b", "p", "c"]
    assert recall_at_k(ranked, {"p"}, 1) == 0.0
    assert recall_at_k(ranked, {"p"}, 3) == 1.0
    assert recall_at_k(ranked, {"p", "q"}, 10) == 1.0  # k beyond the list
    assert recall_at_k(ranked, set(), 5) is None
    with pytest.raises(ValueError):
        recall_at_k(ranked, {"p"}, 0)


def test_average_precision_counts_positives_not_returned_as_missed() -> None:
    assert average_precision(["p", "q"], {"p", "q"}) == 1.0
    assert average_precision(["a", "p", "b", "q"], {"p", "q"}) == pytest.approx((1 / 2 + 2 / 4) / 2)
    # four positives in the gallery, one returned first: 1/4, not 1
    assert average_precision(["p", "a", "b"], {"p", "q", "r", "s"}) == pytest.approx(0.25)
    assert average_precision(["a", "b"], {"p"}) == 0.0
    assert average_precision(["p", "p"], {"p"}) == 1.0  # a repeated id is not a second hit
    assert average_precision(["a"], set()) is None


def test_mean_over_queries_skips_undefined() -> None:
    assert mean_over_queries([1.0, None, 0.0]) == 0.5
    assert mean_over_queries([None]) is None


def test_summary_compares_retrieval_and_reranking() -> None:
    def result(ranked_retrieval: list[str], ranked: list[str], positives: set[str]) -> QueryResult:
        return QueryResult(id="q", query="q", level="person", positives=len(positives), returned=len(ranked),
                           retrieval=order_metrics(ranked_retrieval, positives),
                           reranked=order_metrics(ranked, positives), llm_calls=4, seconds=1.0)

    per_query = [result(["a", "p"], ["p", "a"], {"p"}), result(["a", "b"], ["b", "a"], {"z"}),
                 result(["a"], ["a"], set())]
    before, after = summarise(per_query, "retrieval"), summarise(per_query, "reranked")
    assert before.queries == 3 and before.queries_with_positives == 2
    assert before.recall[1] == 0.0 and after.recall[1] == 0.5
    assert before.recall[5] == after.recall[5] == 0.5
    assert before.map == pytest.approx(0.25) and after.map == pytest.approx(0.5)
    assert per_query[0].reranked.first_hit == 1 and per_query[0].retrieval.first_hit == 2


# -- matching rule -------------------------------------------------------------------------------

def person(keyframes: dict[int, tuple[int, int, int, int]], video: str = "vtest.avi") -> Positive:
    return Positive(video=video, keyframes=keyframes)


def test_box_is_interpolated_between_keyframes_and_clamped_outside() -> None:
    positive = person({100: (0, 0, 10, 20), 120: (20, 0, 30, 40)})
    assert positive.box_at(110) == (10, 0, 20, 30)
    assert positive.box_at(90) == (0, 0, 10, 20)
    assert positive.box_at(125) == (20, 0, 30, 40)


def test_crop_matches_by_video_span_tolerance_and_iou() -> None:
    positive = person({100: (100, 100, 140, 200), 120: (200, 100, 240, 200)})
    video = "/abs/path/to/vtest.avi"
    at = dict(fps=10.0, tolerance_s=0.5, min_iou=0.3)
    assert matches(Item("1", video, 110, "person", (150, 100, 190, 200)), positive, **at)  # interpolated exactly
    assert matches(Item("2", video, 110, "object", (145, 95, 195, 205)), positive, **at)   # kind of crop is free
    assert not matches(Item("3", video, 110, "person", (100, 100, 140, 200)), positive, **at)  # where it was at 100
    assert matches(Item("4", video, 125, "person", (200, 100, 240, 200)), positive, **at)  # within half a second
    assert not matches(Item("5", video, 126, "person", (200, 100, 240, 200)), positive, **at)  # beyond it
    assert not matches(Item("6", "/x/other.avi", 110, "person", (150, 100, 190, 200)), positive, **at)
    assert not matches(Item("7", video, 110, "frame", None), positive, **at)  # a whole frame is not the person
    # a crop merging this walker with a neighbour (twice as wide, 0.5 IoU) still matches; three times does not
    assert matches(Item("8", video, 100, "object", (100, 100, 180, 200)), positive, **at)
    assert not matches(Item("9", video, 100, "object", (100, 100, 240, 200)), positive, **at)


def test_scene_positive_matches_whole_frames_only() -> None:
    positive = Positive(video="xd_GoldenEye_frames.mp4", span=(648, 960))
    at = dict(fps=24.0, tolerance_s=0.5, min_iou=0.3)
    assert matches(Item("f", "/v/xd_GoldenEye_frames.mp4", 648, "frame", None), positive, **at)
    assert matches(Item("g", "/v/xd_GoldenEye_frames.mp4", 636, "frame", None), positive, **at)
    assert not matches(Item("h", "/v/xd_GoldenEye_frames.mp4", 624, "frame", None), positive, **at)
    assert not matches(Item("c", "/v/xd_GoldenEye_frames.mp4", 700, "object", (0, 0, 50, 50)), positive, **at)


def test_positive_ids_collects_items_of_any_positive() -> None:
    annotations = load_annotations()
    query = next(q for q in annotations.queries if q.id == "ge-plane")
    items = [Item(str(i), "/d/xd_GoldenEye_frames.mp4", frame, "frame", None)
             for i, frame in enumerate((0, 144, 240, 312, 384, 480, 576))]
    assert positive_ids(query, items, annotations) == {"1", "2", "4", "6"}


# -- annotation file -----------------------------------------------------------------------------

def test_packaged_annotations_are_valid_and_inside_the_frames() -> None:
    annotations = load_annotations()
    assert 20 <= len(annotations.queries) <= 30
    assert annotations.min_iou == 0.3 and annotations.tolerance_s == 0.5
    assert set(annotations.videos) == set(SIZES)
    levels = {q.level for q in annotations.queries}
    assert {"person", "scene"} <= levels
    for query in annotations.queries:
        assert query.note, query.id
        for positive in query.positives:
            width, height = SIZES[positive.video]
            last = annotations.videos[positive.video].frames
            assert positive.frames[1] < last, query.id
            for x1, y1, x2, y2 in (positive.keyframes or {}).values():
                assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, query.id


def write(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    doc = json.loads(ANNOTATIONS.read_text())
    change(doc)
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d["queries"][0]["positives"][0]["keyframes"].update({"430": [50, 50, 40, 60]}), "keyframes"),
    (lambda d: d["queries"][0]["positives"][0].update({"span": [1, 2]}), "not both"),
    (lambda d: d["queries"][0]["positives"][0].update({"video": "nope.mp4"}), "nope.mp4"),
    (lambda d: d["queries"][1].update({"id": d["queries"][0]["id"]}), "duplicate"),
    (lambda d: d["queries"][-1]["positives"][0].update({"keyframes": {"1": [0, 0, 5, 5]}, "span": None}), "scene"),
])
def test_invalid_annotations_fail_in_one_line(tmp_path: Path, change, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AnnotationError) as raised:
        load_annotations(write(tmp_path, change))
    message = str(raised.value)
    assert "\n" not in message and says in message


def test_missing_file_and_missing_clip_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="cannot read"):
        load_annotations(tmp_path / "none.json")
    annotations = load_annotations()
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "vtest.avi").write_bytes(b"")
    with pytest.raises(AnnotationError) as raised:
        clip_paths(annotations, tmp_path)
    assert "not found in" in str(raised.value) and "--data" in str(raised.value) and "\n" not in str(raised.value)
    for name in SIZES:
        (tmp_path / "videos" / name).write_bytes(b"")
    assert [p.name for p in clip_paths(annotations, tmp_path)] == list(annotations.videos)
    assert clip_paths(annotations, tmp_path / "videos") == clip_paths(annotations, tmp_path)
