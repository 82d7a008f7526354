"""Typed results of the ``explain`` graph (Holmes-VAU: judgments at clip, event and video level),
kept in :mod:`sleuth.records` so that agents and reports can read them without importing a graph."""

from sleuth.records import Explanation, Judgment

__all__ = ["Explanation", "Judgment"]
