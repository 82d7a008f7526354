"""Training and scoring inputs of the proposer, cut from a clip and its tracked objects.

For every object in frame t: the same square box (grown by 15%) cut from the grey frames
t-4..t+4 and resized to 64x64 (an object-centred temporal crop). For every frame: the whole
frame at 64x64, the same 9 offsets. For every tracked object with 8 known centres: its last 7
positions and the next one, with the other objects of that frame as neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sleuth.tools.frames import Frame
from sleuth.tools.objects import Box, FrameObjects, crop

OFFSETS = tuple(range(-4, 5))
PATCH = 64
TRACK_STEPS = 7
MAX_NEIGHBOURS = 16

OBJECT, WHOLE_FRAME = 0, 1


@dataclass
class Patches:
    """Temporal patch stacks: ``stacks`` uint8 [N, 9, 64, 64]."""

    stacks: np.ndarray
    kind: np.ndarray  # OBJECT or WHOLE_FRAME, [N]
    position: np.ndarray  # index of the frame in the clip, [N]
    track_id: np.ndarray  # [N], -1 for whole frames
    boxes: np.ndarray  # [N, 4] int, the whole frame for WHOLE_FRAME

    def __len__(self) -> int:
        return len(self.kind)

    def select(self, mask: np.ndarray) -> Patches:
        return Patches(self.stacks[mask], self.kind[mask], self.position[mask], self.track_id[mask], self.boxes[mask])

    @staticmethod
    def concat(parts: Sequence[Patches]) -> Patches:
        return Patches(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                         ("stacks", "kind", "position", "track_id", "boxes")))


@dataclass
class Trajectories:
    """Per frame, up to 16 objects with 8 normalised centres each (7 observed + the next)."""

    tracks: np.ndarray  # float32 [F, N, 8, 2]
    mask: np.ndarray  # bool [F, N]
    position: np.ndarray  # [F] index of the frame in the clip
    track_id: np.ndarray  # [F, N]

    def __len__(self) -> int:
        return len(self.position)

    @staticmethod
    def concat(parts: Sequence[Trajectories]) -> Trajectories:
        width = max([p.tracks.shape[1] for p in parts] + [1])

        def pad(array: np.ndarray, value: float | bool | int) -> np.ndarray:
            extra = width - array.shape[1]
            spec = [(0, 0), (0, extra)] + [(0, 0)] * (array.ndim - 2)
            return np.pad(array, spec, constant_values=value)

        return Trajectories(np.concatenate([pad(p.tracks, 0.0) for p in parts]).astype(np.float32),
                            np.concatenate([pad(p.mask, False) for p in parts]),
                            np.concatenate([p.position for p in parts]),
                            np.concatenate([pad(p.track_id, -1) for p in parts]))


def grey_stack(frames: Sequence[Frame]) -> np.ndarray:
    return np.stack([cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY) for frame in frames])


def object_patches(grey: np.ndarray, objects: Sequence[FrameObjects],
                   positions: Sequence[int] | None = None, crop_px: int | None = None) -> Patches:
    """Temporal crops of every object, and the whole frame, at the given clip positions.

    ``crop_px``: cut fixed-size squares (a box larger than that is covered by several) so that
    motion keeps its scale: an object twice as fast moves twice as far inside its crop. None:
    one square per box, scaled to the box (motion is then relative to the object's size).
    """
    count = len(grey)
    positions = range(count) if positions is None else positions
    small = np.stack([cv2.resize(g, (PATCH, PATCH), interpolation=cv2.INTER_AREA) for g in grey])
    height, width = grey.shape[1:]
    stacks, kinds, where, tracks, boxes = [], [], [], [], []
    for t in positions:
        window = [min(count - 1, max(0, t + offset)) for offset in OFFSETS]
        stacks.append(small[window])
        kinds.append(WHOLE_FRAME)
        where.append(t)
        tracks.append(-1)
        boxes.append((0, 0, width, height))
        for obj in objects[t].objects:
            for box in _tiles(obj.box, crop_px):
                stacks.append(np.stack([_patch(grey[i], box, fixed=crop_px is not None) for i in window]))
                kinds.append(OBJECT)
                where.append(t)
                tracks.append(obj.track_id)
                boxes.append(box)
    return Patches(np.stack(stacks).astype(np.uint8), np.asarray(kinds, np.int8), np.asarray(where, np.int64),
                   np.asarray(tracks, np.int64), np.asarray(boxes, np.int64).reshape(-1, 4))


def _tiles(box: Box, side: int | None) -> list[Box]:
    """The box itself, or fixed ``side``-pixel squares covering it (one per ``side`` of extent)."""
    if side is None:
        return [box]
    x1, y1, x2, y2 = box
    nx, ny = max(1, round((x2 - x1) / side)), max(1, round((y2 - y1) / side))
    tiles = []
    for j in range(ny):
        for i in range(nx):
            cx = x1 + (i + 0.5) * (x2 - x1) / nx
            cy = y1 + (j + 0.5) * (y2 - y1) / ny
            tiles.append((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
    return tiles


def typical_crop(objects: Sequence[Sequence[FrameObjects]]) -> int:
    """A fixed crop side for a scene: 1.5x the median object height, within 24-192 px."""
    heights = [obj.box[3] - obj.box[1] for clip in objects for frame in clip for obj in frame.objects]
    return int(np.clip(1.5 * np.median(heights), 24, 192)) if heights else 64


def _patch(grey: np.ndarray, box: Box, *, fixed: bool = False) -> np.ndarray:
    if fixed:
        return cv2.resize(crop(grey, box, expand=0.0), (PATCH, PATCH), interpolation=cv2.INTER_AREA)
    x1, y1, x2, y2 = box
    if x2 - x1 < 16 or y2 - y1 < 16:  # tiny boxes: cut at least 16 px around the centre
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        half = max(8, (x2 - x1) // 2, (y2 - y1) // 2)
        box = (cx - half, cy - half, cx + half, cy + half)
    return cv2.resize(crop(grey, box, expand=0.15, square=True), (PATCH, PATCH), interpolation=cv2.INTER_AREA)


def trajectories(objects: Sequence[FrameObjects], positions: Sequence[int] | None = None) -> Trajectories:
    """Objects with at least 8 centres in their track, grouped by frame, positions in [0, 1]."""
    positions = range(len(objects)) if positions is None else positions
    rows, masks, where, ids = [], [], [], []
    for t in positions:
        frame = objects[t]
        scale = np.array([frame.width, frame.height], np.float32)
        tracked = [obj for obj in frame.objects if len(obj.history) >= TRACK_STEPS + 1][:MAX_NEIGHBOURS]
        if not tracked:
            continue
        rows.append(np.stack([np.asarray(obj.history[-(TRACK_STEPS + 1):], np.float32) / scale for obj in tracked]))
        masks.append(np.ones(len(tracked), bool))
        where.append(t)
        ids.append(np.asarray([obj.track_id for obj in tracked]))
    if not rows:
        return Trajectories(np.zeros((0, 1, TRACK_STEPS + 1, 2), np.float32), np.zeros((0, 1), bool),
                            np.zeros(0, np.int64), np.zeros((0, 1), np.int64))
    width = max(len(r) for r in rows)
    tracks = np.zeros((len(rows), width, TRACK_STEPS + 1, 2), np.float32)
    mask = np.zeros((len(rows), width), bool)
    track_id = -np.ones((len(rows), width), np.int64)
    for i, (row, m, tid) in enumerate(zip(rows, masks, ids, strict=True)):
        tracks[i, : len(row)], mask[i, : len(m)], track_id[i, : len(tid)] = row, m, tid
    return Trajectories(tracks, mask, np.asarray(where, np.int64), track_id)
