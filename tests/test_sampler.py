"""Anomaly-focused temporal sampler (Holmes-VAU) and the trainable frame scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sleuth.errors import ModelFileError
from sleuth.evals.metrics import frame_auc
from sleuth.tools.sampler import AnomalyFocusedSampler, FrameScorer, ScorerError, uniform_positions


def spike(length: int = 200, start: int = 120, stop: int = 140, level: float = 0.9) -> np.ndarray:
    scores = np.full(length, 0.05)
    scores[start:stop] = level
    return scores


def test_samples_concentrate_where_scores_are_high() -> None:
    picks = AnomalyFocusedSampler(n=16, tau=0.1).sample(spike())
    inside = [p for p in picks if 120 <= p < 140]
    # The spike is 10% of the frames; with tau=0.1 it holds 20 * 1.1 / (20 * 1.1 + 180 * 0.1) = 55% of the density.
    assert len(inside) >= 8
    assert picks[0] < 120 and picks[-1] >= 140  # calm stretches still get some frames


def test_smaller_tau_focuses_harder() -> None:
    def inside(tau: float) -> int:
        return sum(120 <= p < 140 for p in AnomalyFocusedSampler(n=16, tau=tau).sample(spike()))

    assert inside(0.01) > inside(0.1) > inside(1.0)


def test_always_exactly_n_distinct_sorted_positions() -> None:
    rng = np.random.default_rng(0)
    for scores in (spike(), spike(length=30, start=10, stop=11, level=100.0), rng.random(57) ** 8):
        for n in (1, 5, 16, 29):
            picks = AnomalyFocusedSampler(n=n, tau=0.01).sample(scores)
            assert len(picks) == min(n, len(scores))
            assert picks == sorted(set(picks))
            assert all(0 <= p < len(scores) for p in picks)


def test_a_one_frame_peak_spreads_into_its_neighbourhood() -> None:
    scores = np.zeros(100)
    scores[50] = 1.0
    picks = AnomalyFocusedSampler(n=8, tau=0.001).sample(scores)
    assert len(picks) == 8 and 50 in picks
    assert max(abs(p - 50) for p in picks) <= 7  # the collisions filled the nearest free frames


def test_flat_or_undefined_scores_sample_uniformly() -> None:
    sampler = AnomalyFocusedSampler(n=5)
    expected = [0, 25, 50, 74, 99]
    assert uniform_positions(100, 5) == expected
    assert sampler.sample(np.full(100, 0.3)) == expected
    with_nan = spike(length=100, start=40, stop=50)
    with_nan[3] = np.nan
    assert sampler.sample(with_nan) == expected
    assert AnomalyFocusedSampler(n=5, min_range=0.5).sample(np.linspace(0.0, 0.2, 100)) == expected


def test_short_videos_return_every_frame() -> None:
    sampler = AnomalyFocusedSampler(n=16)
    assert sampler.sample([0.1, 0.9, 0.2]) == [0, 1, 2]
    assert sampler.sample(np.arange(16.0)) == list(range(16))
    assert sampler.sample([]) == []


def test_density_sums_to_one_and_follows_scores() -> None:
    density = AnomalyFocusedSampler(tau=0.1).density(spike())
    assert density.sum() == pytest.approx(1.0)
    assert density[130] == pytest.approx(11 * density[0])  # (1 + 0.1) / (0 + 0.1)


def toy_problem(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable but imbalanced: anomalies (10%) are shifted along a direction hidden among 16 features."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(count) < 0.1).astype(np.float32)
    features = rng.normal(size=(count, 16)).astype(np.float32) * np.linspace(0.5, 3.0, 16, dtype=np.float32)
    features[:, 3] += 4.0 * labels
    features[:, 7] -= 3.0 * labels
    return features * 50 + 10, labels  # unscaled features: the scorer must standardise them itself


def test_frame_scorer_learns_and_round_trips(tmp_path: Path) -> None:
    train_x, train_y = toy_problem(600, seed=1)
    test_x, test_y = toy_problem(400, seed=2)
    scorer = FrameScorer(hidden=16).fit(train_x, train_y, epochs=40, lr=1e-2, seed=0)
    scores = scorer.predict(test_x)
    assert scores.shape == (400,) and scores.dtype == np.float32
    assert 0.0 <= scores.min() and scores.max() <= 1.0
    auc = frame_auc(test_y, scores)
    assert auc is not None and auc > 0.95
    # Class balancing: anomalies (10% of frames) still score high, normal frames low.
    assert np.median(scores[test_y == 1]) > 0.5 > np.median(scores[test_y == 0])

    path = scorer.save(tmp_path / "scorers" / "cam1.pt")
    restored = FrameScorer.load(path)
    np.testing.assert_allclose(restored.predict(test_x), scores, rtol=1e-6, atol=1e-7)


def test_frame_scorer_is_deterministic_for_a_seed() -> None:
    x, y = toy_problem(200, seed=3)
    first = FrameScorer(hidden=8).fit(x, y, epochs=5, seed=7).predict(x)
    second = FrameScorer(hidden=8).fit(x, y, epochs=5, seed=7).predict(x)
    np.testing.assert_array_equal(first, second)


def test_frame_scorer_rejects_what_it_cannot_learn(tmp_path: Path) -> None:
    x, y = toy_problem(50, seed=4)
    with pytest.raises(ScorerError, match="one class"):
        FrameScorer().fit(x, np.zeros(50))
    with pytest.raises(ScorerError, match="49 labels"):
        FrameScorer().fit(x, y[:49])
    with pytest.raises(ScorerError, match="not trained"):
        FrameScorer().predict(x)
    trained = FrameScorer(hidden=4).fit(x, y, epochs=2)
    with pytest.raises(ScorerError, match="16"):
        trained.predict(x[:, :8])
    with pytest.raises(ModelFileError):
        FrameScorer.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="junk.pt"):
        FrameScorer.load(tmp_path / "junk.pt")
