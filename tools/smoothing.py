"""Temporal smoothing of per-frame scores and decisions (AnomalyRuler's majority smoothing).

``ema_vote`` (default): exponential moving average of the scores, then a centred moving median
(the score analogue of a majority vote) and, for decisions, a windowed majority vote of the
thresholded EMA. ``anomalyruler``: the peer's own code path: EMA with alpha 0.33, a one-frame majority
window (identity), then a second EMA whose rate is the video's mean score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Method = Literal["ema_vote", "anomalyruler", "none"]


def ema(values: Sequence[float], alpha: float) -> np.ndarray:
    """s[0] = x[0]; s[t] = alpha * x[t] + (1 - alpha) * s[t-1]."""
    data = np.asarray(values, dtype=float)
    out = np.empty_like(data)
    if data.size == 0:
        return out
    state = data[0]
    for index, value in enumerate(data):
        state = alpha * value + (1 - alpha) * state
        out[index] = state
    return out


def moving_median(values: Sequence[float], window: int) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    if window <= 1 or data.size == 0:
        return data.copy()
    half = window // 2
    padded = np.pad(data, half, mode="edge")
    return np.array([np.median(padded[i:i + 2 * half + 1]) for i in range(data.size)])


def majority_vote(decisions: Sequence[bool], window: int) -> np.ndarray:
    """Each frame takes the majority decision of the centred window (ties keep the frame's own)."""
    data = np.asarray(decisions, dtype=bool)
    if window <= 1 or data.size == 0:
        return data.copy()
    half = window // 2
    padded = np.pad(data.astype(int), half, mode="edge")
    votes = np.array([padded[i:i + 2 * half + 1].sum() for i in range(data.size)])
    size = 2 * half + 1
    return np.where(votes * 2 == size, data, votes * 2 > size)


def smooth(scores: Sequence[float], *, method: Method = "ema_vote", alpha: float = 0.33, window: int = 5,
           threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(smoothed scores, decisions) for one video's raw scores."""
    raw = np.asarray(scores, dtype=float)
    if raw.size == 0:
        return raw, raw.astype(bool)
    if method == "none":
        return raw.copy(), raw > threshold
    if method == "anomalyruler":
        # Our reading of the peer's code: EMA(0.33), a one-frame majority window (which leaves the
        # decisions unchanged), then a second EMA whose rate is the video's mean raw score.
        first = ema(raw, alpha)
        second = ema(first, min(1.0, max(float(np.mean(raw)), 1e-3)))
        return second, majority_vote(second > threshold, 1)
    smoothed = moving_median(ema(raw, alpha), window)
    return smoothed, majority_vote(smoothed > threshold, window)
