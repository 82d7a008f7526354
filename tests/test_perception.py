"""Perception: NanoDet's decoding, motion by direction, the scene detector, attribute streams and
the captions built on them. The real model is used only where marked slow; the rest feeds
hand-made model outputs and flows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sleuth.tools.captioners.structured import describe_frame
from sleuth.tools.objects import FrameObjects, TrackedObject, Tracker
from sleuth.tools.perception.boxes import Detection
from sleuth.tools.perception.detector import SceneDetector
from sleuth.tools.perception.motion import box_motion
from sleuth.tools.perception.nanodet import BINS, COCO_CLASSES, INPUT, decode
from sleuth.tools.proposer.attributes import AttributeModel, ObjectTable

PED2 = Path("/work/shared/data/ped2/testing/frames/06/100.jpg")


def raw_outputs(cells: list[tuple[int, int, int, int, float, tuple[int, int, int, int]]]) -> list[np.ndarray]:
    """NanoDet's six outputs with the given cells lit: (stride, row, col, class, probability,
    distance bins left/top/right/bottom)."""
    outputs = []
    for stride in (8, 16, 32):
        side = INPUT // stride
        probabilities = np.zeros((1, side * side, len(COCO_CLASSES)), np.float32)
        distances = np.zeros((1, side * side, 4 * BINS), np.float32)
        for s, row, col, cls, p, bins in cells:
            if s == stride:
                probabilities[0, row * side + col, cls] = p
                for k, b in enumerate(bins):
                    distances[0, row * side + col, k * BINS + b] = 30.0  # a softmax peaked on bin b
        outputs += [probabilities, distances]
    return outputs


def test_decoding_puts_boxes_in_the_frames_pixels_with_class_names() -> None:
    # stride 8, cell (row 10, col 20): the corner point is (160, 80); sides 2, 3, 4, 5 bins of 8 px
    outputs = raw_outputs([(8, 10, 20, 1, 0.9, (2, 3, 4, 5)), (16, 2, 2, 2, 0.2, (1, 1, 1, 1))])

    found = decode(outputs, INPUT * 2, INPUT)  # a frame twice as wide as the model's input

    assert len(found) == 1  # the car at 0.2 is under the threshold
    (bicycle,) = found
    assert bicycle.label == "bicycle" and bicycle.score == pytest.approx(0.9)
    assert bicycle.box == ((160 - 16) * 2, 80 - 24, (160 + 32) * 2, 80 + 40)


def test_overlapping_boxes_of_one_class_are_suppressed_and_other_classes_kept() -> None:
    outputs = raw_outputs([(8, 10, 20, 0, 0.8, (2, 4, 2, 4)), (8, 10, 21, 0, 0.7, (3, 4, 1, 4)),
                           (16, 5, 10, 36, 0.6, (1, 0, 1, 1))])

    found = decode(outputs, INPUT, INPUT)

    assert [d.label for d in found] == ["person", "skateboard"]  # strongest first; one person left


def test_box_motion_is_speed_by_direction() -> None:
    flow = np.zeros((100, 100, 2), np.float32)
    flow[:50, :, 0] = 10.0  # the top half moves right at 10 px/s
    flow[50:, :, 1] = 20.0  # the bottom half moves down (toward the camera) at 20 px/s

    top = box_motion(flow, 1.0, (0, 0, 100, 50))
    bottom = box_motion(flow, 0.5, (0, 100, 200, 200))  # flow at half scale: the box is scaled too
    empty = box_motion(flow, 1.0, (10, 10, 10, 10))

    assert top[0] == pytest.approx(10.0) and sum(top) == pytest.approx(10.0)
    assert bottom[6] == pytest.approx(20.0) and sum(bottom) == pytest.approx(20.0)  # bin 6 points down
    assert empty == (0.0,) * 8


class _FixedDetector:
    def __init__(self, detections: list[Detection]) -> None:
        self.detections = detections

    def detect(self, image: np.ndarray) -> list[Detection]:
        return list(self.detections)


class _FixedRegions:
    def __init__(self, regions: list[Detection]) -> None:
        self.regions = regions

    def prepare(self, images: object) -> None:
        pass

    def detect(self, image: np.ndarray) -> list[Detection]:
        return list(self.regions)


def test_the_scene_detector_adds_only_moving_regions_no_detection_covers() -> None:
    person = Detection((10, 10, 30, 60), "person", 0.8)
    detector = SceneDetector(_FixedDetector([person]), _FixedRegions([  # type: ignore[arg-type]
        Detection((12, 12, 32, 62)), Detection((100, 100, 140, 120))]))

    found = detector.detect(np.zeros((200, 200, 3), np.uint8))

    assert found == [person, Detection((100, 100, 140, 120), "object", 1.0)]


def test_a_tracks_class_is_its_confident_majority() -> None:
    tracker = Tracker()
    labels = []
    for step, (label, score) in enumerate([("bicycle", 0.6), ("person", 0.3), ("object", 1.0), ("bicycle", 0.5),
                                           ("person", 0.35), ("object", 1.0)]):
        (obj,) = tracker.update(step / 10, [Detection((10 + step, 10, 40 + step, 40), label, score)])
        labels.append(obj.label)

    assert labels == ["bicycle"] * 6  # unnamed moving regions vote little; the bicycle wins throughout


def _table(labels: list[str], speeds: list[float]) -> ObjectTable:
    n = len(labels)
    return ObjectTable(np.arange(n), np.arange(n), np.tile([0, 0, 10, 20], (n, 1)), labels, np.asarray(speeds, float))


def test_attribute_streams_flag_fast_objects_and_unseen_classes() -> None:
    rng = np.random.default_rng(0)
    model = AttributeModel()
    model.fit(_table(["person"] * 200, list(rng.uniform(8, 12, 200))))
    model.calibrate([(_table(["person"] * 40, list(rng.uniform(8, 12, 40))), 40)])

    per_frame, per_object = model.frame_scores(_table(["person", "person", "car"], [10.0, 40.0, 10.0]), 4)
    speed_z, class_z = model.z("speed", per_frame["speed"]), model.z("class", per_frame["class"])

    assert per_object["speed"][1] == pytest.approx(4.0, rel=0.05)  # 4x the normal median speed
    assert speed_z[1] > 5 > abs(speed_z[0])
    assert class_z[2] > 3 > abs(class_z[0])  # a car where only people were seen
    assert per_frame["speed"][3] == 0.0  # a frame without objects
    restored = AttributeModel.from_state(model.state())
    assert restored.object_scores(_table(["car"], [10.0]))["class"][0] == pytest.approx(per_object["class"][2])


def test_speed_is_measured_against_the_usual_speed_of_the_objects_class() -> None:
    """A car at a car's usual pace is not fast because people walk slower; a class seen too rarely to
    have its own pace is compared with all objects; misread classes count as unnamed objects."""
    rng = np.random.default_rng(1)
    labels = ["person"] * 100 + ["car"] * 20 + ["dog"] * 3
    speeds = list(rng.uniform(8, 12, 100)) + list(rng.uniform(38, 42, 20)) + [10.0] * 3
    model = AttributeModel()
    model.fit(_table(labels, speeds))

    ratios = model.object_scores(_table(["car", "person", "dog"], [40.0, 40.0, 40.0]))["speed"]

    assert ratios[0] == pytest.approx(1.0, rel=0.1)  # a car at a car's pace
    assert ratios[1] == pytest.approx(4.0, rel=0.1)  # a person at a car's pace
    assert model.usual_speed("dog") == model.normal_speed  # 3 dogs: too few for a pace of their own
    table = ObjectTable.from_frames([FrameObjects(0, 0.0, 100, 100, [_obj(1, (0, 0, 10, 10), "sports ball")])])
    assert table.labels == ["object"]


def _obj(track: int, box: tuple[int, int, int, int], label: str,
         velocity: tuple[float, float] = (60.0, 0.0)) -> TrackedObject:
    return TrackedObject(track, box, label, 0.7, velocity, [], 5)


def test_captions_name_classes_and_riders() -> None:
    image = np.full((240, 360, 3), 128, np.uint8)
    frame = FrameObjects(0, 0.0, 360, 240, [
        _obj(1, (100, 80, 120, 130), "person"),  # on the bicycle below
        _obj(2, (95, 110, 135, 140), "bicycle", (200.0, 0.0)),
        _obj(3, (250, 60, 265, 100), "person", (0.0, 0.0)),
        _obj(4, (300, 150, 320, 160), "skis", (0.0, 0.0)),
    ])

    caption = describe_frame(image, frame, typical_area=600)

    assert caption.startswith("2 people, 1 bicycle and 1 other moving object.")
    assert "A person riding a bicycle at the left is moving very fast to the right" in caption
    assert caption.count("A person") == 2  # the rider and the one standing: the rider is not listed twice
    assert "skis" not in caption


@pytest.mark.slow
def test_nanodet_finds_the_walkers_and_the_bicycle_in_ped2() -> None:
    """The real model (installed by the setup) on Ped2 test video 06, frame 100."""
    import cv2
    from sleuth.tools.perception.nanodet import NanoDet

    if not PED2.exists():
        pytest.skip(f"{PED2} is not here")
    image = cv2.cvtColor(cv2.imread(str(PED2)), cv2.COLOR_BGR2RGB)

    found = NanoDet().detect(image)

    people = [d for d in found if d.label == "person" and d.score > 0.5]
    bicycles = [d for d in found if d.label == "bicycle"]
    assert len(people) >= 6
    assert len(bicycles) == 1 and bicycles[0].score > 0.5
    x1, y1, x2, y2 = bicycles[0].box
    assert 160 < (x1 + x2) / 2 < 230 and 140 < (y1 + y2) / 2 < 190  # under the rider, centre of the walkway
