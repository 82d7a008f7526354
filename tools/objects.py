"""Object stage: what is in each frame, linked into tracks, with its motion.

One pass over the clip's frames:

1. **Detection** (:mod:`sleuth.tools.perception`): NanoDet names people, bicycles, cars and the
   other COCO classes; moving regions that no detection covers are kept as ``object``.
2. **Tracking**: greedy matching of boxes between frames by IoU, then by centre distance
   relative to box size; a track survives a few missed frames. Its class is the
   confidence-weighted majority of its detections. Each object carries its track id, its
   velocity in pixels per second and its recent centres (the proposer's trajectory task uses the
   last 7).
3. **Motion**: dense optical flow between consecutive frames gives each box its motion by
   direction (8 bins, pixels per second).

Another detector plugs in through :class:`Detector` (``prepare(images)``, ``detect(image)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from sleuth.tools.frames import Frame
from sleuth.tools.perception.boxes import Box, Detection, centre, crop, iou, size
from sleuth.tools.perception.motion import Flow, box_motion

__all__ = ["Box", "Detection", "Detector", "FrameObjects", "ObjectStage", "TrackedObject", "Tracker", "crop"]


@dataclass(slots=True)
class TrackedObject:
    """One object in one frame, with what its track knows about its motion."""

    track_id: int
    box: Box
    label: str
    score: float
    velocity: tuple[float, float]  # pixels per second, +x right, +y down
    history: list[tuple[float, float]]  # centres of this track up to now (oldest first, at most 16)
    age: int  # frames this track has been seen
    motion: tuple[float, ...] = ()  # optical flow by direction (8 bins, pixels per second); () when unknown

    @property
    def centre(self) -> tuple[float, float]:
        return centre(self.box)

    @property
    def size(self) -> tuple[int, int]:
        return size(self.box)

    @property
    def speed(self) -> float:
        return float(np.hypot(*self.velocity))


@dataclass(slots=True)
class FrameObjects:
    index: int
    time_s: float
    width: int
    height: int
    objects: list[TrackedObject] = field(default_factory=list)


class Detector(Protocol):
    """Anything that finds objects in an RGB frame. ``prepare`` sees a sample of the clip first."""

    def prepare(self, images: Sequence[np.ndarray]) -> None: ...

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class Tracker:
    """Greedy frame-to-frame association: IoU first, then centre distance within ~1.5 box sizes."""

    def __init__(self, *, iou_threshold: float = 0.2, max_missed: int = 5, history: int = 16) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.history = history
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1

    def reset(self) -> None:
        self._tracks.clear()
        self._next_id = 1

    def update(self, time_s: float, detections: Sequence[Detection]) -> list[TrackedObject]:
        live = list(self._tracks.values())
        pairs = []
        for t_index, track in enumerate(live):
            for d_index, detection in enumerate(detections):
                overlap = iou(track.box, detection.box)
                distance = np.hypot(*np.subtract(centre(track.box), centre(detection.box)))
                reach = 1.5 * max(8.0, np.hypot(*size(track.box)) / 2)
                if overlap >= self.iou_threshold or distance <= reach:
                    pairs.append((-(overlap + 1.0 - distance / (reach * 10)), t_index, d_index))
        pairs.sort()
        used_tracks: set[int] = set()
        used_detections: set[int] = set()
        result = []
        for _, t_index, d_index in pairs:
            if t_index in used_tracks or d_index in used_detections:
                continue
            used_tracks.add(t_index)
            used_detections.add(d_index)
            result.append(live[t_index].observe(time_s, detections[d_index], self.history))
        for d_index, detection in enumerate(detections):
            if d_index not in used_detections:
                track = _Track(self._next_id, detection.box, time_s)
                self._tracks[track.track_id] = track
                self._next_id += 1
                result.append(track.observe(time_s, detection, self.history))
        for t_index, track in enumerate(live):
            if t_index not in used_tracks:
                track.missed += 1
                if track.missed > self.max_missed:
                    del self._tracks[track.track_id]
        return sorted(result, key=lambda obj: obj.track_id)


@dataclass
class _Track:
    track_id: int
    box: Box
    last_time: float
    missed: int = 0
    age: int = 0
    velocity: tuple[float, float] = (0.0, 0.0)
    centres: list[tuple[float, float]] = field(default_factory=list)
    votes: dict[str, float] = field(default_factory=dict)  # confidence per class over the track's detections

    def observe(self, time_s: float, detection: Detection, history: int) -> TrackedObject:
        middle = centre(detection.box)
        if self.centres and time_s > self.last_time:
            dt = time_s - self.last_time
            instant = ((middle[0] - self.centres[-1][0]) / dt, (middle[1] - self.centres[-1][1]) / dt)
            alpha = 0.5 if self.age > 1 else 1.0
            self.velocity = (alpha * instant[0] + (1 - alpha) * self.velocity[0],
                             alpha * instant[1] + (1 - alpha) * self.velocity[1])
        self.box, self.last_time, self.missed = detection.box, time_s, 0
        self.age += 1
        self.centres = (self.centres + [middle])[-history:]
        # a track's class is what most of its detections say, weighted by confidence (single frames are
        # noisy); an unnamed moving region ("object") votes little, so one named detection outweighs it
        weight = 0.1 if detection.label == "object" else max(detection.score, 0.1)
        self.votes[detection.label] = self.votes.get(detection.label, 0.0) + weight
        label = max(self.votes, key=self.votes.__getitem__)
        return TrackedObject(self.track_id, detection.box, label, detection.score, self.velocity,
                             list(self.centres), self.age)


class ObjectStage:
    """Detector + tracker + flow over a clip. ``run`` prepares the detector on the clip's own frames.
    The default detector is the embedded :class:`~sleuth.tools.perception.detector.SceneDetector`."""

    def __init__(self, detector: Detector | None = None, tracker: Tracker | None = None, *,
                 flow: Flow | None = None) -> None:
        if detector is None:
            from sleuth.tools.perception.detector import SceneDetector

            detector = SceneDetector()
        self.detector = detector
        self.tracker = tracker or Tracker()
        self.flow = flow or Flow()

    def run(self, frames: Iterable[Frame], *, prepare: bool = True) -> list[FrameObjects]:
        frames = list(frames)
        if prepare:
            self.detector.prepare([frame.image for frame in frames])
            self.tracker.reset()
            self.flow.reset()
        result = []
        for frame in frames:
            detections = self.detector.detect(frame.image)
            height, width = frame.image.shape[:2]
            objects = self.tracker.update(frame.time_s, detections)
            motion = self.flow.update(frame.image, frame.time_s)
            for obj in objects:
                if motion is not None:
                    obj.motion = box_motion(motion[0], motion[1], obj.box)
            result.append(FrameObjects(frame.index, frame.time_s, width, height, objects))
        return result
