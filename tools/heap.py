"""Give freed heap memory back to the system (glibc keeps it otherwise).

Long runs free large buffers (decoded frames, model activations) over and over; glibc keeps the
freed pages for reuse, so the process's resident memory creeps up with the length of the video.
``release_memory()`` returns them: the streaming scorer calls it every few chunks, and ``detect``
between its stages.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, Windows, musl): nothing to do
        return None


def release_memory() -> None:
    """Give the heap memory freed since the last call back to the system. Streaming 1,536 frames of
    vtest.avi, the scorer's memory crept from 690 to 1,033 MB without this and stayed at 591-611 MB
    with it, every 128 frames (docs/benchmarks.md)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
