"""The embedded scene detector: NanoDet's named objects plus the moving regions none of them covers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sleuth.tools.perception.boxes import Detection, overlap_of_smaller
from sleuth.tools.perception.motion import MotionRegions
from sleuth.tools.perception.nanodet import NanoDet


class SceneDetector:
    """``detect(image)``: NanoDet's detections, then each moving region that no detection
    overlaps by more than ``covered`` (of the smaller box) as an unnamed ``object``."""

    def __init__(self, detector: NanoDet | None = None, regions: MotionRegions | None = None, *,
                 covered: float = 0.3) -> None:
        self.detector = detector or NanoDet()
        self.regions = regions if regions is not None else MotionRegions()
        self.covered = covered

    def prepare(self, images: Sequence[np.ndarray]) -> None:
        self.regions.prepare(images)

    def detect(self, image: np.ndarray) -> list[Detection]:
        named = self.detector.detect(image)
        unnamed = [region for region in self.regions.detect(image)
                   if all(overlap_of_smaller(region.box, d.box) <= self.covered for d in named)]
        return named + unnamed
