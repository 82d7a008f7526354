"""Frames of a live source, one session clock across reconnects.

:class:`LiveFrames` reads a source until it is stopped:

- a stream URL (RTSP, RTMP, HTTP(S)): when it drops or ends, it is opened again after a backoff
  (doubling from ``retry_base_s`` to ``retry_max_s``); each gap is reported with its length;
- a folder: every video file that appears in it (complete: its size stopped changing), in the
  order they arrive, as consecutive segments; the folder is polled until stopped;
- a file: read once.

Frames are re-numbered (``index`` counts frames since the watch started) and timed on the
session's clock (seconds since the watch started for live sources; the file's own time for a
file), so events keep increasing times across reconnects and files. Each frame's wall-clock
arrival is kept for the alert latency. A new segment (reconnect, next file) starts the scene's
object tracks afresh: ``on_segment`` is called before its first frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sleuth.tools.frames import Frame, FrameReader, VideoError, is_stream

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".ts", ".mpg", ".mpeg", ".flv"}


@dataclass
class Gap:
    """A span the source gave no frames: a dropped stream before it came back."""

    start_s: float
    end_s: float
    reason: str
    attempts: int

    @property
    def seconds(self) -> float:
        return round(self.end_s - self.start_s, 2)


@dataclass
class LiveFrame:
    frame: Frame  # index and time_s on the session's clock
    arrived: float  # wall clock (time.time()) when it was decoded
    segment: int  # 0 for the first connection or file, +1 for each reconnect or new file
    source_time_s: float = 0.0  # the frame's time in its own stream or file (where in the source it is)


class LiveFrames:
    """Iterate :class:`LiveFrame` until ``stop`` is set, the file ends or ``max_seconds`` of source time pass."""

    def __init__(self, source: str, *, fps: float | None = 5.0, retry_base_s: float = 1.0, retry_max_s: float = 30.0,
                 poll_s: float = 1.0, max_seconds: float | None = None, stop: threading.Event | None = None,
                 on_gap: Callable[[Gap], None] | None = None, sleep: Callable[[float], None] | None = None) -> None:
        self.source, self.fps = source, fps
        self.retry_base_s, self.retry_max_s, self.poll_s = retry_base_s, retry_max_s, poll_s
        self.max_seconds = max_seconds
        self.stop = stop or threading.Event()
        self.on_gap = on_gap
        self._sleep = sleep or (lambda seconds: self.stop.wait(seconds))
        self.frames = 0
        self.gaps: list[Gap] = []
        self.segment = -1
        self._t0 = time.monotonic()
        self._last_time: float | None = None

    @property
    def kind(self) -> str:
        if is_stream(self.source):
            return "stream"
        return "folder" if Path(self.source).is_dir() else "file"

    def clock(self) -> float:
        return time.monotonic() - self._t0

    def __iter__(self) -> Iterator[LiveFrame]:
        kind = self.kind
        if kind == "file":
            FrameReader(self.source, fps=self.fps)  # a missing or unreadable file fails here, in one line
            yield from self._segment(self.source, offset=None)
        elif kind == "folder":
            yield from self._folder()
        else:
            yield from self._stream()

    def _done(self) -> bool:
        return self.stop.is_set()

    def _segment(self, source: str, offset: float | None, *, live: bool = False) -> Iterator[LiveFrame]:
        """One connection or file. ``offset`` None: the source's own times; else times from ``offset``;
        ``live``: from the session clock when the first frame arrives (connecting takes time)."""
        self.segment += 1
        first: float | None = None
        for frame in FrameReader(source, fps=self.fps):
            if self._done():
                return
            if first is None:
                first = frame.time_s
                offset = self.clock() if live else offset
            if offset is not None and self._last_time is not None:
                offset = max(offset, self._last_time + 0.001 - (frame.time_s - first))  # never back in time
            time_s = frame.time_s if offset is None else offset + frame.time_s - first
            self._last_time = time_s
            if self.max_seconds is not None and time_s >= self.max_seconds:
                self.stop.set()
                return
            yield LiveFrame(Frame(self.frames, round(time_s, 4), frame.image), time.time(), self.segment,
                            round(frame.time_s, 4))
            self.frames += 1

    def _stream(self) -> Iterator[LiveFrame]:
        attempts, down_since, reason = 0, None, ""
        while not self._done():
            start = self.clock()
            got = 0
            try:
                for item in self._segment(self.source, offset=start, live=True):
                    if down_since is not None:  # it is back: report the gap once frames flow again
                        self._gap(Gap(round(down_since, 2), round(item.frame.time_s, 2), reason, attempts))
                        down_since, attempts = None, 0
                    got += 1
                    yield item
                reason = "the stream ended or dropped"
            except VideoError as exc:
                reason = exc.message if hasattr(exc, "message") else str(exc)
            if self._done():
                return
            if down_since is None:
                down_since = self.clock()
            attempts += 1
            self._sleep(min(self.retry_max_s, self.retry_base_s * 2 ** min(attempts - 1, 30)))

    def _folder(self) -> Iterator[LiveFrame]:
        folder, seen, sizes = Path(self.source), set[Path](), dict[Path, int]()
        while not self._done():
            ready = []
            for path in sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime, p.name)):
                if path in seen or path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
                    continue
                size = path.stat().st_size
                if sizes.get(path) == size and size > 0:  # unchanged since the last poll: complete
                    ready.append(path)
                sizes[path] = size
            for path in ready:
                seen.add(path)
                offset = self.clock() if self.frames else 0.0
                try:
                    yield from self._segment(str(path), offset=offset)
                except VideoError as exc:
                    self._gap(Gap(round(offset, 2), round(self.clock(), 2), f"{path.name}: {exc}", 1))
                if self._done():
                    return
            if not ready:
                self._sleep(self.poll_s)

    def _gap(self, gap: Gap) -> None:
        self.gaps.append(gap)
        if self.on_gap is not None:
            self.on_gap(gap)
