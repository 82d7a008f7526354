"""Motion without weights: moving regions (background subtraction) and dense optical flow.

- :class:`MotionRegions`: OpenCV MOG2 on luma, started from the median of a sample of the clip's
  frames so the first frames are already segmented; morphology joins broken silhouettes and tiny
  blobs are dropped. These are the "something moves here" boxes that the detector may not name
  (a cart, a thrown bag): the scene detector keeps those no detection covers, as ``object``.
  Shadow detection is off: on grey footage (UCSD Ped2) it labels dark clothing as shadow.
- :class:`Flow`: OpenCV's DIS optical flow between consecutive frames, and per box the motion by
  direction (:func:`box_motion`): the mean flow magnitude, in pixels per second of the original
  frame, carried by each of 8 direction bins (the velocity attribute of Reiss and Hoshen).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from sleuth.tools.perception.boxes import Box, Detection, merge_overlapping

DIRECTIONS = 8


def grey(image: np.ndarray, work_width: int) -> tuple[np.ndarray, float]:
    """The frame's luma, downscaled to at most ``work_width`` pixels wide, and the scale used."""
    height, width = image.shape[:2]
    scale = min(1.0, work_width / width)
    luma = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        luma = cv2.resize(luma, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA)
    return luma, scale


class MotionRegions:
    """Foreground blobs of a background model. ``min_area``: smallest blob, as a fraction of the
    frame area; ``work_width``: frames wider than this are segmented downscaled."""

    def __init__(self, *, min_area: float = 0.0006, work_width: int = 480, var_threshold: float = 12.0,
                 learning_rate: float = 0.002) -> None:
        self.min_area = min_area
        self.work_width = work_width
        self.var_threshold = var_threshold
        self.learning_rate = learning_rate
        self._subtractor = None

    def prepare(self, images: Sequence[np.ndarray]) -> None:
        """Start the background model from the per-pixel median of up to 40 frames of the clip."""
        self._subtractor = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=self.var_threshold,
                                                              detectShadows=False)
        if len(images) == 0:
            return
        step = max(1, len(images) // 40)
        sample = np.stack([grey(image, self.work_width)[0] for image in images[::step][:40]])
        background = np.median(sample, axis=0).astype(np.uint8)
        for round_ in range(3):
            self._subtractor.apply(background, learningRate=1.0 if round_ == 0 else 0.5)

    def detect(self, image: np.ndarray) -> list[Detection]:
        if self._subtractor is None:
            self.prepare([image])
        luma, scale = grey(image, self.work_width)
        mask = self._subtractor.apply(luma, learningRate=self.learning_rate)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_pixels = self.min_area * mask.shape[0] * mask.shape[1]
        height, width = image.shape[:2]
        regions = []
        for x, y, w, h, area in stats[1:count]:
            if area >= min_pixels:
                box = (int(x / scale), int(y / scale),
                       min(width, int((x + w) / scale)), min(height, int((y + h) / scale)))
                regions.append(Detection(box, "object", 1.0))
        return merge_overlapping(regions)


class Flow:
    """Dense optical flow between each frame and the one before it (DIS, OpenCV)."""

    def __init__(self, *, work_width: int = 480) -> None:
        self.work_width = work_width
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._previous: tuple[np.ndarray, float] | None = None

    def reset(self) -> None:
        self._previous = None

    def update(self, image: np.ndarray, time_s: float) -> tuple[np.ndarray, float] | None:
        """Flow from the previous frame to this one in original pixels per second ([H', W', 2] at the
        work scale) and that scale; None for the first frame."""
        luma, scale = grey(image, self.work_width)
        previous, self._previous = self._previous, (luma, time_s)
        if previous is None or previous[0].shape != luma.shape or time_s <= previous[1]:
            return None
        flow = self._dis.calc(previous[0], luma, None)
        return flow * (1.0 / (scale * (time_s - previous[1]))), scale


def box_motion(flow: np.ndarray, scale: float, box: Box) -> tuple[float, ...]:
    """Mean flow magnitude (pixels per second) inside ``box`` carried by each of 8 directions, each
    bin 45 degrees wide and centred on its direction (bin 0 rightward, bin 2 up the screen, bin 4
    leftward, bin 6 down, toward the camera); all zero for an empty box."""
    x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
    patch = flow[max(0, y1):max(0, y2), max(0, x1):max(0, x2)].reshape(-1, 2)
    if not len(patch):
        return (0.0,) * DIRECTIONS
    magnitude = np.hypot(patch[:, 0], patch[:, 1])
    angle = np.arctan2(-patch[:, 1], patch[:, 0]) % (2 * np.pi)  # image y points down
    width = 2 * np.pi / DIRECTIONS
    bins = ((angle + width / 2) / width).astype(int) % DIRECTIONS  # each bin centred on its direction
    totals = np.bincount(bins, weights=magnitude, minlength=DIRECTIONS) / len(patch)
    return tuple(round(float(v), 3) for v in totals)
