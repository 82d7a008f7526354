"""``sleuth index``: synthetic footage in, a searchable gallery out (real object stage, real Qdrant).

Vectors come from the deterministic HashEmbedder (texts sharing words are similar) and, for the
CLIP path, from a fake image retriever whose vector is a crop's mean colour, so what a search
should find is known. The CLI runs in-process through typer's CliRunner.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from sleuth.config import Settings, load_settings
from sleuth.graphs.runtime import Runtime
from sleuth.graphs.search.index import IndexConfig, index_videos
from sleuth.llm.gateway import Gateway
from sleuth.memory.gallery import GalleryError, GalleryNotFound, GalleryStore, item_image
from sleuth.tools.frames import Frame, VideoError
from sleuth.tools.toolset import InProcessTools
from typer.testing import CliRunner, Result

from tests.conftest import HashEmbedder
from tests.synthetic_video import BLUE, RED, Mover, render, write_images, write_video

# A red walker-sized box moving right along the top, a blue one moving left along the bottom, 4 s at 10 fps.
WALKER = Mover(0, 10, 16, 40, vx=30.0, colour=RED)
OTHER = Mover(130, 70, 18, 44, vx=-20.0, colour=BLUE)
N_FRAMES = 40


class ColourRetriever:
    """A stand-in for a CLIP-family retriever: an item's vector is its crop's mean RGB."""

    vector = "image"
    name = "fake-clip"

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        rows = [RED if "red" in text else BLUE if "blue" in text else (1, 1, 1) for text in texts]
        return _unit(np.asarray(rows, dtype=np.float32))

    def embed_items(self, images: Sequence[np.ndarray], captions: Sequence[str]) -> np.ndarray:
        assert len(images) == len(captions)
        self.images.extend(images)
        return _unit(np.asarray([image.reshape(-1, 3).mean(axis=0) for image in images], dtype=np.float32))


def _unit(array: np.ndarray) -> np.ndarray:
    return array / np.linalg.norm(array, axis=1, keepdims=True)


class SizeCaptioner:
    """A stand-in for a VLM captioner: says how big each crop or frame it was shown is."""

    def __init__(self) -> None:
        self.calls = 0

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        self.calls += 1
        return [f"an image of {f.image.shape[1]} by {f.image.shape[0]} at frame {f.index}" for f in frames]


def runtime(settings: Settings | None = None, **tools: Any) -> Runtime:
    settings = settings or Settings()
    embedder = HashEmbedder()
    return Runtime(settings=settings, gateway=Gateway(settings), embedder=embedder,
                   tools=InProcessTools(settings, embedder=embedder, **tools))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "square.mp4", render([WALKER, OTHER], n_frames=N_FRAMES))


@pytest.fixture
def store() -> Any:
    with GalleryStore.in_memory() as opened:
        yield opened


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]))


def test_index_stores_crops_and_frames_with_their_source(video: Path, store: GalleryStore) -> None:
    seen: list[tuple[str, int, int]] = []
    report = index_videos([video], "square", runtime=runtime(), store=store,
                          progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert report.videos == [str(video.resolve())] and report.frames_read == N_FRAMES
    assert report.frames_indexed == 4  # one frame a second: frames 0, 10, 20, 30
    assert report.vectors == ["caption"] and "(captions)" in report.retriever
    items = store.items("square")
    assert sum(report.items.values()) == len(items) == store.info("square").items
    assert report.items["frame"] == 4 and report.items["person"] + report.items["object"] >= 6

    assert {item.video for item in items} == {str(video.resolve())}
    assert sorted({item.frame for item in items}) == [0, 10, 20, 30]
    for item in items:
        assert item.time_s == pytest.approx(item.frame / 10, abs=0.01) and item.caption
        if item.kind == "frame":
            assert item.box is None and item.caption[0].isdigit()  # "2 moving objects. ..."
            continue
        assert item.track is not None and item.box is not None
        truth = [m.box_at(item.time_s) for m in (WALKER, OTHER)]
        best = max(truth, key=lambda box: _overlap(item.box, box))  # type: ignore[arg-type]
        assert _overlap(best, item.box) > 0.7  # type: ignore[arg-type]
        colour = "red" if best == truth[0] else "blue"
        assert colour in item.caption
    crops = [item for item in items if item.frame == 10 and item.kind != "frame"]
    assert len(crops) == 2 and {("red" in c.caption, "to the right" in c.caption) for c in crops} == {
        (True, True), (False, False)}

    stages = {stage for stage, _, _ in seen}
    assert stages == {"frames", "items"}
    assert seen[-1] == ("items", len(items), len(items))
    assert ("frames", N_FRAMES, N_FRAMES) in seen


def test_the_caption_retriever_finds_the_described_item(video: Path, store: GalleryStore) -> None:
    run = runtime()
    index_videos([video], "square", runtime=run, store=store)
    retriever = run.toolset().retriever
    query = retriever.embed_queries(["red object moving to the right"])[0]
    hits = store.search("square", retriever.vector, query, limit=3, kinds=["person", "object"], model=retriever.name)
    assert hits and all(hit.item.kind != "frame" for hit in hits)
    assert "red" in hits[0].item.caption and "to the right" in hits[0].item.caption


def test_small_objects_crop_limits_and_frames_follow_the_config(video: Path, store: GalleryStore) -> None:
    report = index_videos([video], "tall", runtime=runtime(), store=store,
                          config=IndexConfig(every_s=2.0, min_height=42, frames=False))
    items = store.items("tall")
    assert report.frames_indexed == 2 and report.items["frame"] == 0
    assert items and all(item.box is not None and item.box[3] - item.box[1] >= 42 for item in items)
    assert all("blue" in item.caption for item in items)  # only the 44 px tall blue object
    index_videos([video], "one", runtime=runtime(), store=store, config=IndexConfig(max_crops=1, frames=False))
    assert len(store.items("one")) == 4


def test_reindexing_is_idempotent_and_other_videos_are_added(video: Path, tmp_path: Path,
                                                              store: GalleryStore) -> None:
    run = runtime()
    index_videos([video], "g", runtime=run, store=store)
    first = store.items("g")
    index_videos([video], "g", runtime=run, store=store)
    assert store.items("g") == first  # same ids, same items

    other = write_video(tmp_path / "other.mp4", render([OTHER], n_frames=20, seed=3))
    index_videos([other], "g", runtime=run, store=store)
    info = store.info("g")
    assert info.videos == sorted([str(video.resolve()), str(other.resolve())])
    assert len(store.items("g")) > len(first)

    index_videos([video], "g", runtime=run, store=store, config=IndexConfig(every_s=2.0))
    frames = {item.frame for item in store.items("g") if item.video == str(video.resolve())}
    assert frames == {0, 20}  # the video's items from every 1 s are gone, not left beside the new ones

    index_videos([other], "g", runtime=run, store=store, replace=True)
    assert store.info("g").videos == [str(other.resolve())]


def test_a_folder_of_clips_is_indexed_clip_by_clip(tmp_path: Path, store: GalleryStore) -> None:
    write_images(tmp_path / "clips" / "a", render([WALKER], n_frames=12))
    write_images(tmp_path / "clips" / "b", render([OTHER], n_frames=12))
    report = index_videos([tmp_path / "clips"], "clips", runtime=runtime(), store=store,
                          config=IndexConfig(every_s=0.5))
    assert report.videos == [str(tmp_path / "clips" / "a"), str(tmp_path / "clips" / "b")]
    assert report.frames_read == 24
    item = next(i for i in store.items("clips") if i.video.endswith("/b") and "blue" in i.caption and i.box)
    assert np.abs(item_image(item, margin=0).astype(int) - np.array(BLUE)).mean() < 10


def test_a_clip_retriever_adds_image_vectors_and_pins_its_model(video: Path, store: GalleryStore) -> None:
    retriever = ColourRetriever()
    report = index_videos([video], "clip", runtime=runtime(retriever=retriever), store=store)
    assert report.vectors == ["caption", "image"] and report.retriever == "fake-clip (image vectors)"
    info = store.info("clip")
    assert info.models == {"caption": "all-MiniLM-L6-v2 (captions)", "image": "fake-clip"}
    assert info.vectors["image"] == 3 and len(retriever.images) == info.items
    assert any(image.shape[:2] == (120, 160) for image in retriever.images)  # whole frames
    assert any(image.shape[0] < 60 for image in retriever.images)  # crops

    hits = store.search("clip", "image", retriever.embed_queries(["a blue person"])[0], limit=2,
                        kinds=["person", "object"], model="fake-clip")
    assert all("blue" in hit.item.caption for hit in hits)
    with pytest.raises(GalleryError, match="'fake-clip'.*'siglip-base'.*--replace"):
        store.search("clip", "image", hits[0].item and np.ones(3), limit=2, model="siglip-base")
    with pytest.raises(GalleryError, match="--replace"):  # the caption default into a CLIP gallery
        index_videos([video], "clip", runtime=runtime(), store=store)
    index_videos([video], "clip", runtime=runtime(), store=store, replace=True)
    assert store.info("clip").models == {"caption": "all-MiniLM-L6-v2 (captions)"}


def test_another_captioner_describes_the_crops_and_frames(video: Path, store: GalleryStore) -> None:
    settings = Settings(tools={"captioner": {"kind": "transformers", "model": "/nowhere"}})
    captioner = SizeCaptioner()
    index_videos([video], "vlm", runtime=runtime(settings, captioner=captioner), store=store)
    items = store.items("vlm")
    assert captioner.calls == 1
    for item in items:
        assert item.caption.endswith(f"at frame {item.frame}")
        if item.kind == "frame":
            assert item.caption.startswith("an image of 160 by 120")
        else:  # the crop with its 10% margin
            x1, y1, x2, y2 = item.box  # type: ignore[misc]
            width = min(160, x2 + round((x2 - x1) * 0.1)) - max(0, x1 - round((x2 - x1) * 0.1))
            assert item.caption.startswith(f"an image of {width} by ")


def test_missing_and_corrupt_videos_fail_before_any_work(tmp_path: Path, store: GalleryStore) -> None:
    with pytest.raises(VideoError, match="video not found"):
        index_videos([tmp_path / "none.mp4"], "g", runtime=runtime(), store=store)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(VideoError) as caught:
        index_videos([corrupt], "g", runtime=runtime(), store=store)
    assert "\n" not in str(caught.value) and str(corrupt) in str(caught.value)
    assert store.names() == []
    with pytest.raises(GalleryError, match="invalid gallery name"):
        index_videos([corrupt], "no good", runtime=runtime(), store=store)


def test_index_opens_and_closes_the_configured_store(video: Path) -> None:
    index_videos([video], "local", runtime=runtime(load_settings()))
    with GalleryStore(load_settings()) as store:  # released: it opens, and the items are on disk
        assert store.info("local").items > 0
        with pytest.raises(GalleryNotFound):
            store.info("other")


# -- CLI ------------------------------------------------------------------------------------------

def cli_app() -> typer.Typer:
    from sleuth.cli.index import galleries, index

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("index")(index)
    app.command("galleries")(galleries)
    return app


def cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app(), list(args), catch_exceptions=False)


def one_line_error(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def fast_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sleuth.tools.embedder.TextEmbedder", lambda config=None: HashEmbedder())


@pytest.mark.usefixtures("fast_embedder")
def test_cli_index_list_and_delete(video: Path) -> None:
    result = cli("index", str(video), "--gallery", "square", "--every", "2")
    assert result.exit_code == 0, result.output
    assert "gallery 'square':" in result.stdout and "from 2 of 40 frames in 1 clip(s)" in result.stdout
    assert 'sleuth search "a person running" --gallery square' in result.stderr

    listed = cli("galleries")
    assert listed.exit_code == 0 and "square" in listed.stdout and "caption: all-MiniLM-L6-v2" in listed.stdout
    as_json = __import__("json").loads(cli("galleries", "--json").stdout)
    assert as_json[0]["name"] == "square" and as_json[0]["videos"] == [str(video.resolve())]

    deleted = cli("galleries", "--delete", "square")
    assert deleted.exit_code == 0 and "deleted gallery 'square'" in deleted.stderr
    assert "no galleries yet" in cli("galleries").stderr
    one_line_error(cli("galleries", "--delete", "square"), "no gallery 'square'", "sleuth galleries",
                   "sleuth index")


@pytest.mark.usefixtures("fast_embedder")
def test_cli_bad_input_is_one_line(tmp_path: Path, video: Path) -> None:
    one_line_error(cli("index", str(tmp_path / "none.mp4"), "--gallery", "g"), "video not found")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(b"garbage" * 200)
    one_line_error(cli("index", str(corrupt), "--gallery", "g"), "cannot open video")
    one_line_error(cli("index", str(video), "--gallery", "g", "--every", "0"), "--every 0")
    one_line_error(cli("index", str(video), "--gallery", "a b"), "invalid gallery name")
