"""Anomaly-focused temporal sampler (Holmes-VAU) and an optional trainable frame scorer.

A VLM can look at a handful of frames, not a whole video. Holmes-VAU picks them from per-frame
anomaly scores: the scores (min-max normalised, plus ``tau`` so that calm stretches keep some
density) become a density over time; N points taken at even steps along its cumulative sum land
densely where the scores are high and sparsely elsewhere. Flat or undefined scores fall back to
uniform sampling.

:class:`FrameScorer` is for users who have per-frame labels for some footage: a small MLP from
frame features (e.g. embeddings) to an anomaly probability whose output feeds the sampler.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sleuth.errors import ModelFileError, SleuthError


class ScorerError(SleuthError):
    """The frame scorer was given data it cannot learn from or predict on."""


class AnomalyFocusedSampler:
    """Pick ``n`` frame positions, dense where the anomaly scores are high.

    ``tau`` sets how much of the budget calm stretches keep: with normalised scores in [0, 1],
    a frame's density is ``score + tau``, so a small ``tau`` concentrates the samples on peaks
    and a large one approaches uniform sampling. Scores whose range (max - min) is below
    ``min_range`` count as flat; raise it when the scores are probabilities and small wiggles
    in an all-normal video should not steer the sampling.
    """

    def __init__(self, n: int = 16, tau: float = 0.1, *, min_range: float = 1e-8) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.n = n
        self.tau = tau
        self.min_range = min_range

    def sample(self, scores: Sequence[float] | np.ndarray) -> list[int]:
        """Sorted, distinct positions into ``scores``: exactly ``min(n, len(scores))`` of them."""
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        count = values.size
        if count <= self.n:
            return list(range(count))
        if self._flat(values):
            return uniform_positions(count, self.n)
        cumulative = np.cumsum(self._density(values))
        cumulative /= cumulative[-1]
        targets = (np.arange(self.n) + 0.5) / self.n
        picks = np.minimum(np.searchsorted(cumulative, targets, side="left"), count - 1)
        return _fill_collisions(picks.tolist(), values, count)

    def density(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """The sampling density per frame (sums to 1), for plots and explanations."""
        values = np.asarray(scores, dtype=np.float64).reshape(-1)
        if values.size == 0:
            return values
        if self._flat(values):
            return np.full(values.size, 1.0 / values.size)
        density = self._density(values)
        return density / density.sum()

    def _flat(self, values: np.ndarray) -> bool:
        return not np.all(np.isfinite(values)) or float(values.max() - values.min()) < self.min_range

    def _density(self, values: np.ndarray) -> np.ndarray:
        return (values - values.min()) / (values.max() - values.min()) + self.tau


def uniform_positions(count: int, n: int) -> list[int]:
    """``min(n, count)`` evenly spread distinct positions in ``range(count)``, ends included."""
    if n >= count:
        return list(range(count))
    return sorted({int(position) for position in np.rint(np.linspace(0, count - 1, n))})


def _fill_collisions(picks: list[int], scores: np.ndarray, count: int) -> list[int]:
    """Several targets can land on one high-density frame; give each extra one the nearest free frame.

    Among equally near free frames the one with the higher score wins, then the earlier one, so a
    peak spreads into its own neighbourhood.
    """
    chosen: set[int] = set()
    for pick in picks:
        if pick not in chosen:
            chosen.add(pick)
            continue
        best: tuple[int, float, int] | None = None
        for distance in range(1, count):
            for candidate in (pick - distance, pick + distance):
                if 0 <= candidate < count and candidate not in chosen:
                    key = (distance, -float(scores[candidate]), candidate)
                    best = key if best is None or key < best else best
            if best is not None:
                break
        assert best is not None  # n < count, so a free frame always exists
        chosen.add(best[2])
    return sorted(chosen)


class FrameScorer:
    """A small MLP from per-frame features to an anomaly probability, trained on frame labels.

    Features are standardised with the training mean and deviation (stored with the weights);
    the loss is binary cross-entropy weighted so that both classes count equally, because
    anomalous frames are usually rare.
    """

    def __init__(self, hidden: int = 64, dropout: float = 0.1) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self._net: Any = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    @staticmethod
    def _build(dim: int, hidden: int, dropout: float) -> Any:
        import torch.nn as nn

        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def fit(self, features: np.ndarray, labels: np.ndarray, *, epochs: int = 100, lr: float = 1e-2,
            batch_size: int = 256, weight_decay: float = 1e-4, seed: int = 0) -> FrameScorer:
        """Train on ``features`` (T, D) and 0/1 ``labels`` (T,); returns ``self``."""
        import torch

        x = _as_features(features)
        y = np.asarray(labels, dtype=np.float32).reshape(-1)
        if y.size != x.shape[0]:
            raise ScorerError(f"{x.shape[0]} feature rows but {y.size} labels",
                              hint="pass one label per frame, in the same order")
        positives = int((y > 0.5).sum())
        if positives == 0 or positives == y.size:
            raise ScorerError("the frame labels hold only one class",
                              hint="label some anomalous and some normal frames")
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self._mean = x.mean(axis=0)
        self._std = x.std(axis=0) + 1e-6
        inputs = torch.from_numpy((x - self._mean) / self._std)
        targets = torch.from_numpy((y > 0.5).astype(np.float32))
        self._net = self._build(x.shape[1], self.hidden, self.dropout)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((y.size - positives) / positives))
        optimiser = torch.optim.AdamW(self._net.parameters(), lr=lr, weight_decay=weight_decay)
        self._net.train()
        for _ in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                optimiser.zero_grad()
                loss = loss_fn(self._net(inputs[batch]).squeeze(-1), targets[batch])
                loss.backward()
                optimiser.step()
        self._net.eval()
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Anomaly probability per row of ``features`` (T, D), float32 in [0, 1]."""
        import torch

        if self._net is None or self._mean is None or self._std is None:
            raise ScorerError("the frame scorer is not trained", hint="call fit() or FrameScorer.load() first")
        x = _as_features(features)
        if x.shape[1] != self._mean.size:
            raise ScorerError(f"features have {x.shape[1]} dimensions, the scorer was trained on {self._mean.size}",
                              hint="use the same feature extractor as for training")
        with torch.no_grad():
            logits = self._net(torch.from_numpy((x - self._mean) / self._std)).squeeze(-1)
        return torch.sigmoid(logits).numpy().astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write weights and standardisation to one file (loadable with ``weights_only``)."""
        import torch

        if self._net is None or self._mean is None or self._std is None:
            raise ScorerError("the frame scorer is not trained", hint="call fit() before save()")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"hidden": self.hidden, "dropout": self.dropout, "state": self._net.state_dict(),
                    "mean": torch.from_numpy(self._mean), "std": torch.from_numpy(self._std)}, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> FrameScorer:
        import torch

        source = Path(path)
        if not source.is_file():
            raise ModelFileError(f"frame scorer not found: {source}", hint="train one with FrameScorer.fit().save()")
        try:
            payload = torch.load(source, map_location="cpu", weights_only=True)
            scorer = cls(hidden=int(payload["hidden"]), dropout=float(payload["dropout"]))
            scorer._mean = payload["mean"].numpy()
            scorer._std = payload["std"].numpy()
            scorer._net = cls._build(scorer._mean.size, scorer.hidden, scorer.dropout)
            scorer._net.load_state_dict(payload["state"])
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, EOFError, pickle.UnpicklingError) as exc:
            raise ModelFileError(f"cannot read frame scorer {source}: {str(exc).splitlines()[0][:160]}",
                                 hint="the file is not a FrameScorer checkpoint or is corrupt; retrain it") from None
        scorer._net.eval()
        return scorer


def _as_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ScorerError(f"features must be a non-empty (frames, dims) array, got shape {x.shape}",
                          hint="stack one feature vector per frame")
    if not np.all(np.isfinite(x)):
        raise ScorerError("features contain NaN or infinite values", hint="check the feature extractor")
    return x
