"""SSL proposer (HyCoVAD's first stage): a multi-task self-supervised model of a scene's normal
footage that flags suspect frames and objects. See :mod:`.proposer` and :mod:`.model`."""

from sleuth.tools.proposer.proposer import (
    FitReport,
    ObjectScore,
    ProposalScores,
    Proposer,
    ProposerConfig,
    ProposerError,
)
from sleuth.tools.proposer.store import ProposerStore, check_scene

__all__ = ["FitReport", "ObjectScore", "ProposalScores", "Proposer", "ProposerConfig", "ProposerError",
           "ProposerStore", "check_scene"]
