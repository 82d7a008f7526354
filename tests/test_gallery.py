"""The gallery memory: items with their source, named vectors, search, models, storage and errors.

Real Qdrant (in memory, or local mode in the per-test data folder); vectors are small hand-made
unit vectors so the expected order is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sleuth.config import load_settings
from sleuth.errors import SleuthError
from sleuth.memory.gallery import (
    GalleryError,
    GalleryItem,
    GalleryNotFound,
    GalleryStore,
    GalleryUnavailable,
    item_id,
    item_image,
)
from sleuth.memory.rules import RuleMemory

from tests.conftest import HashEmbedder, closed_port_url
from tests.synthetic_video import BLUE, RED, Mover, render, write_images, write_video

VECTORS = {"caption": (4, "text-model (captions)"), "image": (3, "clip-model")}


def unit(*values: float) -> list[float]:
    array = np.asarray(values, dtype=np.float32)
    return list(array / np.linalg.norm(array))


def make_item(video: str, frame: int, kind: str = "person", box: tuple[int, int, int, int] | None = (1, 2, 30, 60),
              caption: str = "a person", gallery: str = "g") -> GalleryItem:
    box = None if kind == "frame" else box
    return GalleryItem(id=item_id(gallery, video, frame, box), video=video, frame=frame, time_s=frame / 10,
                       kind=kind, box=box, track=None if box is None else 7, caption=caption)


ITEMS = [make_item("/v/a.mp4", 0, "person", caption="a person in red walking"),
         make_item("/v/a.mp4", 0, "frame", caption="one person walking"),
         make_item("/v/a.mp4", 10, "object", (50, 50, 90, 80), caption="a blue object moving fast"),
         make_item("/v/b.mp4", 5, "person", (3, 4, 20, 44), caption="a person running")]
CAPTION = np.array([unit(1, 0, 0, 0), unit(1, 1, 0, 0), unit(0, 0, 1, 0), unit(0.9, 0, 0, 0.3)], dtype=np.float32)
IMAGE = np.array([unit(1, 0, 0), unit(0.5, 0.5, 0.5), unit(0, 0, 1), unit(0, 1, 0)], dtype=np.float32)


@pytest.fixture
def store() -> Iterator[GalleryStore]:
    with GalleryStore.in_memory() as opened:
        opened.create("g", VECTORS)
        opened.add("g", ITEMS, {"caption": CAPTION, "image": IMAGE})
        yield opened


def test_items_keep_their_source_box_and_caption(store: GalleryStore) -> None:
    items = store.items("g")
    assert sorted(items, key=lambda i: i.id) == sorted(ITEMS, key=lambda i: i.id)
    person = next(i for i in items if i.video == "/v/b.mp4")
    assert (person.frame, person.time_s, person.kind, person.box, person.track, person.caption) == (
        5, 0.5, "person", (3, 4, 20, 44), 7, "a person running")
    frame = next(i for i in items if i.kind == "frame")
    assert frame.box is None and frame.track is None


def test_info_names_vectors_models_and_videos(store: GalleryStore) -> None:
    info = store.info("g")
    assert info.name == "g" and info.items == 4
    assert info.vectors == {"caption": 4, "image": 3}
    assert info.models == {"caption": "text-model (captions)", "image": "clip-model"}
    assert info.videos == ["/v/a.mp4", "/v/b.mp4"] and info.created.startswith("20")


def test_search_orders_by_cosine_on_the_named_vector(store: GalleryStore) -> None:
    hits = store.search("g", "image", np.array(unit(1, 0.1, 0)), limit=4, model="clip-model")
    assert [h.item.caption for h in hits][:2] == ["a person in red walking", "one person walking"]
    assert hits[0].score == pytest.approx(float(np.dot(unit(1, 0.1, 0), IMAGE[0])), abs=1e-4)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    by_caption = store.search("g", "caption", np.array(unit(0, 0, 1, 0)), limit=1)
    assert by_caption[0].item.caption == "a blue object moving fast"
    assert len(store.search("g", "caption", np.array(unit(1, 0, 0, 0)), limit=2)) == 2


def test_search_filters_by_kind(store: GalleryStore) -> None:
    query = np.array(unit(1, 1, 0, 0))  # the frame item's own vector
    assert store.search("g", "caption", query, limit=1)[0].item.kind == "frame"
    crops = store.search("g", "caption", query, limit=10, kinds=["person", "object"])
    assert {h.item.kind for h in crops} == {"person", "object"} and len(crops) == 3
    assert [h.item.kind for h in store.search("g", "caption", query, limit=10, kinds=["object"])] == ["object"]


def test_a_search_with_another_model_is_one_line_naming_replace(store: GalleryStore) -> None:
    with pytest.raises(GalleryError) as caught:
        store.search("g", "image", np.array(unit(1, 0, 0)), limit=3, model="other-clip")
    message = str(caught.value)
    assert "'clip-model'" in message and "'other-clip'" in message and "--replace" in message and "\n" not in message
    with GalleryStore.in_memory() as captions_only:
        captions_only.create("c", {"caption": (4, "text-model (captions)")})
        with pytest.raises(GalleryError, match="no 'image' vectors.*--replace"):
            captions_only.search("c", "image", np.array(unit(1, 0, 0)), limit=3, model="clip-model")
    with pytest.raises(GalleryError, match="3-dimensional query.*--replace"):
        store.search("g", "caption", np.array(unit(1, 0, 0)), limit=3)


def test_creating_an_existing_gallery_keeps_it_and_other_models_need_replace(store: GalleryStore) -> None:
    store.create("g", VECTORS)  # same models: indexing adds to it
    assert store.info("g").items == 4
    with pytest.raises(GalleryError, match="--replace") as caught:
        store.create("g", {"caption": (4, "text-model (captions)"), "image": (3, "siglip")})
    assert "'clip-model'" in str(caught.value) and "'siglip'" in str(caught.value)
    store.create("g", {"caption": (4, "other-text (captions)")}, replace=True)
    info = store.info("g")
    assert info.items == 0 and info.models == {"caption": "other-text (captions)"} and info.videos == []


def test_adding_the_same_items_again_overwrites_them(store: GalleryStore) -> None:
    changed = [item.model_copy(update={"caption": item.caption + " again"}) for item in ITEMS]
    store.add("g", changed, {"caption": CAPTION, "image": IMAGE})
    items = store.items("g")
    assert len(items) == 4 and all(item.caption.endswith(" again") for item in items)
    assert item_id("g", "/v/a.mp4", 0, None) == item_id("g", "/v/a.mp4", 0, None) != item_id("h", "/v/a.mp4", 0, None)
    store.remove_video("g", "/v/a.mp4")
    assert [item.video for item in store.items("g")] == ["/v/b.mp4"]


def test_add_refuses_vectors_that_do_not_fit(store: GalleryStore) -> None:
    with pytest.raises(GalleryError, match="stores vectors"):
        store.add("g", ITEMS, {"caption": CAPTION})
    with pytest.raises(GalleryError, match="shape"):
        store.add("g", ITEMS, {"caption": CAPTION[:, :3], "image": IMAGE})


def test_an_unknown_gallery_names_the_stored_ones_and_the_commands(store: GalleryStore) -> None:
    for call in (lambda: store.info("nope"), lambda: store.items("nope"), lambda: store.delete("nope"),
                 lambda: store.search("nope", "caption", CAPTION[0], limit=3),
                 lambda: store.add("nope", ITEMS, {"caption": CAPTION, "image": IMAGE})):
        with pytest.raises(GalleryNotFound) as caught:
            call()
        message = str(caught.value)
        assert "no gallery 'nope' (stored galleries: g)" in message
        assert "sleuth galleries" in message and "sleuth index" in message and "\n" not in message


def test_bad_gallery_names_are_refused() -> None:
    with GalleryStore.in_memory() as store:
        for name in ("", "a b", "../x", "x" * 80):
            with pytest.raises(GalleryError, match="invalid gallery name"):
                store.create(name, VECTORS)


def test_listing_and_deleting_galleries(store: GalleryStore) -> None:
    store.create("another", {"caption": (4, "text-model (captions)")})
    assert [(info.name, info.items) for info in store.galleries()] == [("another", 0), ("g", 4)]
    store.delete("g")
    assert store.names() == ["another"]
    with pytest.raises(GalleryNotFound):
        store.items("g")


def test_local_mode_persists_across_store_instances() -> None:
    settings = load_settings()
    with GalleryStore(settings) as store:
        store.create("cam1", VECTORS)
        store.add("cam1", ITEMS, {"caption": CAPTION, "image": IMAGE})
    assert (settings.data_dir / "qdrant" / "collection" / "sleuth_gallery_cam1").is_dir()
    with GalleryStore(load_settings()) as reopened:
        assert sorted(i.id for i in reopened.items("cam1")) == sorted(i.id for i in ITEMS)
        assert reopened.info("cam1").models == {"caption": "text-model (captions)", "image": "clip-model"}
        assert reopened.search("cam1", "image", IMAGE[2], limit=1, model="clip-model")[0].item.kind == "object"


def test_rule_memory_and_galleries_share_the_local_folder_in_one_process() -> None:
    with RuleMemory(load_settings(), HashEmbedder()) as memory, GalleryStore(load_settings()) as store:
        store.create("g", VECTORS)
        assert memory.scenes() == [] and store.names() == ["g"]
        with GalleryStore(load_settings()) as second:  # a second store of the same kind shares it too
            assert second.names() == ["g"]
    with GalleryStore(load_settings()) as store:  # all closed: the folder is free again
        assert store.names() == ["g"]


def test_an_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url().removesuffix("/v1")
    monkeypatch.setenv("QDRANT_URL", url)
    with GalleryStore(load_settings()) as store, pytest.raises(GalleryUnavailable) as caught:
        store.names()
    message = str(caught.value)
    assert isinstance(caught.value, SleuthError) and "\n" not in message
    assert f"cannot reach Qdrant at {url}" in message and "unset QDRANT_URL" in message


def test_a_closed_store_says_so() -> None:
    store = GalleryStore.in_memory()
    store.close()
    store.close()
    with pytest.raises(GalleryError, match="closed"):
        store.names()


# -- item images ------------------------------------------------------------------------------------

MOVER = Mover(20, 30, 20, 40, vx=30.0, colour=RED)


def test_item_image_re_reads_the_crop_with_a_margin(tmp_path: Path) -> None:
    images = render([MOVER, Mover(120, 10, 16, 30, colour=BLUE)], n_frames=8)
    folder = write_images(tmp_path / "clip", images)
    box = MOVER.box_at(5 / 10)  # frame 5 at 10 fps
    item = make_item(str(folder), 5, "person", box)
    crop = item_image(item, margin=0.1)
    assert crop.shape == (48, 24, 3)  # 20x40 grown by 2 and 4 pixels on each side
    assert np.array_equal(crop[4:-4, 2:-2], images[5][box[1]:box[3], box[0]:box[2]])
    assert np.array_equal(item_image(item, margin=0.0), images[5][box[1]:box[3], box[0]:box[2]])
    edge = make_item(str(folder), 0, "object", (0, 0, 10, 10))
    assert item_image(edge, margin=0.5).shape == (15, 15, 3)  # clipped at the frame's border
    whole = make_item(str(folder), 3, "frame")
    assert np.array_equal(item_image(whole), images[3])


def test_item_image_from_a_video_file(tmp_path: Path) -> None:
    images = render([MOVER], n_frames=10)
    video = write_video(tmp_path / "clip.mp4", images)
    box = MOVER.box_at(0.7)
    crop = item_image(make_item(str(video), 7, "person", box), margin=0.0)
    assert crop.shape == (40, 20, 3)
    assert np.abs(crop.astype(int) - np.array(RED)).mean() < 25  # the red mover, through H.264


def test_a_moved_video_is_a_one_line_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", render([MOVER], n_frames=5))
    item = make_item(str(video), 2)
    video.rename(tmp_path / "moved.mp4")
    with pytest.raises(GalleryError) as caught:
        item_image(item)
    message = str(caught.value)
    assert str(video) in message and "--replace" in message and "\n" not in message
    short = make_item(str(tmp_path / "moved.mp4"), 99)
    with pytest.raises(GalleryError, match="has no frame 99"):
        item_image(short)
