"""Temporal smoothing of per-frame anomaly scores and decisions."""

from __future__ import annotations

import numpy as np
import pytest
from sleuth.tools.smoothing import adjusted_ema, ema, majority_vote, moving_median, smooth

# --- ema -------------------------------------------------------------------------------------


def test_ema_follows_the_recurrence() -> None:
    values = [0.0, 1.0, 1.0, 0.0, 0.5]
    alpha = 0.33
    expected = [values[0]]
    for value in values[1:]:
        expected.append(alpha * value + (1 - alpha) * expected[-1])
    assert np.allclose(ema(values, alpha), expected)


def test_ema_starts_at_the_first_value() -> None:
    assert ema([0.8, 0.0, 0.0], 0.1)[0] == pytest.approx(0.8)
    assert ema([3], 0.5).tolist() == [3.0]


def test_ema_alpha_one_is_the_identity() -> None:
    values = [0.1, 0.9, 0.2, 0.7]
    assert np.allclose(ema(values, 1.0), values)


def test_ema_of_integers_is_float_and_empty_stays_empty() -> None:
    smoothed = ema([0, 1, 1], 0.5)
    assert smoothed.dtype == float
    assert np.allclose(smoothed, [0.0, 0.5, 0.75])
    assert ema([], 0.5).shape == (0,)


# --- moving_median ---------------------------------------------------------------------------


def test_moving_median_removes_a_one_frame_spike() -> None:
    values = [0.0] * 5 + [1.0] + [0.0] * 5
    assert np.allclose(moving_median(values, 5), 0.0)


def test_moving_median_keeps_a_long_plateau() -> None:
    values = [0.0] * 5 + [1.0] * 8 + [0.0] * 5
    assert np.allclose(moving_median(values, 5), values)


def test_moving_median_window_one_copies_the_input() -> None:
    values = np.array([0.2, 0.9, 0.1])
    out = moving_median(values, 1)
    assert np.array_equal(out, values) and out is not values
    assert moving_median([], 5).shape == (0,)


# --- majority_vote ---------------------------------------------------------------------------


def test_majority_vote_removes_an_isolated_decision_and_fills_a_gap() -> None:
    assert majority_vote([0, 0, 0, 1, 0, 0, 0], 3).tolist() == [False] * 7
    assert majority_vote([1, 1, 1, 0, 1, 1, 1], 3).tolist() == [True] * 7


def test_majority_vote_keeps_long_runs_and_edges() -> None:
    decisions = [True] * 4 + [False] * 6 + [True] * 4
    assert majority_vote(decisions, 5).tolist() == decisions


def test_majority_vote_window_one_is_the_identity() -> None:
    decisions = [True, False, True, False]
    assert majority_vote(decisions, 1).tolist() == decisions
    assert majority_vote([], 5).shape == (0,)


# --- smooth ----------------------------------------------------------------------------------

SPIKE = [0.0] * 10 + [1.0] + [0.0] * 10
EVENT = [0.0] * 10 + [1.0] * 20 + [0.0] * 10


@pytest.mark.parametrize("method", ["ema_vote", "anomalyruler", "none"])
def test_smooth_returns_one_score_and_one_decision_per_frame(method: str) -> None:
    scores, decisions = smooth(EVENT, method=method)
    assert scores.shape == decisions.shape == (len(EVENT),)
    assert decisions.dtype == bool
    assert np.all((scores >= 0.0) & (scores <= 1.0))


@pytest.mark.parametrize("method", ["ema_vote", "anomalyruler", "none"])
def test_smooth_of_no_frames_is_empty(method: str) -> None:
    scores, decisions = smooth([], method=method)
    assert scores.shape == decisions.shape == (0,)
    assert decisions.dtype == bool


def test_ema_vote_drops_a_single_frame_false_alarm() -> None:
    scores, decisions = smooth(SPIKE, method="ema_vote", window=5)
    assert not decisions.any()
    assert scores.max() < 0.5


def test_ema_vote_keeps_a_long_anomalous_span() -> None:
    scores, decisions = smooth(EVENT, method="ema_vote", window=5)
    assert decisions[14:30].all()
    assert not decisions[:10].any() and not decisions[-5:].any()
    assert scores[20] > 0.9


def test_none_thresholds_the_raw_scores() -> None:
    raw = [0.2, 0.6, 0.5, 0.9]
    scores, decisions = smooth(raw, method="none", threshold=0.5)
    assert np.allclose(scores, raw)
    assert decisions.tolist() == [False, True, False, True]
    assert smooth(SPIKE, method="none")[1].sum() == 1  # no smoothing: the false alarm stays


def test_anomalyruler_follows_the_authors_recipe() -> None:
    raw = np.array(EVENT)
    scores, decisions = smooth(raw, method="anomalyruler", alpha=0.9)  # the peer's alpha is fixed at 0.33
    first = adjusted_ema(raw, 0.33)
    assert decisions.tolist() == (first > first.mean()).tolist()  # threshold: the first EMA's own mean
    assert np.allclose(scores, adjusted_ema(decisions.astype(float), first.mean()))


def test_adjusted_ema_matches_the_pandas_formula() -> None:
    values, expected, numerator, denominator = [0, 1, 1, 0, 1], [], 0.0, 0.0
    for value in values:
        numerator, denominator = numerator * 0.67 + value, denominator * 0.67 + 1
        expected.append(numerator / denominator)
    assert np.allclose(adjusted_ema(values, 0.33), expected)


def test_anomalyruler_on_all_zero_scores_stays_normal() -> None:
    scores, decisions = smooth([0.0] * 8, method="anomalyruler")
    assert np.allclose(scores, 0.0) and not decisions.any()


def test_threshold_moves_the_decisions() -> None:
    _, low = smooth(EVENT, method="ema_vote", threshold=0.1)
    _, high = smooth(EVENT, method="ema_vote", threshold=0.9)
    assert low.sum() > high.sum() > 0


def test_anomalous_spans_are_inclusive_runs_including_the_edges() -> None:
    from sleuth.tools.smoothing import anomalous_spans

    assert anomalous_spans([True, True, False, False, True, False, True]) == [(0, 1), (4, 4), (6, 6)]
    assert anomalous_spans([False, False]) == [] and anomalous_spans([]) == []
