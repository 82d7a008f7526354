"""Times as people and models write them, read one way by the agent's hints and every check."""

from __future__ import annotations

from sleuth.agents.times import cited_times, clock_times, numbers


def test_a_clock_time_is_minutes_and_seconds_and_one_time_not_two() -> None:
    assert clock_times("at 1:05 and 0:43.3") == [("1:05", 65.0), ("0:43.3", 43.3)]
    assert cited_times("starts at 0:15.3 s, ends at 20 seconds") == [("0:15.3", 15.3), ("20 seconds", 20.0)]


def test_ratios_versions_and_scores_are_not_times() -> None:
    assert cited_times("a ratio of 16:9, rule v2, score 0.55, 12:345") == []
    assert numbers("score 0.55 at 0:43.3") == [0.55, 0.0, 43.3]
