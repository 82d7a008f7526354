"""``detect``: a video of a calibrated scene in, scored frames and explained events out."""

from sleuth.graphs.detect.configuration import VideoDetectConfig
from sleuth.graphs.detect.graph import detect_video
from sleuth.graphs.detect.state import Cost, DetectReport, FrameScore, VideoEvent

__all__ = ["Cost", "DetectReport", "FrameScore", "VideoDetectConfig", "VideoEvent", "detect_video"]
