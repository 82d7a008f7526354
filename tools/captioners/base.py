"""The captioner interface: frames in, one caption per frame out, in the same order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sleuth.tools.frames import Frame


@runtime_checkable
class Captioner(Protocol):
    """Anything that writes one text caption per frame.

    ``name`` identifies the captioner (and its model) in traces, caches and benchmark reports.
    """

    name: str

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        """One caption per frame of ``frames``, same order; an empty input gives an empty list."""
        ...
