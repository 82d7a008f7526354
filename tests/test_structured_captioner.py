"""StructuredDescriber: the embedded template captioner over the object stage's tracks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sleuth.config import Settings
from sleuth.tools.captioners import build_captioner
from sleuth.tools.captioners.base import Captioner
from sleuth.tools.captioners.structured import StructuredDescriber, describe_object
from sleuth.tools.frames import Frame, FrameReader
from sleuth.tools.objects import TrackedObject

from tests.synthetic_video import FPS, Mover, frames, render, two_movers, write_video


def sentence_about(caption: str, colour: str) -> str:
    """The one sentence of ``caption`` that describes the object of ``colour``."""
    found = [s for s in caption.split(". ") if re.search(rf"\b{colour}\b", s)]
    assert len(found) == 1, f"no single sentence about a {colour} object in: {caption}"
    return found[0]


@pytest.fixture(scope="module")
def captions() -> list[str]:
    return StructuredDescriber().caption(frames(two_movers(), FPS))


def test_one_caption_per_frame_counting_the_moving_objects(captions: list[str]) -> None:
    assert len(captions) == 30
    assert all(isinstance(caption, str) and caption for caption in captions)
    assert sum(caption.startswith("2 moving objects.") for caption in captions) >= 27


def test_captions_say_where_which_way_how_fast_and_what_colour(captions: list[str]) -> None:
    # at 0.3 s the red object is at x 13..27, y 12..32 (top left), the blue one at x 114..130, y 75..99 (bottom right)
    fast, slow = sentence_about(captions[3], "red"), sentence_about(captions[3], "blue")
    assert "at the top left" in fast and "at the bottom right" in slow

    for caption in captions[2:]:
        fast, slow = sentence_about(caption, "red"), sentence_about(caption, "blue")
        assert "moving fast to the right" in fast  # 45 px/s over 20 px height: 2.25 heights per second
        assert "to the left" in slow and "fast" not in slow  # 20 px/s over 24 px: 0.83 heights per second
        assert "person" not in fast + slow  # flat rectangles are not people


def test_the_first_frame_has_no_motion_yet(captions: list[str]) -> None:
    assert sentence_about(captions[0], "red").endswith("is just appearing, red.")


def test_an_object_without_a_colour_has_no_dangling_comma() -> None:
    image = render([], n_frames=1)[0]
    degenerate = TrackedObject(1, (40, 40, 40, 60), "object", 1.0, (30.0, 0.0), [(40.0, 50.0)], 3)  # zero width

    sentence = describe_object(image, degenerate, 160, 120, typical_area=400.0)

    assert sentence == "A small object at the left is moving to the right."


def test_speed_words_follow_the_frame_times() -> None:
    # the same pixels per frame shown at half the rate: 1.1 heights per second is no longer fast
    slow_motion = [Frame(i, i / (FPS / 2), image) for i, image in enumerate(two_movers())]

    captions = StructuredDescriber().caption(slow_motion)

    assert all("moving to the right" in sentence_about(caption, "red") for caption in captions[2:])


def test_direction_and_position_follow_the_motion() -> None:
    up = Mover(70, 90, 14, 20, vy=-25.0)  # bottom centre, going away (up the image)
    captions = StructuredDescriber().caption(frames(render([up], n_frames=30)))

    assert captions[3].startswith("1 moving object.")
    assert "at the bottom is moving away from the camera" in captions[3]


def test_a_static_scene_has_no_moving_objects() -> None:
    parked = Mover(60, 40, 20, 30)
    captions = StructuredDescriber().caption(frames(render([parked], n_frames=8)))

    assert captions == ["No moving people or objects are visible."] * 8


def test_an_empty_clip_gives_no_captions() -> None:
    assert StructuredDescriber().caption([]) == []


def test_captions_an_encoded_video(tmp_path: Path) -> None:
    clip = FrameReader(write_video(tmp_path / "clip.mp4", two_movers(), FPS)).read()

    captions = StructuredDescriber().caption(clip)

    assert len(captions) == len(clip)
    assert "moving fast to the right, red" in captions[10]
    assert re.search(r"moving to the left, (blue|purple)", captions[10])


def test_is_the_default_captioner() -> None:
    describer = build_captioner(Settings())

    assert isinstance(describer, StructuredDescriber)
    assert isinstance(describer, Captioner)
    assert describer.name == "structured-describer"
