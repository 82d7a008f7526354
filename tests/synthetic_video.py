"""Small synthetic clips for the frame reader, object stage and structured captioner tests.

A clip is a static textured background (smooth blobs of grey plus a little fixed noise, so
background subtraction has real texture to model) with flat-coloured rectangles moving at
constant velocities given in pixels per second. Clips are rendered in memory and can be written
as a video file (mp4/mkv via H.264, avi via MPEG-4 Part 2, all through PyAV) or as a folder of
numbered images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sleuth.tools.frames import Frame

CODECS = {".mp4": "libx264", ".mkv": "libx264", ".avi": "mpeg4"}
# Saturated but dark: the object stage segments luma, and the background is light grey.
RED = (210, 20, 20)
FPS = 10.0  # the default rate of every clip here
BLUE = (20, 40, 200)


@dataclass(frozen=True)
class Mover:
    """A flat rectangle: top-left at ``(x, y)`` at time 0, moving ``(vx, vy)`` pixels per second."""

    x: float
    y: float
    width: int
    height: int
    vx: float = 0.0
    vy: float = 0.0
    colour: tuple[int, int, int] = RED

    def box_at(self, time_s: float) -> tuple[int, int, int, int]:
        x1, y1 = int(round(self.x + self.vx * time_s)), int(round(self.y + self.vy * time_s))
        return (x1, y1, x1 + self.width, y1 + self.height)


def background(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """A static, textured RGB background: light greys with soft patches, never saturated."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(140, 200, size=(max(2, height // 20), max(2, width // 20))).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0.0, 4.0, size=(height, width)).astype(np.float32)
    grey = np.clip(smooth + fine, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def render(movers: Sequence[Mover], *, n_frames: int = 40, fps: float = FPS, width: int = 160,
           height: int = 120, seed: int = 0) -> list[np.ndarray]:
    """RGB uint8 images of the movers drawn over :func:`background`, frame ``i`` at time ``i / fps``."""
    base = background(width, height, seed)
    images = []
    for index in range(n_frames):
        image = base.copy()
        for mover in movers:
            x1, y1, x2, y2 = mover.box_at(index / fps)
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
            if x2 > x1 and y2 > y1:
                image[y1:y2, x1:x2] = mover.colour
        images.append(image)
    return images


def frames(images: Sequence[np.ndarray], fps: float = FPS) -> list[Frame]:
    """The images as :class:`Frame` objects with times ``index / fps`` (no encoding round trip)."""
    return [Frame(index, index / fps, image) for index, image in enumerate(images)]


def write_video(path: Path, images: Sequence[np.ndarray], fps: float = FPS, *, faststart: bool = False,
                key_every: int | None = None) -> Path:
    """Encode ``images`` at ``fps`` into ``path``; the container and codec follow the suffix.

    ``faststart`` (mp4 only) puts the index before the frames, as web-ready files have it, so a
    cut-off copy still opens; without it the index is at the end and a cut-off copy does not.
    ``key_every``: a key frame every so many frames (the encoder's default otherwise).
    """
    from fractions import Fraction

    import av

    codec = CODECS[path.suffix.lower()]
    height, width = images[0].shape[:2]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if key_every:
            stream.codec_context.gop_size = key_every
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "ultrafast"}
        else:
            stream.bit_rate = 2_000_000
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_images(folder: Path, images: Sequence[np.ndarray], suffix: str = ".png", *, first: int = 1) -> Path:
    """Write ``images`` as ``first.png``, ``first+1.png``, ... (unpadded numbers, so names sort naturally only)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for offset, image in enumerate(images):
        cv2.imwrite(str(folder / f"{first + offset}{suffix}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def truncate(path: Path, keep: float) -> Path:
    """Cut ``path`` to the first ``keep`` fraction of its bytes, in place."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# The standard clip: two objects crossing a 160x120 frame in opposite directions at FPS. Speeds
# relative to their own heights are what the structured captioner calls fast (> 1.6 per second) or not.
FAST = Mover(0, 12, 14, 20, vx=45.0, colour=RED)  # top, to the right, 2.25 heights per second
SLOW = Mover(120, 75, 16, 24, vx=-20.0, colour=BLUE)  # bottom, to the left, 0.83 heights per second


def two_movers(n_frames: int = 30, fps: float = FPS) -> list[np.ndarray]:
    """The standard clip's images (each object covers any pixel for under a third of the clip)."""
    return render([FAST, SLOW], n_frames=n_frames, fps=fps)
