"""Score a long video or a live stream with a scene's proposer, chunk by chunk, in flat memory.

:class:`StreamScorer` takes frames one at a time (``push``). Each frame goes through the object
stage (detector, tracker, optical flow) once, when it arrives; the tracker and the flow carry over
from one chunk to the next. Every ``chunk`` frames it scores a window of the frames it keeps:
``context`` frames before the chunk and ``lookahead`` frames after it, so that the temporal crops
and the smoothing of the chunk's frames see their neighbours as in a whole-clip score. It then
returns the chunk's frames and :class:`~sleuth.tools.proposer.proposer.ProposalScores` and forgets the frames
no later window needs. At most ``context + chunk + lookahead`` frames are held, whatever the
length of the video. The self-supervised tasks run once per frame too: a frame's result, which
depends on the frames 4 either side of it, is kept while the frame is in the window and computed
once all its neighbours are there.

The background model of the moving-region detector starts from the first window's frames (a
whole-clip score uses the whole clip's median), so scores differ slightly from
:meth:`~sleuth.tools.proposer.proposer.Proposer.score` on the same frames. The latency of a live
score is ``lookahead`` frames plus the time to score a window.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sleuth.tools.frames import Frame
from sleuth.tools.heap import release_memory
from sleuth.tools.objects import ObjectStage
from sleuth.tools.proposer import data
from sleuth.tools.proposer.proposer import ObjectScore, ProposalScores, Proposer, ProposerError, _set_threads

RADIUS = max(data.OFFSETS)  # frames either side that a frame's temporal crops read


@dataclass
class ScoredChunk:
    """Consecutive frames and their scores (``scores.tracked`` holds their objects)."""

    frames: list[Frame]
    scores: ProposalScores


class StreamScorer:
    """``push(frame)`` -> the next finished chunk (frames and scores), or None; ``finish()`` -> the rest."""

    def __init__(self, proposer: Proposer, *, chunk: int = 128, context: int = 16, lookahead: int = 16,
                 stage: ObjectStage | None = None) -> None:
        if chunk < 1 or context < RADIUS or lookahead < RADIUS:
            raise ValueError(f"chunk must be >= 1, context and lookahead >= {RADIUS} (the temporal crops' reach)")
        if not proposer.trained:
            raise ProposerError("this proposer is not trained", hint="run `sleuth calibrate proposer` for the scene")
        self.proposer, self.chunk, self.context, self.lookahead = proposer, chunk, context, lookahead
        self.stage = stage or ObjectStage()
        self._frames: list[Frame] = []
        self._tracked: list[Any] = []
        self._done = 0  # positions of the buffer already returned (kept as context)
        self._ssl: dict[int, tuple[float, list[ObjectScore]]] = {}  # frame index -> its self-supervised scores
        self._started = False
        self.frames_seen = 0
        self._trimmed = 0  # frames_seen at the last release_memory()
        _set_threads()

    def push(self, frame: Frame) -> ScoredChunk | None:
        self._frames.append(frame)
        self.frames_seen += 1
        if not self._started:
            if len(self._frames) < self.chunk + self.lookahead:
                return None
            self._start()
        else:
            self._tracked += self.stage.run([frame], prepare=False)
        if len(self._frames) - self._done >= self.chunk + self.lookahead:
            return self._emit(self._done + self.chunk)
        return None

    def finish(self) -> ScoredChunk | None:
        """The scores of the frames not returned yet (None when there are none)."""
        if not self._started and self._frames:
            self._start()
        if self._done >= len(self._frames):
            return None
        return self._emit(len(self._frames), final=True)

    def chunks(self, frames: Iterable[Frame]) -> Iterator[ScoredChunk]:
        """Every chunk's scores of ``frames``, the last chunk included."""
        for frame in frames:
            scored = self.push(frame)
            if scored is not None:
                yield scored
        rest = self.finish()
        if rest is not None:
            yield rest

    def _start(self) -> None:
        """Prime the detector (background model) on the first frames and run the object stage on them."""
        self._tracked = self.stage.run(self._frames, prepare=True)
        self._started = True

    def _emit(self, stop: int, *, final: bool = False) -> ScoredChunk:
        frames, tracked = self._frames, self._tracked
        ssl = np.zeros(len(frames))
        objects: list[list[ObjectScore]] = [[] for _ in frames]
        # The last RADIUS frames still miss neighbours: they are computed in a later window, and hold the
        # value of the last complete frame meanwhile (they only smooth the chunk's last frames).
        complete = len(frames) if final else len(frames) - RADIUS
        needed = [p for p in range(complete) if frames[p].index not in self._ssl]
        computed = self.proposer.ssl_scores(data.grey_stack(frames), tracked, needed)
        for position, value, scored in zip(needed, *computed, strict=True):
            self._ssl[frames[position].index] = (float(value), scored)
        for position, frame in enumerate(frames[:complete]):
            value, scored = self._ssl[frame.index]
            ssl[position], objects[position] = value, [_copy(o) for o in scored]
        if 0 < complete < len(frames):
            ssl[complete:] = ssl[complete - 1]
        scores = self.proposer.scores_from_ssl(frames, tracked, ssl, objects).sliced(self._done, stop)
        scored_chunk = ScoredChunk(frames[self._done:stop], scores)
        self._done = stop
        drop = max(0, self._done - self.context)
        for frame in frames[:drop]:
            self._ssl.pop(frame.index, None)
        del frames[:drop], tracked[:drop]
        self._done -= drop
        if self.frames_seen - self._trimmed >= TRIM_EVERY:
            release_memory()
            self._trimmed = self.frames_seen
        return scored_chunk


TRIM_EVERY = 128  # frames between two returns of freed heap memory to the system


def _copy(scored: ObjectScore) -> ObjectScore:
    """An object score before :meth:`Proposer.scores_from_ssl` completes it (it does so in place)."""
    return replace(scored, tasks=dict(scored.tasks))
