"""Captions from any vision-capable LiteLLM endpoint (vLLM, Ollama, llama.cpp with mmproj, hosted APIs).

Each frame goes out as one JPEG image in one chat request through the :class:`Gateway`, so
retries, timeouts, fallbacks, tracing and usage records are the gateway's. Requests run on a
small thread pool; the captions come back in frame order.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from sleuth import telemetry
from sleuth.llm.gateway import Gateway, user_message
from sleuth.tools.frames import Frame, resize_to


def jpeg_bytes(image: np.ndarray, *, quality: int = 90, max_width: int | None = None) -> bytes:
    """An RGB uint8 image as JPEG bytes, downscaled to ``max_width`` when wider."""
    from PIL import Image

    if max_width is not None:
        image = resize_to(image, max_width)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class LiteLLMCaptioner:
    """One chat request per frame: the prompt plus the frame as a JPEG image.

    ``max_width`` keeps request payloads (and vision tokens) bounded for high-resolution footage.
    Endpoint failures raise the gateway's typed errors (:class:`~sleuth.errors.EndpointError`
    and subclasses); requests not yet started are cancelled.
    """

    independent_frames = True  # each frame is its own request: a Ray replica may batch frames across calls

    def __init__(self, gateway: Gateway, *, prompt: str, max_tokens: int = 64, role: str = "vlm",
                 concurrency: int = 4, jpeg_quality: int = 90, max_width: int | None = 1024) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.gateway = gateway
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.role = role
        self.concurrency = concurrency
        self.jpeg_quality = jpeg_quality
        self.max_width = max_width
        model = getattr(getattr(gateway.settings, role, None), "model", None)
        self.name = f"litellm:{model or role}"

    def caption(self, frames: Sequence[Frame]) -> list[str]:
        with telemetry.tool_span("caption") as span:
            span.set_attribute("sleuth.captioner", self.name)
            span.set_attribute("sleuth.batch.size", len(frames))
            if not frames:
                return []
            if self.concurrency == 1 or len(frames) == 1:
                return [self._one(frame) for frame in frames]
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(frames)),
                                    thread_name_prefix="sleuth-caption") as pool:
                futures = [pool.submit(self._one, frame) for frame in frames]
                return _results_in_order(futures)

    def _one(self, frame: Frame) -> str:
        image = jpeg_bytes(frame.image, quality=self.jpeg_quality, max_width=self.max_width)
        result = self.gateway.chat([user_message(self.prompt, images=[image])], role=self.role,
                                   max_tokens=self.max_tokens)
        return result.text.strip()


def _results_in_order(futures: list[Future[str]]) -> list[str]:
    """Each future's result in submission order; on the first failure cancel the rest and re-raise."""
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise
