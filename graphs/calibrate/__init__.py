"""``calibrate``: learn what is normal for a scene (proposer, rules, scene profile)."""

from sleuth.graphs.calibrate.configuration import CalibrateConfig
from sleuth.graphs.calibrate.graph import calibrate
from sleuth.graphs.calibrate.state import CalibrateResult

__all__ = ["CalibrateConfig", "CalibrateResult", "calibrate"]
