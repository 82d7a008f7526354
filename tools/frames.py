"""Frame reader: video files, image folders and network streams as timestamped RGB frames.

One reader for every source a user points Sleuth at:

- a video file (mp4, avi, mkv, anything FFmpeg decodes) through PyAV, with OpenCV as fallback;
- a folder of images (jpg, png, bmp, tif), in natural name order, at ``folder_fps``;
- an RTSP/RTMP/HTTP(S) stream through PyAV (TCP for RTSP, a connect timeout).

Frames can be sampled at a chosen rate (``fps``) and cut to a range of source frames
(``start``/``stop``); a ``start`` more than ``SEEK_AFTER_S`` into a file of constant frame rate
is reached by seeking to the key frame before it, not by decoding every frame up to it (the same
frames, numbers and times). Each :class:`Frame` keeps its source frame index and its time in
seconds, so scores and events map back to the footage. Packets that fail to decode are
skipped and counted (``reader.skipped``) unless ``on_error="raise"``, and so are the frames a
cut-off file lacks where its header gives a frame count (mp4, avi); a file that cannot be
opened at all raises one :class:`VideoError` that says what to do.

A full pass over a file knows how many source frames it read (``reader.frames_read``) against
how many its header declares for the range (``reader.frames_declared``). A read that ends short
of the declared count by more than a few frames (:func:`length_tolerance`: containers' counts are
often off by one or two) is a truncated or corrupt file: ``allow_partial=False`` raises a
:class:`VideoError` then, ``allow_partial=True`` (the default) keeps the frames that are there and
leaves the one-line warning in ``reader.shortfall``. Streams and image folders declare no count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sleuth.errors import SleuthError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


SEEK_AFTER_S = 10.0  # a --start further in than this is reached by seeking, not by decoding up to it


class _SeekMissed(Exception):
    """A seek landed past the start (or gave no usable time): read from the beginning."""


class VideoError(SleuthError):
    """A video source that cannot be opened or read."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``image`` is RGB, uint8, shape (height, width, 3)."""

    index: int
    time_s: float
    image: np.ndarray

    @property
    def gray(self) -> np.ndarray:
        """Luma as uint8 (height, width)."""
        rgb = self.image.astype(np.float32)
        return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    source: str
    fps: float
    frame_count: int | None
    width: int
    height: int

    @property
    def duration_s(self) -> float | None:
        return None if self.frame_count is None else self.frame_count / self.fps


def is_stream(source: str | Path) -> bool:
    return str(source).lower().startswith(STREAM_SCHEMES)


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def length_tolerance(declared: int) -> int:
    """Frames a full read may fall short of a header's ``declared`` count before it counts as truncated:
    3 frames or 2 %, whichever is more (headers are often off by a frame or two)."""
    return max(3, math.ceil(0.02 * declared))


def image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)


class FrameReader:
    """Iterate the frames of ``source``. Reusable: every iteration starts from the beginning.

    ``fps``: sample at this rate (None: every frame). ``start``/``stop``: source frame indices,
    stop exclusive. ``max_frames``: stop after this many yielded frames (use it for streams).
    ``allow_partial``: keep the frames of a file that ends well before its header says (True, with
    the warning in ``shortfall``) or raise a :class:`VideoError` (False).
    """

    def __init__(
        self,
        source: str | Path,
        *,
        fps: float | None = None,
        start: int = 0,
        stop: int | None = None,
        max_frames: int | None = None,
        folder_fps: float = 25.0,
        on_error: Literal["skip", "raise"] = "skip",
        backend: Literal["auto", "pyav", "opencv"] = "auto",
        timeout_s: float = 10.0,
        allow_partial: bool = True,
    ) -> None:
        if fps is not None and fps <= 0:
            raise VideoError(f"fps must be positive, got {fps}", hint="pass --fps with a value such as 5")
        self.source = str(source)
        self.fps = fps
        self.start = max(0, start)
        self.stop = stop
        self.max_frames = max_frames
        self.folder_fps = folder_fps
        self.on_error = on_error
        self.backend = backend
        self.timeout_s = timeout_s
        self.allow_partial = allow_partial
        self.skipped = 0
        self.frames_read = 0  # source frames of the range a video file's last full pass decoded
        self.frames_declared: int | None = None  # what the header declares for the range (None: no count)
        self.shortfall: str | None = None  # the warning when the last pass ended short of frames_declared
        self._info: VideoInfo | None = None
        self._check_source()

    # -- opening -----------------------------------------------------------------------------

    @property
    def _is_folder(self) -> bool:
        return not is_stream(self.source) and Path(self.source).is_dir()

    def _check_source(self) -> None:
        if is_stream(self.source):
            return
        path = Path(self.source)
        if not path.exists():
            raise VideoError(f"video not found: {path}", hint="check the path (a video file, image folder or URL)")
        if path.is_dir():
            if not image_files(path):
                raise VideoError(f"no images in folder {path}",
                                 hint=f"a frame folder holds {', '.join(sorted(IMAGE_SUFFIXES))} files")
        elif path.stat().st_size == 0:
            raise VideoError(f"video file is empty: {path}", hint="re-copy or re-export the file")

    @property
    def info(self) -> VideoInfo:
        """Native rate, frame count (None for streams) and size, read without decoding everything."""
        if self._info is None:
            self._info = self._probe()
        return self._info

    def _probe(self) -> VideoInfo:
        if self._is_folder:
            files = image_files(Path(self.source))
            height, width = _read_image(files[0]).shape[:2]
            return VideoInfo(self.source, self.folder_fps, len(files), width, height)
        if self._use_pyav():
            import av

            with self._open_av() as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate or stream.guessed_rate or 25.0)
                count = stream.frames or None
                if count is None and stream.duration and stream.time_base:
                    count = int(round(float(stream.duration * stream.time_base) * rate))
                if count is None and container.duration:  # Matroska keeps only the container's duration
                    count = int(round(container.duration / av.time_base * rate))
                return VideoInfo(self.source, rate, count, stream.codec_context.width, stream.codec_context.height)
        capture = self._open_cv()
        try:
            import cv2

            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            return VideoInfo(self.source, capture.get(cv2.CAP_PROP_FPS) or 25.0, count,
                             int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        finally:
            capture.release()

    def _use_pyav(self) -> bool:
        if self.backend == "opencv":
            return False
        try:
            import av  # noqa: F401
        except ImportError:
            if self.backend == "pyav":
                raise VideoError("PyAV is not installed", hint="pip install av, or use backend='opencv'") from None
            return False
        return True

    def _open_av(self):  # type: ignore[no-untyped-def]
        import av

        options = {}
        if is_stream(self.source):
            options = {"rtsp_transport": "tcp"} if self.source.lower().startswith("rtsp") else {}
        try:
            timeout = self.timeout_s if is_stream(self.source) else None
            container = av.open(self.source, options=options, timeout=timeout)
        except (av.error.FFmpegError, OSError) as exc:
            what = "stream" if is_stream(self.source) else "video"
            hint = ("check the URL, that the camera is reachable and that credentials are in it"
                    if is_stream(self.source) else "the file is not a video or is corrupt; re-export or re-copy it")
            raise VideoError(f"cannot open {what} {self.source}: {_short(exc)}", hint=hint) from None
        if not container.streams.video:
            container.close()
            raise VideoError(f"no video stream in {self.source}", hint="is this an audio-only or data file?")
        return container

    def _open_cv(self):  # type: ignore[no-untyped-def]
        import cv2

        capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            raise VideoError(f"cannot open video {self.source}",
                             hint="the file is not a video, is corrupt, or the stream is unreachable")
        return capture

    # -- decoding ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        self.skipped = 0
        self.frames_read, self.frames_declared, self.shortfall = 0, None, None
        if self._is_folder:
            raw = self._iter_folder(Path(self.source))
            native = self.folder_fps
        elif self._use_pyav():
            native = self.info.fps
            raw = self._iter_pyav()
        else:
            native = self.info.fps
            raw = self._iter_opencv(native)
        yielded = 0
        for frame in self._sample(raw, native):
            yielded += 1
            yield frame
        if yielded == 0 and self.shortfall:
            raise VideoError(f"{self.shortfall}; no frame of the range was read",
                             hint="re-copy or re-export the file, or pick --start/--stop inside what is there")
        if yielded == 0 and self.skipped:
            hint = ("serve the file with HTTP range support, or re-encode it with the index first "
                    "(ffmpeg -movflags +faststart)" if is_stream(self.source)
                    else "the file is corrupt; re-copy or re-export it")
            raise VideoError(f"no frame of {self.source} could be decoded ({self.skipped} bad frame(s) skipped)",
                             hint=hint)

    def read(self) -> list[Frame]:
        return list(self)

    def _sample(self, raw: Iterator[Frame], native_fps: float) -> Iterator[Frame]:
        step = None if self.fps is None or self.fps >= native_fps else 1.0 / self.fps
        next_time: float | None = None
        yielded = 0
        for frame in raw:
            if frame.index < self.start:
                continue
            if self.stop is not None and frame.index >= self.stop:
                break
            if step is not None:
                if next_time is not None and frame.time_s + 1e-6 < next_time:
                    continue
                next_time = (frame.time_s if next_time is None else next_time) + step
            yield frame
            yielded += 1
            if self.max_frames is not None and yielded >= self.max_frames:
                break

    def _iter_folder(self, folder: Path) -> Iterator[Frame]:
        for index, file in enumerate(image_files(folder)):
            if index < self.start:
                continue
            if self.stop is not None and index >= self.stop:
                return
            try:
                image = _read_image(file)
            except VideoError:
                if self.on_error == "raise":
                    raise
                self.skipped += 1
                continue
            yield Frame(index, index / self.folder_fps, image)

    def _iter_pyav(self) -> Iterator[Frame]:
        container = self._open_av()
        container.streams.video[0].thread_type = "AUTO"
        try:
            first = self._seek(container)
        except _SeekMissed:  # the seek landed past the start: read from the beginning instead
            container.close()
            container, first = self._open_av(), None
            container.streams.video[0].thread_type = "AUTO"
        try:
            yield from self._decode_pyav(container, first)
        finally:
            container.close()

    def _seek(self, container: Any) -> tuple[int, Any] | None:
        """Jump to the key frame before ``start`` instead of decoding every frame up to it (a file,
        constant frame rate, a start more than ``SEEK_AFTER_S`` in). Returns the index of the first
        frame decoded after the jump with its frames, or None to read from the beginning."""
        import av

        stream = container.streams.video[0]
        rate = self.info.fps
        if is_stream(self.source) or self.start / rate < SEEK_AFTER_S or not stream.time_base:
            return None
        if stream.average_rate and stream.guessed_rate and abs(float(stream.average_rate)
                                                              - float(stream.guessed_rate)) > 0.01 * rate:
            return None  # a variable frame rate: times do not give frame numbers
        base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        target = int((base + (self.start - 0.5) / rate) / float(stream.time_base))
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            return None
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                continue
            if decoded:
                av_frame = decoded[0]
                if av_frame.time is None:
                    raise _SeekMissed
                index = int(round((float(av_frame.time) - base) * rate))
                if index > self.start or index < 0:
                    raise _SeekMissed
                return index, decoded
        raise _SeekMissed

    def _decode_pyav(self, container: Any, first: tuple[int, Any] | None) -> Iterator[Frame]:
        """Frames from ``container``, numbered from 0, or from ``first``'s index after a seek (its
        decoded frames come first)."""
        import av

        stream = container.streams.video[0]
        rate = self.info.fps
        expected = stream.frames  # exact where the header says it (mp4, avi); 0 when it does not
        index = 0 if first is None else first[0]
        batches: Iterator[Any] = iter([first[1]] if first is not None else [])
        packets = container.demux(stream)
        while True:
            decoded = next(batches, None)
            if decoded is None:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:  # unreadable container data: stop, keep what we have
                    if self.on_error == "raise":
                        raise VideoError(f"{self.source} is truncated or corrupt: {_short(exc)}",
                                         hint="re-copy the file, or read it with on_error='skip'") from None
                    self.skipped += 1
                    break
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    if self.on_error == "raise":
                        raise VideoError(f"bad frame data in {self.source} near frame {index}: {_short(exc)}",
                                         hint="re-copy the file, or read it with on_error='skip'") from None
                    self.skipped += 1
                    continue
            for av_frame in decoded:
                time_s = float(av_frame.time) if av_frame.time is not None else index / rate
                if index >= self.start:
                    yield Frame(index, time_s, av_frame.to_ndarray(format="rgb24"))
                index += 1
                if self.stop is not None and index >= self.stop:
                    return
        # FFmpeg ends a cut-off file like a complete one: the header's frame count tells them apart
        wanted = expected if self.stop is None else min(expected, self.stop)
        if index < wanted:
            self.skipped = max(self.skipped, wanted - index)
        self._check_length(index, expected or None, strict=self.on_error == "raise")

    def _iter_opencv(self, rate: float) -> Iterator[Frame]:
        import cv2

        capture = self._open_cv()
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield Frame(index, index / rate, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
            declared = self.info.frame_count  # OpenCV's count may be an estimate: only a clear shortfall counts
            if self._check_length(index, declared, strict=self.on_error == "raise") and declared is not None:
                self.skipped = max(self.skipped, (declared if self.stop is None else min(declared, self.stop)) - index)
        finally:
            capture.release()

    def _check_length(self, decoded: int, declared: int | None, *, strict: bool = False) -> bool:
        """After a full pass that decoded source frames ``0..decoded-1``: compare the range's frames
        with what the header ``declared``. True when the pass ended short beyond
        :func:`length_tolerance`; then raise (``allow_partial`` False, or ``strict``) or keep the
        warning in ``shortfall``."""
        self.frames_read = max(0, (decoded if self.stop is None else min(decoded, self.stop)) - self.start)
        if declared is None or declared <= 0 or is_stream(self.source):
            return False
        end = declared if self.stop is None else min(declared, self.stop)
        wanted = end - self.start
        if wanted <= 0:  # the range starts past the declared end: nothing was expected
            return False
        self.frames_declared = wanted
        got = min(self.frames_read, wanted)
        if wanted - got <= length_tolerance(declared):
            return False
        what = (f"the {wanted} frames its header declares" if (self.start, end) == (0, declared)
                else f"the {wanted} frames its header declares for frames {self.start}-{end - 1}")
        self.shortfall = f"{self.source}: read {got} of {what} (the file looks truncated or corrupt)"
        if strict or not self.allow_partial:
            raise VideoError(self.shortfall, hint="re-copy or re-export the file, or pass --allow-partial "
                             "(allow_partial=True) to analyse the frames that are there")
        return True


def _read_image(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoError(f"cannot read image {path}", hint="the file is not an image or is corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


def clip_sources(path: str | Path) -> list[Path]:
    """A video file or a frame folder is one clip; a folder of videos or of frame folders is many."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video not found: {path}", hint="check the path")
    if path.is_file() or image_files(path):
        return [path]
    clips = sorted((p for p in path.iterdir() if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES), key=_natural_key)
    if not clips:
        raise VideoError(f"no frames, videos or clip folders in {path}", hint="point --video at footage")
    return clips


def read_clips(sources: Sequence[str | Path], *, fps: float | None = None, start: int = 0,
               stop: int | None = None) -> tuple[list[list[Frame]], int]:
    """Every clip under ``sources`` (see :func:`clip_sources`) and the count of skipped bad frames."""
    clips, skipped = [], 0
    for source in sources:
        for clip in clip_sources(source):
            reader = FrameReader(clip, fps=fps, start=start, stop=stop)
            clips.append(reader.read())
            skipped += reader.skipped
    return clips, skipped


def read_frames(source: str | Path, **options: object) -> list[Frame]:
    """All frames of ``source`` (see :class:`FrameReader` for the options)."""
    return FrameReader(source, **options).read()  # type: ignore[arg-type]


def frames_at(source: str | Path, indices: Iterable[int], *, folder_fps: float = 25.0) -> dict[int, Frame]:
    """The source frames numbered ``indices``, reading only around them: indices less than
    ``SEEK_AFTER_S`` apart are read in one pass, and each pass starts by seeking (a file), so key
    frames of a long video cost a few short reads, not another decode of the whole video. An index
    the source does not have is missing from the result."""
    wanted = sorted(set(int(index) for index in indices))
    if not wanted:
        return {}
    rate = FrameReader(source, folder_fps=folder_fps).info.fps or 25.0
    runs: list[list[int]] = [[wanted[0]]]
    for index in wanted[1:]:
        if index - runs[-1][-1] > SEEK_AFTER_S * rate:
            runs.append([index])
        else:
            runs[-1].append(index)
    found: dict[int, Frame] = {}
    for run in runs:
        keep = set(run)
        for frame in FrameReader(source, start=run[0], stop=run[-1] + 1, folder_fps=folder_fps):
            if frame.index in keep:
                found[frame.index] = frame
    return found


def video_fps(source: str | Path) -> float:
    """The source's frame rate (25 when it declares none)."""
    return FrameReader(source).info.fps or 25.0


def frame_range(source: str | Path, start_s: float | None, end_s: float | None) -> tuple[int, int | None]:
    """Source frame indices ``(start, stop)`` (stop exclusive) of a time range in seconds; the whole
    source when both are None (the file is not opened then)."""
    if start_s is None and end_s is None:
        return 0, None
    fps = video_fps(source)
    start = int(round((start_s or 0.0) * fps))
    stop = int(round(end_s * fps)) + 1 if end_s is not None else None
    if stop is not None and stop <= start:
        raise VideoError(f"the range {start_s}-{end_s} s is empty", hint="give an end after the start")
    return start, stop


def resize_to(image: np.ndarray, width: int) -> np.ndarray:
    """Downscale keeping the aspect ratio (no-op when already narrower)."""
    import cv2

    height, current = image.shape[:2]
    if current <= width:
        return image
    return cv2.resize(image, (width, max(1, int(math.floor(height * width / current)))), interpolation=cv2.INTER_AREA)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text)[:160]  # FFmpeg's internal error numbers mean nothing to users
