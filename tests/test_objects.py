"""Object stage: NanoDet's classes plus moving regions, tracks with velocities, optical flow per box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sleuth.tools.frames import Frame, FrameReader
from sleuth.tools.objects import Detection, FrameObjects, ObjectStage, TrackedObject, Tracker
from sleuth.tools.perception.motion import MotionRegions
from sleuth.tools.perception.nanodet import COCO_CLASSES

from tests.synthetic_video import FAST, FPS, SLOW, Mover, frames, render, two_movers, write_video

VTEST = Path("/work/shared/data/videos/vtest.avi")
WARM_UP = 2  # frames before velocities are measured over a step


def overlap(obj: TrackedObject, box: tuple[int, int, int, int]) -> float:
    """Intersection over the true box's area."""
    ix = max(0, min(obj.box[2], box[2]) - max(obj.box[0], box[0]))
    iy = max(0, min(obj.box[3], box[3]) - max(obj.box[1], box[1]))
    return ix * iy / ((box[2] - box[0]) * (box[3] - box[1]))


def matches(result: list[FrameObjects], mover: Mover) -> list[TrackedObject]:
    """Per frame from WARM_UP on, the object covering ``mover``'s true box (fails when there is none)."""
    found = []
    for frame in result[WARM_UP:]:
        truth = mover.box_at(frame.time_s)
        best = max(frame.objects, key=lambda obj: overlap(obj, truth), default=None)
        assert best is not None and overlap(best, truth) > 0.6, f"frame {frame.index}: {mover} not found"
        found.append(best)
    return found


@pytest.fixture(scope="module")
def tracked() -> list[FrameObjects]:
    return ObjectStage().run(frames(two_movers(), FPS))


def test_finds_both_moving_objects_in_every_frame(tracked: list[FrameObjects]) -> None:
    counts = [len(frame.objects) for frame in tracked]

    assert counts[0] == 2  # the background model starts from the clip's median: no warm-up needed
    assert sum(count == 2 for count in counts) >= 0.9 * len(counts)
    assert max(counts) <= 3
    assert all((frame.width, frame.height) == (160, 120) for frame in tracked)
    assert [frame.time_s for frame in tracked] == pytest.approx([i / FPS for i in range(len(tracked))])


def test_each_object_keeps_one_track_id(tracked: list[FrameObjects]) -> None:
    fast_ids = {obj.track_id for obj in matches(tracked, FAST)}
    slow_ids = {obj.track_id for obj in matches(tracked, SLOW)}

    assert len(fast_ids) == 1 and len(slow_ids) == 1 and fast_ids != slow_ids
    last = matches(tracked, FAST)[-1]
    assert last.age == len(tracked) and len(last.history) == 16  # seen every frame; history capped
    assert np.diff([x for x, _ in last.history]).min() > 0  # centres move right, oldest first


def test_velocities_are_in_pixels_per_second_with_the_right_sign(tracked: list[FrameObjects]) -> None:
    fast = np.array([obj.velocity for obj in matches(tracked, FAST)])
    slow = np.array([obj.velocity for obj in matches(tracked, SLOW)])

    assert np.median(fast[:, 0]) == pytest.approx(FAST.vx, rel=0.15)  # +45 px/s, to the right
    assert np.median(slow[:, 0]) == pytest.approx(SLOW.vx, rel=0.15)  # -20 px/s, to the left
    assert np.abs(np.median(fast[:, 1])) < 3 and np.abs(np.median(slow[:, 1])) < 3
    fast_speeds = [obj.speed for obj in matches(tracked, FAST)]
    slow_speeds = [obj.speed for obj in matches(tracked, SLOW)]
    assert min(fast_speeds) > max(slow_speeds)


def test_optical_flow_gives_each_box_its_motion_by_direction(tracked: list[FrameObjects]) -> None:
    assert tracked[0].objects and all(obj.motion == () for obj in tracked[0].objects)  # no flow before frame 2
    fast = np.array([obj.motion for obj in matches(tracked, FAST)])
    slow = np.array([obj.motion for obj in matches(tracked, SLOW)])

    assert fast.shape[1] == 8 and (fast.argmax(1) == 0).mean() > 0.8  # bin 0: to the right
    assert (slow.argmax(1) == 4).mean() > 0.8  # bin 4: to the left
    assert np.median(fast.sum(1)) > np.median(slow.sum(1))  # the faster mover's flow is larger


def test_velocity_follows_the_frame_times_not_the_frame_count() -> None:
    images = two_movers()
    at_half_rate = [Frame(i, i / (FPS / 2), image) for i, image in enumerate(images)]  # same motion, twice the time

    result = ObjectStage().run(at_half_rate)

    fast = [obj for frame in result[WARM_UP:] for obj in frame.objects if obj.velocity[0] > 0]
    assert np.median([obj.velocity[0] for obj in fast]) == pytest.approx(FAST.vx / 2, rel=0.15)


def test_objects_in_an_encoded_video_are_found_too(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", two_movers(), FPS)

    result = ObjectStage().run(FrameReader(path).read())

    assert sum(len(frame.objects) == 2 for frame in result) >= 0.9 * len(result)
    assert np.median([obj.velocity[0] for obj in matches(result, FAST)]) == pytest.approx(FAST.vx, rel=0.15)


def test_a_static_scene_has_no_objects() -> None:
    parked = Mover(60, 40, 20, 30)  # a red box that never moves is background
    for images in (render([], n_frames=10), render([parked], n_frames=10)):
        assert all(frame.objects == [] for frame in ObjectStage().run(frames(images, FPS)))
    assert ObjectStage().run([]) == []


def test_detector_boxes_are_in_original_pixels_when_downscaled() -> None:
    mover = Mover(10, 20, 30, 45, vx=60.0)
    images = [np.kron(image, np.ones((4, 4, 1), np.uint8)) for image in render([mover], n_frames=20)]
    detector = MotionRegions(work_width=160)  # frames are 640x480: segmented at 1/4
    detector.prepare(images)

    boxes = [detection.box for detection in detector.detect(images[5])]

    truth = tuple(4 * v for v in mover.box_at(5 / FPS))
    assert len(boxes) == 1
    assert np.abs(np.subtract(boxes[0], truth)).max() <= 8


def test_tracker_keeps_ids_of_objects_moving_in_small_steps() -> None:
    tracker = Tracker()
    ids = []
    for step in range(10):
        t = step / FPS
        a = Detection((10 + 3 * step, 20, 30 + 3 * step, 60))  # right, 30 px/s
        b = Detection((120, 70 - 2 * step, 140, 100 - 2 * step))  # up, 20 px/s
        objects = tracker.update(t, [b, a] if step % 2 else [a, b])  # input order does not matter
        ids.append([obj.track_id for obj in objects])
        by_id = {obj.track_id: obj for obj in objects}

    assert all(step_ids == [1, 2] for step_ids in ids)
    assert by_id[1].velocity == pytest.approx((30.0, 0.0)) and by_id[2].velocity == pytest.approx((0.0, -20.0))
    assert by_id[1].age == 10 and by_id[1].centre == (20 + 27, 40)


def test_tracker_bridges_short_gaps_and_forgets_long_ones() -> None:
    tracker = Tracker(max_missed=3)
    box = (50, 50, 70, 90)
    assert [obj.track_id for obj in tracker.update(0.0, [Detection(box)])] == [1]
    for step in range(1, 4):  # missed 3 times: still within max_missed
        assert tracker.update(step / FPS, []) == []
    assert [obj.track_id for obj in tracker.update(0.4, [Detection(box)])] == [1]

    for step in range(5, 9):  # missed 4 times: more than max_missed, the track is dropped
        tracker.update(step / FPS, [])
    reappeared = tracker.update(0.9, [Detection(box)])
    assert [obj.track_id for obj in reappeared] == [2]
    assert reappeared[0].velocity == (0.0, 0.0) and reappeared[0].age == 1


def test_a_far_away_detection_starts_a_new_track() -> None:
    tracker = Tracker()
    tracker.update(0.0, [Detection((10, 10, 30, 50))])

    objects = tracker.update(0.1, [Detection((120, 60, 140, 100))])

    assert [obj.track_id for obj in objects] == [2]


def test_track_label_is_the_majority_of_its_detections() -> None:
    tracker = Tracker()
    labels = []
    for step, (label, score) in enumerate([("person", 0.4), ("bicycle", 0.5), ("person", 0.4), ("person", 0.6),
                                           ("bicycle", 0.7)]):
        objects = tracker.update(step / FPS, [Detection((10 + step, 10, 30 + step, 50), label, score)])
        labels.append(objects[0].label)

    assert labels == ["person", "bicycle", "person", "person", "person"]  # confidence-weighted majority


@pytest.mark.skipif(not VTEST.exists(), reason=f"{VTEST} (OpenCV's pedestrian sample) is not on this machine")
def test_real_footage_finds_people() -> None:
    clip = FrameReader(VTEST, max_frames=40).read()

    result = ObjectStage().run(clip)

    counts = [len(frame.objects) for frame in result]
    assert min(counts) >= 2 and np.mean(counts) >= 2.5
    people = [obj for frame in result for obj in frame.objects if obj.label == "person"]
    assert len(people) >= 30  # NanoDet names the walkers
    assert all(obj.label in (*COCO_CLASSES, "object") for frame in result for obj in frame.objects)
    assert all(0 <= obj.box[0] < obj.box[2] <= 768 and 0 <= obj.box[1] < obj.box[3] <= 576
               for frame in result for obj in frame.objects)
