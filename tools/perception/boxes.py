"""Boxes and detections: the geometry every perception stage shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the original frame


@dataclass(frozen=True, slots=True)
class Detection:
    box: Box
    label: str = "object"  # a COCO class name ("person", "bicycle", ...) or "object" for a moving region
    score: float = 1.0  # detector confidence


def centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def size(box: Box) -> tuple[int, int]:
    return (box[2] - box[0], box[3] - box[1])


def area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def intersection(a: Box, b: Box) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def overlap_of_smaller(a: Box, b: Box) -> float:
    smaller = min(area(a), area(b))
    return intersection(a, b) / smaller if smaller > 0 else 0.0


def merge_overlapping(detections: list[Detection]) -> list[Detection]:
    """A blob mostly inside another is part of it (a silhouette split by a pole or a shadow)."""
    merged = list(detections)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i].box, merged[j].box
                if overlap_of_smaller(a, b) > 0.5:
                    box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    best = merged[i] if merged[i].score >= merged[j].score else merged[j]
                    merged[i] = Detection(box, best.label, best.score)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def crop_padded(image: np.ndarray, box: Box) -> np.ndarray:
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
    return crop_padded(image, grown)
