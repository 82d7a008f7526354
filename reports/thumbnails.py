"""Key-frame thumbnails: small base64 JPEGs that travel inside the report's JSON and HTML."""

from __future__ import annotations

import base64
import io

import numpy as np


def thumbnail(image: np.ndarray, width: int = 240, *, quality: int = 80) -> str:
    """``image`` (H, W, 3 uint8 RGB; grey H, W also works) as a base64 JPEG ``width`` pixels wide.

    Returns the bare base64 text (no ``data:`` prefix). Images narrower than ``width`` keep their
    size: upscaling adds bytes, not detail.
    """
    from PIL import Image

    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or 0 in array.shape[:2]:
        raise ValueError(f"thumbnail needs an (H, W, 3) RGB image, got shape {array.shape}")
    if width < 1:
        raise ValueError(f"thumbnail width must be positive, got {width}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    picture = Image.fromarray(array).convert("RGB")  # RGBA and grey -> RGB (JPEG has no alpha)
    if picture.width > width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality, optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
