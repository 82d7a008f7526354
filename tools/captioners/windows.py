"""Caption chosen frames of a clip, with the context a captioner needs.

A structured captioner estimates speeds from neighbouring frames, so each chosen frame is
captioned inside a window of ``context`` frames either side; overlapping windows merge into one
run of consecutive frames and each run is one captioner call. A captioner that sees frames one
at a time (a VLM: ``independent_frames = True``) gets only the chosen frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sleuth.tools.captioners.base import Captioner
from sleuth.tools.frames import Frame


def caption_runs(positions: Sequence[int], count: int, context: int) -> list[tuple[int, int]]:
    """Merged ``[first, last]`` windows (inclusive) around ``positions`` within ``range(count)``."""
    runs: list[tuple[int, int]] = []
    for position in sorted(set(positions)):
        first, last = max(0, position - context), min(count - 1, position + context)
        if runs and first <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return runs


def caption_positions(captioner: Captioner, frames: Sequence[Frame], positions: Sequence[int], *,
                      context: int = 4, progress: Callable[[int, int], None] | None = None) -> dict[int, str]:
    """Caption of each of ``positions`` (indices into ``frames``), captioned with context."""
    wanted = sorted({p for p in positions if 0 <= p < len(frames)})
    if getattr(captioner, "independent_frames", False):
        context = 0
    runs = caption_runs(wanted, len(frames), context)
    total = sum(last - first + 1 for first, last in runs)
    captions: dict[int, str] = {}
    done = 0
    for first, last in runs:
        texts = captioner.caption(frames[first: last + 1])
        captions.update({first + k: text for k, text in enumerate(texts)})
        done += last - first + 1
        if progress:
            progress(done, total)
    return {p: captions[p] for p in wanted}
