"""Typed results of the ``detect`` graph: per-frame scores, events, cost and provenance, kept in
:mod:`sleuth.records` so that agents and reports can read them without importing a graph."""

from sleuth.records import Cost, DetectReport, FrameScore, VideoEvent

__all__ = ["Cost", "DetectReport", "FrameScore", "VideoEvent"]
