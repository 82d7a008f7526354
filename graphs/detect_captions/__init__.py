"""``detect_captions``: per-frame captions -> refine -> rules -> gate -> deduce -> smooth -> events."""

from sleuth.graphs.detect_captions.configuration import DetectConfig
from sleuth.graphs.detect_captions.graph import build_graph, detect_captions, strongest_note
from sleuth.graphs.detect_captions.state import DetectResult, Event, FrameResult

__all__ = ["DetectConfig", "DetectResult", "Event", "FrameResult", "build_graph", "detect_captions", "strongest_note"]
