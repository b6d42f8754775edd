"""Bounded sample thumbnails for the report: small PNG/JPEG data URIs made with Pillow."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from introscope.exceptions import require

from ._html import data_uri

__all__ = ["THUMBNAIL_MAX_PX", "as_display_image", "thumbnail_uri"]

#: Longest side of an embedded thumbnail, in pixels (larger images are downscaled, aspect kept).
THUMBNAIL_MAX_PX = 32


def as_display_image(image: Any) -> np.ndarray | None:
    """``image`` as uint8 HxW or HxWx3/4, or None when it does not look like an image.

    Accepts HW, HWC and CHW (C in 1, 3, 4). Floats in [0, 1] are scaled by 255, other ranges are
    stretched to [0, 255] per image.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        return None
    if min(arr.shape[:2]) < 2 or not np.issubdtype(arr.dtype, np.number):
        return None
    if arr.dtype == np.uint8:
        return arr
    f = arr.astype(np.float64)
    finite = np.isfinite(f)
    if not finite.any():
        return np.zeros(arr.shape, dtype=np.uint8)
    f = np.where(finite, f, 0.0)
    lo, hi = float(f.min()), float(f.max())
    if lo >= 0.0 and hi <= 1.0:
        f = f * 255.0
    elif lo >= 0.0 and hi <= 255.0 and np.issubdtype(arr.dtype, np.integer):
        pass
    else:
        f = (f - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(f)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def thumbnail_uri(image: Any, max_px: int = THUMBNAIL_MAX_PX) -> str | None:
    """A data URI of ``image`` at most ``max_px`` on its longest side, or None if not an image.

    Small or grey images are PNG; larger colour ones JPEG (quality 85), which keeps a 32x32
    thumbnail near 1 KB.
    """
    arr = as_display_image(image)
    if arr is None:
        return None
    pil = require("PIL.Image", "report", "report thumbnails")
    img = pil.fromarray(arr)
    h, w = arr.shape[:2]
    if max(h, w) > max_px:
        scale = max_px / max(h, w)
        img = img.resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), pil.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    if img.mode == "RGBA":
        img = img.convert("RGB")
    if img.mode == "L" or max(img.size) <= 16:
        img.save(buf, format="PNG", optimize=True)
        return data_uri(buf.getvalue(), "image/png")
    img.save(buf, format="JPEG", quality=85)
    return data_uri(buf.getvalue(), "image/jpeg")
