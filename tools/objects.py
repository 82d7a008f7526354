"""Object stage: find moving objects and people in each frame and link them into tracks.

The embedded default needs no trained detector and no download:

1. **Background subtraction** (OpenCV MOG2 on luma, started from the median of a sample of
   frames so the first frames of a clip are already segmented) gives foreground blobs;
   morphology joins broken silhouettes, tiny blobs are ignored. MOG2's shadow detection is off:
   on grey footage (UCSD Ped2) it labels dark clothing on light pavement as shadow.
2. **HOG people classifier**: OpenCV's default people detector (a linear SVM on HOG features)
   scores each blob, resized to the detector's 64x128 window, so blobs are labelled
   ``person`` or ``object`` without sliding a window over the whole frame.
3. **Tracking**: greedy matching of boxes between frames by IoU, then by centre distance
   relative to box size; a track survives a few missed frames. Each object carries its track
   id, its velocity in pixels per second and its recent centres (the trajectory task of the
   proposer uses the last 7).

A stronger detector plugs in through :class:`Detector` (``detect(image) -> list[Detection]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from sleuth.tools.frames import Frame

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the original frame


@dataclass(frozen=True, slots=True)
class Detection:
    box: Box
    label: str = "object"  # "person" when the people detector agrees, else "object"
    score: float = 1.0  # detector confidence; for HOG the SVM margin


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

    @property
    def centre(self) -> tuple[float, float]:
        return _centre(self.box)

    @property
    def size(self) -> tuple[int, int]:
        return _size(self.box)

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


class BackgroundHOGDetector:
    """Moving blobs from background subtraction, labelled by OpenCV's HOG people detector.

    ``min_area``: smallest blob, as a fraction of the frame area. ``work_width``: frames wider
    than this are downscaled for segmentation (boxes come back in original pixels).
    """

    def __init__(self, *, min_area: float = 0.0006, work_width: int = 480, var_threshold: float = 12.0,
                 learning_rate: float = 0.002, person_threshold: float = 0.0, use_hog: bool = True) -> None:
        import cv2

        self.min_area = min_area
        self.work_width = work_width
        self.var_threshold = var_threshold
        self.learning_rate = learning_rate
        self.person_threshold = person_threshold
        self.use_hog = use_hog
        self._cv2 = cv2
        self._subtractor = None
        self._hog = cv2.HOGDescriptor()  # default: 64x128 window, 3780 features
        weights = np.asarray(cv2.HOGDescriptor_getDefaultPeopleDetector(), dtype=np.float32).ravel()
        self._svm_w, self._svm_b = weights[:-1], float(weights[-1])

    def _work(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = image.shape[:2]
        scale = min(1.0, self.work_width / width)
        gray = self._cv2.cvtColor(image, self._cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = self._cv2.resize(gray, (int(width * scale), int(height * scale)), interpolation=self._cv2.INTER_AREA)
        return gray, scale

    def prepare(self, images: Sequence[np.ndarray]) -> None:
        """Start the background model from the per-pixel median of up to 40 frames of the clip."""
        cv2 = self._cv2
        self._subtractor = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=self.var_threshold,
                                                              detectShadows=False)
        if len(images) == 0:
            return
        step = max(1, len(images) // 40)
        sample = np.stack([self._work(image)[0] for image in images[::step][:40]])
        background = np.median(sample, axis=0).astype(np.uint8)
        for _ in range(3):
            self._subtractor.apply(background, learningRate=1.0 if _ == 0 else 0.5)

    def detect(self, image: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        if self._subtractor is None:
            self.prepare([image])
        gray, scale = self._work(image)
        mask = self._subtractor.apply(gray, learningRate=self.learning_rate)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_pixels = self.min_area * mask.shape[0] * mask.shape[1]
        height, width = image.shape[:2]
        detections = []
        for x, y, w, h, area in stats[1:count]:
            if area < min_pixels:
                continue
            box = (int(x / scale), int(y / scale), min(width, int((x + w) / scale)), min(height, int((y + h) / scale)))
            label, score = self._classify(image, box)
            detections.append(Detection(box, label, score))
        return _merge_overlapping(detections)

    def _classify(self, image: np.ndarray, box: Box) -> tuple[str, float]:
        """HOG + the default people SVM on the blob, padded to the detector's 1:2 window."""
        if not self.use_hog:
            return "object", 1.0
        cv2 = self._cv2
        x1, y1, x2, y2 = box
        # the detector's 1:2 window has the person in its middle 75% of height: grow the blob's height by
        # 1/0.75 and take half that as width, so the resize to 64x128 keeps the person's proportions
        window_h = (y2 - y1) / 0.75
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        crop = _crop_padded(image, (int(cx - window_h / 4), int(cy - window_h / 2),
                                    int(cx + window_h / 4), int(cy + window_h / 2)))
        gray = cv2.cvtColor(cv2.resize(crop, (64, 128), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2GRAY)
        features = self._hog.compute(gray).ravel()
        margin = float(features @ self._svm_w + self._svm_b)
        return ("person" if margin > self.person_threshold else "object"), margin


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
                iou = _iou(track.box, detection.box)
                distance = np.hypot(*np.subtract(_centre(track.box), _centre(detection.box)))
                reach = 1.5 * max(8.0, np.hypot(*_size(track.box)) / 2)
                if iou >= self.iou_threshold or distance <= reach:
                    pairs.append((-(iou + 1.0 - distance / (reach * 10)), t_index, d_index))
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
    person_votes: float = 0.0

    def observe(self, time_s: float, detection: Detection, history: int) -> TrackedObject:
        centre = _centre(detection.box)
        if self.centres and time_s > self.last_time:
            dt = time_s - self.last_time
            instant = ((centre[0] - self.centres[-1][0]) / dt, (centre[1] - self.centres[-1][1]) / dt)
            alpha = 0.5 if self.age > 1 else 1.0
            self.velocity = (alpha * instant[0] + (1 - alpha) * self.velocity[0],
                             alpha * instant[1] + (1 - alpha) * self.velocity[1])
        self.box, self.last_time, self.missed = detection.box, time_s, 0
        self.age += 1
        self.centres = (self.centres + [centre])[-history:]
        # a track is a person when most of its observations say so (single frames are noisy)
        self.person_votes += 1.0 if detection.label == "person" else -1.0
        label = "person" if self.person_votes > 0 else detection.label if detection.label != "person" else "object"
        return TrackedObject(self.track_id, detection.box, label, detection.score, self.velocity,
                             list(self.centres), self.age)


class ObjectStage:
    """Detector + tracker over a clip. ``run`` prepares the detector on the clip's own frames."""

    def __init__(self, detector: Detector | None = None, tracker: Tracker | None = None) -> None:
        self.detector = detector or BackgroundHOGDetector()
        self.tracker = tracker or Tracker()

    def run(self, frames: Iterable[Frame], *, prepare: bool = True) -> list[FrameObjects]:
        frames = list(frames)
        if prepare:
            self.detector.prepare([frame.image for frame in frames])
            self.tracker.reset()
        result = []
        for frame in frames:
            detections = self.detector.detect(frame.image)
            height, width = frame.image.shape[:2]
            result.append(FrameObjects(frame.index, frame.time_s, width, height,
                                       self.tracker.update(frame.time_s, detections)))
        return result


def _centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def _size(box: Box) -> tuple[int, int]:
    return (box[2] - box[0], box[3] - box[1])


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _intersection(a: Box, b: Box) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _iou(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _overlap_of_smaller(a: Box, b: Box) -> float:
    smaller = min(_area(a), _area(b))
    return _intersection(a, b) / smaller if smaller > 0 else 0.0


def _merge_overlapping(detections: list[Detection]) -> list[Detection]:
    """A blob mostly inside another is part of it (a silhouette split by a pole or a shadow)."""
    merged = list(detections)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i].box, merged[j].box
                if _overlap_of_smaller(a, b) > 0.5:
                    box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    best = merged[i] if merged[i].score >= merged[j].score else merged[j]
                    merged[i] = Detection(box, best.label, best.score)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def _crop_padded(image: np.ndarray, box: Box) -> np.ndarray:
    """Crop with edge replication where the box leaves the frame."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    pad = max(0, -x1, -y1, x2 - width, y2 - height)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2), mode="edge")
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    return image[y1:y2, x1:x2]


def crop(image: np.ndarray, box: Box, *, expand: float = 0.1, square: bool = False) -> np.ndarray:
    """The box grown by ``expand`` on each side (optionally squared), edge-padded at borders."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if square:
        side = max(w, h)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x1, x2, y1, y2 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
        w = h = side
    grown = (int(x1 - w * expand), int(y1 - h * expand), int(x2 + w * expand), int(y2 + h * expand))
    return _crop_padded(image, grown)
