"""Captions written beforehand (by an external VLM, or a caption dataset), looked up by frame index.

Lets the pipeline run on captions from a model Sleuth cannot host, and lets benchmarks swap
perception while keeping the rest of the pipeline (e.g. Ped2 with CogVLM's captions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sleuth.errors import SleuthError
from sleuth.tools.frames import Frame


class PrecomputedCaptioner:
    independent_frames = True  # a lookup needs no neighbouring frames

    def __init__(self, captions: Mapping[int, str] | Sequence[str], *, name: str = "precomputed") -> None:
        self.captions = dict(enumerate(captions)) if isinstance(captions, Sequence) else dict(captions)
        self.name = name

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        missing = [frame.index for frame in frames if frame.index not in self.captions]
        if missing:
            raise SleuthError(f"no precomputed caption for frame {missing[0]} ({len(missing)} missing)",
                              hint="the caption file must have one line per frame of the video")
        return [self.captions[frame.index] for frame in frames]
