"""The proposer (HyCoVAD's first stage): learn a scene from normal footage, score new footage.

``Proposer.fit`` runs the object stage (detector, tracker, optical flow) once over each normal
clip. From that one pass it

- fits the attribute streams of :mod:`.attributes` (object speed and class against the scene's
  normal objects, after Reiss and Hoshen), and
- cuts object-centred and whole-frame temporal crops and trajectories and trains the
  self-supervised multi-task network of :mod:`.model` (the ``ssl`` stream).

Part of each clip (``val_fraction``, in evenly spaced runs) is held out: its scores give each
task's and each stream's normal range (median and spread, for z-scores) and the alarm threshold
(a percentile of the held-out frame scores).

``Proposer.score`` returns, per frame, the weighted sum of the streams' z-scores (each stream's
most unusual object, or the whole frame), smoothed over time; per stream, the unsmoothed
z-scores; and per object its class, speed and each task's and stream's z-score.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from sleuth.errors import SleuthError
from sleuth.tools.frames import Frame
from sleuth.tools.objects import ObjectStage
from sleuth.tools.proposer import data
from sleuth.tools.proposer.attributes import AttributeModel, ObjectTable
from sleuth.tools.proposer.model import (
    CONTEXT,
    MIDDLE,
    NORMAL_CLIP,
    PERMUTATIONS,
    SKIPPED_CLIP,
    GradNorm,
    ProposerNet,
    jigsaw,
    shuffled_orders,
)
from sleuth.tools.smoothing import anomalous_spans

TASKS = ("middle", "irregularity", "jigsaw", "trajectory")
STREAMS = ("ssl", "speed", "class")
JIGSAW_PROBES = (0, 7, 16, 23)  # permutations tried at scoring time (identity first)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ProposerError(SleuthError):
    """The proposer cannot be trained or used as asked."""


class ProposerConfig(BaseModel):
    """Training and scoring knobs. Defaults are what the Ped2 benchmark uses."""

    width: int = Field(default=16, description="Encoder width (channels of the middle layers).")
    memory_slots: int = Field(default=100, description="Prototypes in the middle-frame memory.")
    epochs: int = Field(default=6, ge=1)
    batch_size: int = Field(default=64, ge=4)
    samples_per_epoch: int = Field(default=12000, ge=64, description="Patch stacks drawn per epoch.")
    lr: float = 1e-3
    gradnorm_every: int = Field(default=5, ge=1, description="Steps between GradNorm weight updates.")
    max_train_minutes: float | None = Field(default=None, description="Stop training after this long.")
    val_fraction: float = Field(default=0.15, ge=0.05, le=0.5,
                                description="Share of each clip held out (4 evenly spaced runs) for calibration.")
    task_weights: dict[str, float] = Field(
        default_factory=lambda: {"middle": 1.0, "irregularity": 1.0, "jigsaw": 1.0, "trajectory": 1.0},
        description="Weight of each task's z-score in an object's anomaly score.",
    )
    whole_frame_weight: float = Field(default=1.0, ge=0, description="Weight of the whole-frame score.")
    stream_weights: dict[str, float] = Field(
        default_factory=lambda: {"ssl": 1.0, "speed": 1.0, "class": 1.0},
        description="Weight of each stream's z-score in a frame's score: 'ssl' (the self-supervised tasks), "
        "'speed' (object speed against the scene's normal), 'class' (how rare the object's class is).")
    crop: Literal["fixed", "object"] = Field(
        default="fixed", description="'fixed': same-size crops for every object (motion keeps its scale); "
        "'object': one crop per box, scaled to the box.")
    crop_px: int | None = Field(default=None, description="Side of fixed crops (None: 1.5x the median "
                                "object height of the calibration footage).")
    smooth_frames: float = Field(default=5.0, ge=0, description="Gaussian sigma (frames) of frame scores.")
    threshold_percentile: float = Field(default=99.0, gt=50, lt=100)
    device: str | None = Field(default=None, description="'cpu', 'cuda' (None: a GPU when present).")
    seed: int = 0


def _share(share: float) -> str:
    """'0.4%', or 'under 0.1%' for a share that would round to a misleading '0.0%'."""
    return "under 0.1%" if share < 0.0005 else f"{share:.1%}"


@dataclass
class ObjectScore:
    track_id: int
    box: tuple[int, int, int, int]
    score: float
    tasks: dict[str, float]  # z-score per SSL task and per attribute stream ("speed", "class")
    label: str = "object"
    speed_ratio: float | None = None  # the object's speed as a multiple of the scene's normal median
    class_share: float | None = None  # share of the normal footage's objects with this class

    def reason(self, *, level: float = 2.0) -> str | None:
        """Why this object is unusual, from the streams whose z-score reaches ``level``; None when none does."""
        noun = "an unnamed moving object" if self.label == "object" else \
            f"{'an' if self.label[0] in 'aeiou' else 'a'} {self.label}"
        parts = []
        if self.tasks.get("class", 0.0) >= level and self.class_share is not None:
            parts.append("a kind of object the scene's normal footage does not show" if self.class_share == 0 else
                         f"rare in the scene's normal footage ({_share(self.class_share)} of its objects)")
        if self.tasks.get("speed", 0.0) >= level and self.speed_ratio is not None:
            usual = "an object's" if self.label == "object" or self.class_share == 0 else f"a {self.label}'s"
            parts.append(f"moving at {self.speed_ratio:.1f}x {usual} usual speed in this scene")
        if not parts and self.tasks.get("ssl", 0.0) >= level:
            parts.append("its appearance and motion over nine frames are unlike the normal footage")
        return f"{noun[0].upper()}{noun[1:]}: {'; '.join(parts)}." if parts else None


@dataclass
class ProposalScores:
    """Scores of one clip. ``frame_scores`` are smoothed; ``raw_scores`` are not."""

    frame_indices: list[int]
    times_s: list[float]
    frame_scores: np.ndarray
    raw_scores: np.ndarray
    objects: list[list[ObjectScore]]
    threshold: float | None = None
    calibration_quantiles: list[float] | None = None  # percentiles 0..100 of the held-out frame scores
    streams: dict[str, np.ndarray] = field(default_factory=dict)  # unsmoothed z-score per stream and frame
    tracked: list[Any] | None = None  # the object stage's FrameObjects per frame (captions reuse them)

    def reasons(self) -> list[str | None]:
        """Per frame, why its most unusual object is unusual (None where no stream says so)."""
        return [max(objects, key=lambda o: o.score).reason() if objects else None for objects in self.objects]

    def calibration_percentile(self, percentile: float) -> float | None:
        """The held-out (normal) frame score at ``percentile`` (None for checkpoints without them)."""
        if not self.calibration_quantiles:
            return None
        return float(np.interp(percentile, np.linspace(0, 100, len(self.calibration_quantiles)),
                               self.calibration_quantiles))

    def unit_scores(self) -> np.ndarray:
        """Frame scores mapped to [0, 1]: 0.5 at the calibrated threshold, about 0.1 at the median
        of the normal (held-out) scores, so scores of different scenes compare and fuse."""
        z = np.asarray(self.frame_scores, dtype=np.float64)
        threshold = float(self.threshold if self.threshold is not None else np.percentile(z, 95))
        median = self.calibration_percentile(50.0)
        median = float(np.median(z)) if median is None else median
        scale = max((threshold - median) / 2.2, 1e-3)
        return 1.0 / (1.0 + np.exp(-(z - threshold) / scale))

    def sliced(self, start: int, stop: int) -> ProposalScores:
        """The scores of positions ``start`` to ``stop`` (exclusive) of this clip."""
        return ProposalScores(self.frame_indices[start:stop], self.times_s[start:stop],
                              self.frame_scores[start:stop], self.raw_scores[start:stop], self.objects[start:stop],
                              self.threshold, self.calibration_quantiles,
                              {name: values[start:stop] for name, values in self.streams.items()},
                              self.tracked[start:stop] if self.tracked is not None else None)

    def suspects(self, threshold: float | None = None) -> list[int]:
        """Frame indices at or above the threshold (the calibrated one by default)."""
        level = self.threshold if threshold is None else threshold
        if level is None:
            raise ProposerError("no threshold", hint="pass one, or use a proposer trained with calibration")
        return [index for index, score in zip(self.frame_indices, self.frame_scores, strict=True) if score >= level]


@dataclass
class FitReport:
    frames: int
    objects: int
    trajectories: int
    epochs: int
    seconds: float
    losses: list[dict[str, float]] = field(default_factory=list)
    task_weights: list[float] = field(default_factory=list)
    threshold: float = 0.0


@dataclass
class _Clip:
    frames: Sequence[Frame]
    grey: np.ndarray
    objects: list[Any]


class Proposer:
    """A trained (or untrained) proposer for one scene."""

    def __init__(self, config: ProposerConfig | None = None, *, scene: str | None = None) -> None:
        self.config = config or ProposerConfig()
        self.scene = scene
        self.device = torch.device(self.config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(self.config.seed)
        self.net = ProposerNet(self.config.width, self.config.memory_slots).to(self.device)
        self.stats: dict[str, dict[str, float]] = {}  # "<kind>/<task>" and "stream/ssl" -> {"center", "scale"}
        self.attributes: AttributeModel | None = None
        self.threshold: float | None = None
        self.meta: dict[str, Any] = {}

    @property
    def _crop_px(self) -> int | None:
        return self.config.crop_px if self.config.crop == "fixed" else None

    @property
    def trained(self) -> bool:
        return bool(self.stats)

    # -- training ----------------------------------------------------------------------------

    def fit(self, clips: Sequence[Sequence[Frame]], *, progress: Progress | None = None) -> FitReport:
        """Train on normal clips (each a consecutive run of frames of one camera)."""
        clips = [list(clip) for clip in clips if len(clip) > 0]
        if sum(len(clip) for clip in clips) < 20:
            raise ProposerError("too little normal footage to train on (fewer than 20 frames)",
                                hint="give at least a few seconds of normal activity of the scene")
        started = time.perf_counter()
        _set_threads()
        prepared = [self._prepare(clip, progress) for clip in clips]
        if self.config.crop == "fixed" and self.config.crop_px is None:
            self.config.crop_px = data.typical_crop([clip.objects for clip in prepared])
        train_parts, val_parts, train_tracks, train_tables = [], [], [], []
        for clip in prepared:
            train_pos, val_pos = held_out_split(len(clip.frames), self.config.val_fraction)
            train_tables.append(ObjectTable.from_frames(clip.objects, train_pos))
            train_parts.append(data.object_patches(clip.grey, clip.objects, train_pos, self._crop_px))
            train_tracks.append(data.trajectories(clip.objects, train_pos))
            if len(val_pos):
                val_parts.append((clip, data.object_patches(clip.grey, clip.objects, val_pos, self._crop_px),
                                  data.trajectories(clip.objects, val_pos)))
        self.attributes = AttributeModel()
        try:
            self.attributes.fit(ObjectTable(*(np.concatenate([getattr(t, name) for t in train_tables])
                                              for name in ("position", "track_id", "boxes")),
                                            [label for t in train_tables for label in t.labels],
                                            np.concatenate([t.speed for t in train_tables])))
        except ValueError as exc:
            raise ProposerError(f"cannot learn the scene's objects: {exc}",
                                hint="give normal footage in which people or vehicles move") from None
        patches = data.Patches.concat(train_parts)
        tracks = data.Trajectories.concat(train_tracks)
        report = self._train(patches, tracks, progress)
        self._calibrate(val_parts)
        report.seconds = time.perf_counter() - started
        report.frames = sum(len(clip.frames) for clip in prepared)
        report.threshold = float(self.threshold or 0.0)
        self.meta.update({"trained_frames": report.frames, "train_seconds": round(report.seconds, 1),
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return report

    def _prepare(self, frames: Sequence[Frame], progress: Progress | None) -> _Clip:
        if progress:
            progress("objects", 0, len(frames))
        objects = ObjectStage().run(frames)
        if progress:
            progress("objects", len(frames), len(frames))
        return _Clip(frames, data.grey_stack(frames), objects)

    def _train(self, patches: data.Patches, tracks: data.Trajectories, progress: Progress | None) -> FitReport:
        config = self.config
        generator = torch.Generator().manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        net = self.net.train()
        head_params = [p for name, p in net.named_parameters() if not name.startswith("trajectory")]
        optimizer = torch.optim.Adam(head_params, lr=config.lr)
        trajectory_optimizer = torch.optim.Adam(net.trajectory.parameters(), lr=config.lr)
        gradnorm = GradNorm(3, device=self.device)
        per_epoch = min(len(patches), config.samples_per_epoch)
        steps = math.ceil(per_epoch / config.batch_size)
        report = FitReport(0, int((patches.kind == data.OBJECT).sum()), int(tracks.mask.sum()), 0, 0.0)
        deadline = time.perf_counter() + 60 * config.max_train_minutes if config.max_train_minutes else None
        step_total = 0
        for epoch in range(config.epochs):
            order = rng.permutation(len(patches))[:per_epoch]
            sums = dict.fromkeys(TASKS, 0.0)
            for step in range(steps):
                batch = torch.from_numpy(patches.stacks[order[step * config.batch_size:(step + 1) * config.batch_size]])
                losses = self._image_losses(batch.to(self.device).float() / 255.0, generator)
                total = (gradnorm.current() * losses).sum()
                balance = step_total % config.gradnorm_every == 0
                optimizer.zero_grad()
                total.backward(retain_graph=balance)
                if balance:  # after backward: GradNorm's own pass frees the graph
                    gradnorm.step(losses, net.encoder.last.weight)
                optimizer.step()
                if len(tracks):
                    picked = rng.integers(0, len(tracks), size=min(32, len(tracks)))
                    trajectory_loss = self._trajectory_loss(tracks, picked)
                    trajectory_optimizer.zero_grad()
                    trajectory_loss.backward()
                    trajectory_optimizer.step()
                    sums["trajectory"] += float(trajectory_loss.detach())
                for name, value in zip(TASKS[:3], losses.detach().cpu().tolist(), strict=True):
                    sums[name] += value
                step_total += 1
                if progress:
                    progress("train", epoch * steps + step + 1, config.epochs * steps)
                if deadline and time.perf_counter() > deadline:
                    break
            report.losses.append({name: round(value / max(1, step + 1), 5) for name, value in sums.items()})
            report.epochs = epoch + 1
            if deadline and time.perf_counter() > deadline:
                break
        report.task_weights = [round(float(w), 3) for w in gradnorm.current()]
        net.eval()
        return report

    def _per_frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, K, 64, 64] -> the shared encoder's features of each frame, [B, K, C, 8, 8]."""
        features = self.net.encode(frames)
        return features.reshape(frames.shape[0], frames.shape[1], self.net.encoder.channels, *features.shape[-2:])

    @staticmethod
    def _middle_target(x: torch.Tensor) -> torch.Tensor:
        """The middle frame at the 32x32 resolution the middle-frame head predicts."""
        return F.avg_pool2d(x[:, MIDDLE:MIDDLE + 1], 2)[:, 0]

    def _image_losses(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Losses of the three image tasks on a batch of [B, 9, 64, 64] stacks in [0, 1]."""
        net = self.net
        b = x.shape[0]
        permutation = torch.randint(0, len(PERMUTATIONS), (b,), generator=generator).to(self.device)
        # the 9 frames plus the puzzle
        per_frame = self._per_frame_features(torch.cat([x, jigsaw(x[:, MIDDLE], permutation)[:, None]], dim=1))

        predicted, entropy = net.middle(per_frame[:, list(CONTEXT)].flatten(1, 2))
        middle_loss = F.mse_loss(predicted[:, 0], self._middle_target(x)) + 0.0002 * entropy

        kind = torch.randint(0, 3, (b,), generator=generator).to(self.device)
        normal = per_frame[:, list(NORMAL_CLIP)]
        skipped = per_frame[:, list(SKIPPED_CLIP)]
        orders = shuffled_orders(b, generator).to(self.device)
        shuffled = normal[torch.arange(b, device=self.device)[:, None], orders]
        pick = kind.view(b, 1, 1, 1, 1)
        clip = torch.where(pick == 0, normal, torch.where(pick == 1, skipped, shuffled))
        irregularity_loss = F.cross_entropy(net.irregularity(clip.flatten(1, 2)), kind)

        jigsaw_loss = F.cross_entropy(net.jigsaw(per_frame[:, 9]), permutation)
        return torch.stack([middle_loss, irregularity_loss, jigsaw_loss])

    def _trajectory_errors(self, tracks: data.Trajectories, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared error of the predicted next displacement [F, N] (x10 units) and the mask of real objects."""
        positions = torch.from_numpy(tracks.tracks[rows]).to(self.device)
        mask = torch.from_numpy(tracks.mask[rows]).to(self.device)
        predicted = self.net.trajectory(positions[:, :, :-1], mask)
        target = (positions[:, :, -1] - positions[:, :, -2]) * 10
        return ((predicted - target) ** 2).sum(-1), mask

    def _trajectory_loss(self, tracks: data.Trajectories, rows: np.ndarray) -> torch.Tensor:
        error, mask = self._trajectory_errors(tracks, rows)
        return (error * mask).sum() / mask.sum().clamp_min(1)

    # -- calibration and scoring ---------------------------------------------------------------

    def _calibrate(self, held_out: list[tuple[_Clip, data.Patches, data.Trajectories]]) -> None:
        """Per-task normal ranges and the alarm threshold, from the held-out runs of each clip."""
        raw = [self._task_scores(patches, tracks) for _, patches, tracks in held_out]
        if not raw:
            raise ProposerError("no held-out frames to calibrate on", hint="give longer normal clips")
        kinds = np.concatenate([patches.kind for _, patches, _ in held_out])
        for task in TASKS:
            values = np.concatenate([r[task] for r in raw])
            for kind_name, kind in (("object", data.OBJECT), ("frame", data.WHOLE_FRAME)):
                chosen = values[(kinds == kind) & np.isfinite(values)]
                if len(chosen) < 2:
                    chosen = np.array([0.0, 1.0])
                center = float(np.median(chosen))
                spread = float(np.percentile(chosen, 75) - np.percentile(chosen, 25)) / 1.349
                self.stats[f"{kind_name}/{task}"] = {"center": center, "scale": max(spread, 1e-6)}
        runs = []  # (SSL frame scores, objects of the run) of each held-out run
        for (clip, patches, _), task_raw in zip(held_out, raw, strict=True):
            held = np.zeros(int(patches.position.max()) + 1, bool)
            held[patches.position] = True
            for first, last in anomalous_spans(held.tolist()):  # smooth within each held-out run
                run = list(range(first, last + 1))
                mask = np.isin(patches.position, run)
                combined, _ = self._combine(patches.select(mask), {k: v[mask] for k, v in task_raw.items()}, run)
                runs.append((combined, ObjectTable.from_frames(clip.objects[first:last + 1])))
        ssl = np.concatenate([combined for combined, _ in runs])
        spread = float(np.percentile(ssl, 75) - np.percentile(ssl, 25)) / 1.349
        self.stats["stream/ssl"] = {"center": float(np.median(ssl)), "scale": max(spread, 1e-3)}
        if self.attributes is not None:
            self.attributes.calibrate([(table, len(combined)) for combined, table in runs])
        frame_scores = [_gaussian_smooth(self._streams(combined, table)[0], self.config.smooth_frames)
                        for combined, table in runs]
        pooled = np.concatenate(frame_scores)
        self.threshold = float(np.percentile(pooled, self.config.threshold_percentile))
        self.meta["calibration_quantiles"] = [float(v) for v in np.percentile(pooled, np.arange(101))]

    @torch.no_grad()
    def _task_scores(self, patches: data.Patches, tracks: data.Trajectories, batch: int = 128) -> dict[str, np.ndarray]:
        """Raw anomaly measure per patch stack and task (trajectory: NaN where no track)."""
        net = self.net.eval()
        out: dict[str, list[np.ndarray]] = {task: [] for task in TASKS[:3]}
        probes = torch.tensor(JIGSAW_PROBES, device=self.device)
        for start in range(0, len(patches), batch):
            x = torch.from_numpy(patches.stacks[start:start + batch]).to(self.device).float() / 255.0
            b = x.shape[0]
            puzzles = jigsaw(x[:, MIDDLE].repeat_interleave(len(probes), 0), probes.repeat(b))
            per_frame = self._per_frame_features(x)
            predicted, _ = net.middle(per_frame[:, list(CONTEXT)].flatten(1, 2))
            error = (predicted[:, 0] - self._middle_target(x)) ** 2
            out["middle"].append(error.flatten(1).mean(1).cpu().numpy())
            logits = net.irregularity(per_frame[:, list(NORMAL_CLIP)].flatten(1, 2))
            out["irregularity"].append((-F.log_softmax(logits, dim=1)[:, 0]).cpu().numpy())
            jig_logits = net.jigsaw(net.encode(puzzles[:, None]))
            nll = -F.log_softmax(jig_logits, dim=1).gather(1, probes.repeat(b)[:, None])[:, 0]
            out["jigsaw"].append(nll.reshape(b, len(probes)).mean(1).cpu().numpy())
        scores = {task: np.concatenate(values) if values else np.zeros(0) for task, values in out.items()}
        scores["trajectory"] = self._trajectory_scores(patches, tracks)
        return scores

    @torch.no_grad()
    def _trajectory_scores(self, patches: data.Patches, tracks: data.Trajectories) -> np.ndarray:
        result = np.full(len(patches), np.nan, np.float32)
        if not len(tracks):
            return result
        lookup = {(int(p), int(t)): i for i, (p, t) in enumerate(zip(patches.position, patches.track_id, strict=True))}
        for start in range(0, len(tracks), 256):
            rows = np.arange(start, min(len(tracks), start + 256))
            squared, _ = self._trajectory_errors(tracks, rows)
            error = squared.sqrt().cpu().numpy()
            for row_offset, row in enumerate(rows):
                for slot in np.flatnonzero(tracks.mask[row]):
                    index = lookup.get((int(tracks.position[row]), int(tracks.track_id[row, slot])))
                    if index is not None:
                        result[index] = error[row_offset, slot]
        return result

    def _z(self, kind: str, task: str, values: np.ndarray) -> np.ndarray:
        stat = self.stats[f"{kind}/{task}"]
        return (values - stat["center"]) / stat["scale"]

    def _combine(self, patches: data.Patches, raw: dict[str, np.ndarray],
                 positions: Sequence[int]) -> tuple[np.ndarray, list[list[ObjectScore]]]:
        """Unsmoothed frame scores (max over objects and the weighted whole frame) and per-object details."""
        weights = self.config.task_weights
        is_object = patches.kind == data.OBJECT
        z = {}
        for task in TASKS:
            z[task] = np.where(is_object, self._z("object", task, raw[task]), self._z("frame", task, raw[task]))
        total = np.zeros(len(patches))
        weight_sum = np.zeros(len(patches))
        for task in TASKS:
            valid = np.isfinite(z[task])
            total[valid] += weights.get(task, 0.0) * z[task][valid]
            weight_sum[valid] += weights.get(task, 0.0)
        combined = total / np.maximum(weight_sum, 1e-9)
        combined[~is_object] *= self.config.whole_frame_weight
        index_of = {position: i for i, position in enumerate(positions)}
        frame_scores = np.full(len(positions), -np.inf)
        objects: list[list[ObjectScore]] = [[] for _ in positions]
        for i in range(len(patches)):
            slot = index_of[int(patches.position[i])]
            frame_scores[slot] = max(frame_scores[slot], combined[i])
            if is_object[i]:
                objects[slot].append(ObjectScore(int(patches.track_id[i]), tuple(int(v) for v in patches.boxes[i]),
                                                 float(combined[i]),
                                                 {task: round(float(z[task][i]), 3) for task in TASKS
                                                  if np.isfinite(z[task][i])}))
        frame_scores[~np.isfinite(frame_scores)] = 0.0
        return frame_scores, objects

    def score(self, frames: Sequence[Frame], *, progress: Progress | None = None) -> ProposalScores:
        """Per-frame and per-object anomaly scores of one clip (consecutive frames of one camera)."""
        if not self.trained:
            raise ProposerError("this proposer is not trained", hint="run `sleuth calibrate proposer` for the scene")
        frames = list(frames)
        if not frames:
            raise ProposerError("no frames to score", hint="check the video and the frame range")
        _set_threads()
        return self.score_objects(frames, self._prepare(frames, progress).objects)

    def score_objects(self, frames: Sequence[Frame], tracked: Sequence[Any]) -> ProposalScores:
        """:meth:`score` for frames whose object pass (the object stage's ``FrameObjects``, one per
        frame) was already run, as a stream scorer does once per frame (:mod:`.stream`)."""
        frames, tracked = list(frames), list(tracked)
        ssl, objects = self.ssl_scores(data.grey_stack(frames), tracked, range(len(frames)))
        return self.scores_from_ssl(frames, tracked, ssl, objects)

    def ssl_scores(self, grey: np.ndarray, tracked: Sequence[Any],
                   positions: Sequence[int]) -> tuple[np.ndarray, list[list[ObjectScore]]]:
        """The self-supervised tasks' unsmoothed frame scores and object scores at ``positions`` of a
        clip (``grey``: its frames as luma). A position's result depends only on the frames 4 either
        side of it, so a stream scorer computes each frame once when its neighbours are there."""
        if not self.trained:
            raise ProposerError("this proposer is not trained", hint="run `sleuth calibrate proposer` for the scene")
        positions = list(positions)
        if not positions:
            return np.zeros(0), []
        patches = data.object_patches(grey, tracked, positions, self._crop_px)
        raw = self._task_scores(patches, data.trajectories(tracked, positions))
        return self._combine(patches, raw, positions)

    def scores_from_ssl(self, frames: Sequence[Frame], tracked: Sequence[Any], ssl: np.ndarray,
                        objects: list[list[ObjectScore]]) -> ProposalScores:
        """Add the attribute streams (speed, class) to the self-supervised scores of every frame of a
        clip, weigh, smooth. ``objects`` are completed in place (class, speed, stream z-scores)."""
        unsmoothed, streams = self._streams(ssl, ObjectTable.from_frames(tracked), objects, tracked)
        smoothed = _gaussian_smooth(unsmoothed, self.config.smooth_frames)
        return ProposalScores([f.index for f in frames], [f.time_s for f in frames], smoothed,
                              unsmoothed.astype(np.float64), objects, self.threshold,
                              self.meta.get("calibration_quantiles"), streams, list(tracked))

    def _streams(self, ssl: np.ndarray, table: ObjectTable, objects: list[list[ObjectScore]] | None = None,
                 tracked: Sequence[Any] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The frame scores (weighted sum of the streams' z-scores) and each stream's z-scores; with
        ``objects``, each object also gets its class, speed and stream z-scores. A checkpoint from
        before the attribute streams scores with the SSL tasks alone, as it did."""
        if self.attributes is None or "stream/ssl" not in self.stats:
            return ssl, {"ssl": ssl}
        weights = self.config.stream_weights
        stat = self.stats["stream/ssl"]
        streams = {"ssl": (ssl - stat["center"]) / stat["scale"]}
        per_frame, per_object = self.attributes.frame_scores(table, len(ssl))
        for stream, values in per_frame.items():
            streams[stream] = self.attributes.z(stream, values)
        total = sum(weights.get(stream, 0.0) * values for stream, values in streams.items())
        if objects is not None and tracked is not None:
            self._describe_objects(objects, tracked, table, per_object)
        return np.asarray(total, np.float64), streams

    def _describe_objects(self, objects: list[list[ObjectScore]], tracked: Sequence[Any], table: ObjectTable,
                          per_object: dict[str, np.ndarray]) -> None:
        """Give each scored object its class, speed ratio and attribute z-scores, and add those to its score."""
        assert self.attributes is not None
        weights = self.config.stream_weights
        row_of = {(int(p), int(t)): i for i, (p, t) in enumerate(zip(table.position, table.track_id, strict=True))}
        stat = self.stats["stream/ssl"]
        normal_total = sum(self.attributes.class_counts.values()) or 1.0
        for position, scored in enumerate(objects):
            labels = {obj.track_id: obj.label for obj in tracked[position].objects}
            for obj in scored:
                row = row_of.get((position, obj.track_id))
                obj.label = table.labels[row] if row is not None else labels.get(obj.track_id, obj.label)
                ssl_z = (obj.score - stat["center"]) / stat["scale"]
                obj.tasks["ssl"] = round(ssl_z, 3)
                obj.class_share = self.attributes.class_counts.get(obj.label, 0.0) / normal_total
                total = weights.get("ssl", 0.0) * ssl_z
                if row is not None:
                    for stream in ("speed", "class"):
                        z = float(self.attributes.z(stream, per_object[stream][row:row + 1])[0])
                        obj.tasks[stream] = round(z, 3)
                        total += weights.get(stream, 0.0) * z
                    obj.speed_ratio = round(float(per_object["speed"][row]), 2)
                obj.score = float(total)

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        torch.save({"format": 1, "config": self.config.model_dump(), "scene": self.scene,
                    "state": {k: v.cpu() for k, v in self.net.state_dict().items()}, "stats": self.stats,
                    "threshold": self.threshold, "meta": self.meta,
                    "attributes": self.attributes.state() if self.attributes else None}, partial)
        os.replace(partial, path)  # never leave a half-written checkpoint under the real name
        return path

    @classmethod
    def load(cls, path: Path, *, device: str | None = None) -> Proposer:
        path = Path(path)
        if not path.is_file():
            raise ProposerError(f"no proposer checkpoint at {path}", hint="run `sleuth calibrate proposer` first")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=False)
            config = ProposerConfig(**{**saved["config"], "device": device or saved["config"].get("device")})
            proposer = cls(config, scene=saved.get("scene"))
            proposer.net.load_state_dict(saved["state"])
        except ProposerError:
            raise
        except Exception as exc:  # a truncated or foreign file
            raise ProposerError(f"cannot read proposer checkpoint {path}: {type(exc).__name__}",
                                hint="recalibrate the scene with `sleuth calibrate proposer`") from None
        proposer.net.eval()
        proposer.stats, proposer.threshold, proposer.meta = saved["stats"], saved["threshold"], saved.get("meta", {})
        if saved.get("attributes"):
            proposer.attributes = AttributeModel.from_state(saved["attributes"])
        return proposer


def held_out_split(count: int, fraction: float, chunks: int = 4, guard: int = 0) -> tuple[list[int], list[int]]:
    """Clip positions to train on and to hold out: ``fraction`` of the clip as ``chunks`` evenly
    spaced runs (not just the tail), so the normal range and threshold see the whole clip.
    ``guard`` frames either side of a held-out run are used for neither (a crop spans t-4..t+4);
    off by default: on Ped2 a guard of 4 lowered the frame AUC from 86.1 to 73.2 (see docs/benchmarks.md)."""
    held = max(1, int(round(count * fraction)))
    chunks = max(1, min(chunks, held // 10 or 1))
    length = held // chunks
    period = count / chunks
    val = set()
    for k in range(chunks):
        end = int(round((k + 1) * period))  # each chunk ends its period: the last one is the tail
        val.update(range(max(0, end - length), end))
    near = {i + d for i in val for d in range(-guard, guard + 1)}
    return [i for i in range(count) if i not in near], sorted(val)


def _gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(values) < 2:
        return values.astype(np.float64)
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values.astype(np.float64), radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _set_threads() -> None:
    from sleuth.config import cpu_threads

    torch.set_num_threads(cpu_threads())


def report_dict(report: FitReport) -> dict[str, Any]:
    return asdict(report)
