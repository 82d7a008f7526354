"""Long-term memory: versioned rule sets per scene, stored in Qdrant (:mod:`sleuth.memory.rules`)."""

from sleuth.memory.rules import (
    QdrantUnavailable,
    RuleDiff,
    RuleMemory,
    RuleMemoryError,
    RuleMemoryLocked,
    RuleVersionNotFound,
    VersionInfo,
)

__all__ = [
    "QdrantUnavailable",
    "RuleDiff",
    "RuleMemory",
    "RuleMemoryError",
    "RuleMemoryLocked",
    "RuleVersionNotFound",
    "VersionInfo",
]
