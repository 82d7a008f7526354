"""Attribute streams of the proposer, in the style of Reiss and Hoshen ("Attribute-based
representations for accurate and interpretable video anomaly detection"): each object is
described by interpretable attributes, each attribute is compared with the scene's normal
footage, and a frame is as unusual as its most unusual object.

- ``speed``: the object's mean optical-flow magnitude (pixels per second) over its box, as a
  multiple of the median of the normal objects of its class (of all normal objects for a class
  the normal footage does not show): "3.1x the usual speed of a person here".
- ``class``: how rare the object's class is among the normal footage's objects (the negative log
  of its smoothed frequency): "a car where none was seen". Classes outside
  :data:`~sleuth.tools.perception.nanodet.SCENE_CLASSES` count as unnamed objects.

Reiss and Hoshen fit a Gaussian mixture to the flow binned by direction; on Ped2's normal
footage, where people walk every way, the direction bins mostly add noise (object speed alone
ranks test frames far better, see docs/benchmarks.md), so the stream keeps the speed and the
direction stays a caption fact.

Each stream's frame score (the maximum over the frame's objects, 0 without objects) becomes a
z-score with the median and spread of the held-out normal frames. Every object keeps its
per-stream values, so an event can say why it was flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sleuth.tools.perception.nanodet import SCENE_CLASSES

STREAMS = ("speed", "class")
# The smallest spread a stream's z-score divides by: a quarter of the normal speed, one nat of rarity
# (a class e times rarer), so that a scene whose normal objects are all alike does not blow up z-scores.
MIN_SCALE = {"speed": 0.25, "class": 1.0}


@dataclass
class ObjectTable:
    """Every object of a set of frames as rows: frame position, track id, box, label, speed."""

    position: np.ndarray  # [N] index of the frame in the clip
    track_id: np.ndarray  # [N]
    boxes: np.ndarray  # [N, 4]
    labels: list[str]
    speed: np.ndarray  # [N] mean optical-flow magnitude in the box, pixels per second

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def from_frames(frames: Sequence[Any], positions: Sequence[int] | None = None) -> ObjectTable:
        """From :class:`~sleuth.tools.objects.FrameObjects`; ``positions`` picks frames (default all).
        Rows keep the frame's position in ``frames``."""
        rows: list[tuple] = []
        for position in range(len(frames)) if positions is None else positions:
            for obj in frames[position].objects:
                label = obj.label if obj.label in SCENE_CLASSES else "object"
                rows.append((position, obj.track_id, obj.box, label, float(sum(obj.motion))))
        if not rows:
            return ObjectTable(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4), int), [], np.zeros(0))
        position, track, box, label, speed = zip(*rows, strict=True)
        return ObjectTable(np.asarray(position), np.asarray(track), np.asarray(box, int), list(label),
                           np.asarray(speed, float))


class AttributeModel:
    """What the scene's normal objects look like (speeds, classes) and each stream's normal range."""

    def __init__(self) -> None:
        self.normal_speed = 0.0  # median speed of the normal objects, pixels per second
        self.class_speed: dict[str, float] = {}  # the same per class
        self.class_counts: dict[str, float] = {}
        self.stats: dict[str, dict[str, float]] = {}

    @property
    def fitted(self) -> bool:
        return bool(self.class_counts)

    def fit(self, table: ObjectTable) -> None:
        if len(table) < 10:
            raise ValueError("too few objects in the normal footage for the attribute streams (fewer than 10)")
        self.normal_speed = max(float(np.median(table.speed)), 1e-3)
        counts: dict[str, float] = {}
        for label in table.labels:
            counts[label] = counts.get(label, 0.0) + 1.0
        self.class_counts = counts
        labels = np.asarray(table.labels)
        self.class_speed = {label: max(float(np.median(table.speed[labels == label])), 1e-3)
                            for label, count in counts.items() if count >= 10}

    def usual_speed(self, label: str) -> float:
        """The normal median speed of ``label``'s objects (of all objects for a class seen fewer than 10 times)."""
        return self.class_speed.get(label, self.normal_speed)

    def rarity(self, label: str) -> float:
        total = sum(self.class_counts.values())
        return float(-np.log((self.class_counts.get(label, 0.0) + 0.5) / (total + 0.5 * (len(self.class_counts) + 1))))

    def object_scores(self, table: ObjectTable) -> dict[str, np.ndarray]:
        """Each stream's raw value per object (higher = more unusual): speed as a multiple of its
        class's normal median, class rarity in nats."""
        if not self.fitted:
            raise ValueError("the attribute model is not fitted")
        return {"speed": table.speed / np.array([self.usual_speed(label) for label in table.labels]),
                "class": np.array([self.rarity(label) for label in table.labels])}

    def frame_scores(self, table: ObjectTable, frames: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per stream: the raw value of each frame (the maximum over its objects, 0 without any) and of
        each object."""
        per_object = self.object_scores(table)
        per_frame = {}
        for stream, values in per_object.items():
            scores = np.zeros(frames)
            if len(values):
                np.maximum.at(scores, table.position, values)
            per_frame[stream] = scores
        return per_frame, per_object

    def calibrate(self, held_out: Sequence[tuple[ObjectTable, int]]) -> None:
        """Each stream's normal range from held-out normal footage: (objects, frame count) per run."""
        pooled: dict[str, list[np.ndarray]] = {stream: [] for stream in STREAMS}
        for table, frames in held_out:
            per_frame, _ = self.frame_scores(table, frames)
            for stream in STREAMS:
                pooled[stream].append(per_frame[stream])
        for stream in STREAMS:
            values = np.concatenate(pooled[stream]) if pooled[stream] else np.array([0.0, 1.0])
            spread = float(np.percentile(values, 75) - np.percentile(values, 25)) / 1.349
            self.stats[stream] = {"center": float(np.median(values)), "scale": max(spread, MIN_SCALE[stream])}

    def z(self, stream: str, values: np.ndarray) -> np.ndarray:
        stat = self.stats[stream]
        return (np.asarray(values, float) - stat["center"]) / stat["scale"]

    def state(self) -> dict[str, Any]:
        return {"normal_speed": self.normal_speed, "class_speed": dict(self.class_speed),
                "class_counts": dict(self.class_counts), "stats": self.stats}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AttributeModel:
        model = cls()
        model.normal_speed, model.class_counts, model.stats = (state["normal_speed"], dict(state["class_counts"]),
                                                               state["stats"])
        model.class_speed = dict(state.get("class_speed", {}))
        return model
