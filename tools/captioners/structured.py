"""The embedded captioner: template captions from the object stage's tracks.

Each frame becomes a few plain sentences that the caption-based agents (rule induction,
deduction, search) can reason over::

    2 people and 1 bicycle. A person riding a bicycle at the bottom left is moving fast to the
    right, dark grey. A person in the centre is walking toward the camera, white.

What is described, per object: its class from the detector (people, vehicles, animals and carried
things a street camera sees; other classes and unnamed moving regions are "object"), a person
riding a bicycle, motorcycle or skateboard as one rider, its position on a 3x3 grid, its speed
relative to its own height (so near and far objects compare: a walker covers about one body
height per second), its direction, its size relative to the clip's typical object, and its
dominant colour. Frames are described as one clip (speeds need neighbouring frames), so pass
consecutive frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sleuth.config import Settings
from sleuth.tools.frames import Frame
from sleuth.tools.objects import FrameObjects, ObjectStage, TrackedObject
from sleuth.tools.perception.boxes import overlap_of_smaller
from sleuth.tools.perception.nanodet import SCENE_CLASSES

MAX_LISTED = 8
RIDDEN = ("bicycle", "motorcycle", "skateboard")
PLURAL = {"person": "people", "bus": "buses", "knife": "knives"}
NEUTRAL = ((0.10, "black"), (0.28, "dark grey"), (0.55, "grey"), (0.80, "light grey"), (1.01, "white"))
HUES = ((10, "red"), (22, "orange"), (35, "yellow"), (80, "green"), (100, "cyan"), (130, "blue"),
        (150, "purple"), (170, "pink"), (181, "red"))


class StructuredDescriber:
    """Captioner from the perception facts (detector, tracks). Times come from the frames."""

    name = "structured-describer"

    def __init__(self, settings: Settings | None = None, *, stage: ObjectStage | None = None) -> None:
        self.settings = settings
        self._stage = stage

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        frames = list(frames)
        if not frames:
            return []
        stage = self._stage or ObjectStage()
        tracked = stage.run(frames)
        return describe_clip(frames, tracked)


def describe_clip(frames: Sequence[Frame], tracked: Sequence[FrameObjects]) -> list[str]:
    """One caption per frame from already-tracked objects."""
    areas = [obj.size[0] * obj.size[1] for frame in tracked for obj in frame.objects]
    typical_area = float(np.median(areas)) if areas else 1.0
    return [describe_frame(frame.image, objects, typical_area)
            for frame, objects in zip(frames, tracked, strict=True)]


def noun(obj: TrackedObject) -> str:
    """What a caption calls the object: its class where the caption names that class, else "object"."""
    return obj.label if obj.label in SCENE_CLASSES else "object"


def count_phrase(count: int, name: str) -> str:
    return f"{count} {name if count == 1 else PLURAL.get(name, name + 's')}"


def riders(objects: Sequence[TrackedObject]) -> dict[int, TrackedObject]:
    """Ridden things (bicycle, motorcycle, skateboard) -> the person on each, by the ridden track's id."""
    pairs: dict[int, TrackedObject] = {}
    people = [obj for obj in objects if obj.label == "person"]
    for ridden in (obj for obj in objects if obj.label in RIDDEN):
        on = [p for p in people if p not in pairs.values() and overlap_of_smaller(p.box, ridden.box) > 0.2
              and p.centre[1] <= ridden.centre[1]]
        if on:
            pairs[ridden.track_id] = max(on, key=lambda p: overlap_of_smaller(p.box, ridden.box))
    return pairs


def describe_frame(image: np.ndarray, frame: FrameObjects, typical_area: float) -> str:
    objects = sorted(frame.objects, key=lambda obj: -obj.size[0] * obj.size[1])
    if not objects:
        return "No moving people or objects are visible."
    counts: dict[str, int] = {}
    for obj in objects:
        counts[noun(obj)] = counts.get(noun(obj), 0) + 1
    others = counts.pop("object", 0)
    parts = [count_phrase(count, name) for name, count in sorted(counts.items(), key=lambda kv: (kv[0] != "person",
                                                                                                 -kv[1], kv[0]))]
    if others:
        parts.append(f"{others} {'other ' if parts else ''}{'moving object' if others == 1 else 'moving objects'}")
    sentences = [(", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]).capitalize() + "."]
    ridden_by = riders(objects)
    carried = {person.track_id for person in ridden_by.values()}
    listed = [obj for obj in objects if obj.track_id not in carried]
    for obj in listed[:MAX_LISTED]:
        sentences.append(describe_object(image, obj, frame.width, frame.height, typical_area,
                                         rider=obj.track_id in ridden_by))
    if len(listed) > MAX_LISTED:
        sentences.append(f"{len(listed) - MAX_LISTED} more are smaller.")
    return " ".join(sentences)


def describe_object(image: np.ndarray, obj: TrackedObject, width: int, height: int, typical_area: float, *,
                    rider: bool = False) -> str:
    name = f"person riding a {obj.label}" if rider else noun(obj)
    size = "" if rider else size_word(obj.size[0] * obj.size[1] / max(typical_area, 1.0))
    words = f"{size + ' ' if size else ''}{name}"
    subject = f"{'An' if words[0] in 'aeiou' else 'A'} {words}"
    details = [w for w in (colour_name(image, obj.box),) if w]
    tail = "".join(f", {word}" for word in details)  # no dangling comma when the colour is unknown
    return f"{subject} {position_phrase(obj.centre, width, height)} is {motion_phrase(obj)}{tail}."


def position_phrase(centre: tuple[float, float], width: int, height: int) -> str:
    col = min(2, int(3 * centre[0] / max(width, 1)))
    row = min(2, int(3 * centre[1] / max(height, 1)))
    vertical = ("top", "", "bottom")[row]
    horizontal = ("left", "", "right")[col]
    if not vertical and not horizontal:
        return "in the centre"
    if vertical and horizontal:
        return f"at the {vertical} {horizontal}"
    return f"at the {vertical or horizontal}"


def relative_speed(obj: TrackedObject) -> float:
    """Speed in own heights per second (perspective-free: a walker is about 1)."""
    return obj.speed / max(obj.size[1], 1)


def motion_phrase(obj: TrackedObject) -> str:
    if obj.age < 2:
        return "just appearing"
    speed = relative_speed(obj)
    if speed < 0.15:
        return "standing still" if noun(obj) == "person" else "not moving"
    direction = direction_phrase(obj.velocity)
    if noun(obj) == "person":
        verb = "walking slowly" if speed < 0.5 else "walking" if speed < 1.6 else "running" if speed < 3 else \
            "moving very fast"
    else:
        verb = "moving slowly" if speed < 0.5 else "moving" if speed < 1.6 else "moving fast" if speed < 3 else \
            "moving very fast"
    return f"{verb} {direction}"


def direction_phrase(velocity: tuple[float, float]) -> str:
    vx, vy = velocity
    angle = (np.degrees(np.arctan2(vy, vx)) + 360) % 360  # 0 right, 90 down (toward the camera)
    names = ("to the right", "toward the camera and right", "toward the camera", "toward the camera and left",
             "to the left", "away and to the left", "away from the camera", "away and to the right")
    return names[int(((angle + 22.5) % 360) // 45)]


def size_word(ratio: float) -> str:
    if ratio < 0.4:
        return "small"
    if ratio < 2.5:
        return ""
    if ratio < 6:
        return "large"
    return "very large"


def colour_name(image: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """Dominant colour of the box's central half, as a plain word."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    region = image[max(0, y1 + h // 4): max(1, y2 - h // 4), max(0, x1 + w // 4): max(1, x2 - w // 4)]
    if region.size == 0:
        return ""
    hsv = cv2.cvtColor(region.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(float)
    saturated = hsv[(hsv[:, 1] > 70) & (hsv[:, 2] > 50)]
    if len(saturated) > 0.35 * len(hsv):
        hue = float(np.median(saturated[:, 0]))
        return next(name for limit, name in HUES if hue < limit)
    value = float(np.median(hsv[:, 2])) / 255.0
    return next(name for limit, name in NEUTRAL if value < limit)
