"""OpenCV kernels for the image stages: the calls DNIKit 2.0 makes, one ``HWC`` image at a time.

Every function takes and returns a batch in ``NHWC`` layout (any strides) and gives the same
numbers as DNIKit's stages for the same images. Batching several images into one call is not
exact (OpenCV picks its 8-bit resize code by channel count), so each image is one call; OpenCV
parallelises inside the call.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import ModuleType
from typing import Any, cast

import numpy as np

__all__ = ["load", "supports", "resize", "rotate", "gaussian_blur", "lookup"]

#: Dtypes OpenCV's resize, warpAffine and GaussianBlur accept (int8/32/64, float16, bool: not).
_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64))
#: Most channels the cv2 bindings turn into one multi-channel image (opencv-python 5.0: 128).
_MAX_CHANNELS = 128
#: ``warpAffine``'s border value is a 4-vector: more channels are warped 4 at a time.
_BORDER_CHANNELS = 4


@functools.cache
def load() -> ModuleType | None:
    """The ``cv2`` module, or None when OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    module: ModuleType = cv2  # (a module, typed Any when mypy runs without OpenCV installed)
    return module


def supports(images: np.ndarray) -> bool:
    """Whether OpenCV can process this non-empty ``NHWC`` batch as DNIKit does."""
    return (
        images.dtype in _DTYPES
        and 0 < images.shape[3] <= _MAX_CHANNELS
        and images.shape[1] > 0
        and images.shape[2] > 0
    )


def resize(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize`` (``INTER_LINEAR``) of each image to ``width`` x ``height``."""
    cv2: Any = load()  # not None: _image.py calls these only when load() found OpenCV
    n, _, _, c = images.shape
    out = np.empty((n, height, width, c), dtype=images.dtype)
    for i in range(n):
        # A single-channel result comes back 2-d; reshape puts the channel axis back.
        resized = cv2.resize(
            np.ascontiguousarray(images[i]), (width, height), interpolation=cv2.INTER_LINEAR
        )
        out[i] = resized.reshape(height, width, c)
    return out


def rotate(images: np.ndarray, angle: float, fill: Sequence[float]) -> np.ndarray:
    """``cv2.warpAffine`` (bilinear, constant border ``fill`` per channel) of each image by
    ``angle`` degrees counter-clockwise about ``(width/2, height/2)``.

    OpenCV 5.0 samples exactly for 1-, 3- and 4-channel uint8, uint16 and float32 images, but
    rounds sample positions to 1/32 pixel for int16, float64 and 2-channel images (an error of
    up to 1/32 of the local value range); DNIKit's numbers have that error, so these do too.
    Images of more than 4 channels are rotated 4 channels at a time (OpenCV's limit for a
    per-channel border), each group as exactly as OpenCV samples it: not DNIKit's numbers there.
    """
    cv2: Any = load()  # not None: _image.py calls these only when load() found OpenCV
    n, h, w, c = images.shape
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    out = np.empty_like(images, order="C")
    groups = [(k, min(c, k + _BORDER_CHANNELS)) for k in range(0, c, _BORDER_CHANNELS)]
    borders = [tuple(fill[a:b]) + (0.0,) * (_BORDER_CHANNELS - (b - a)) for a, b in groups]
    for i in range(n):
        for (a, b), border in zip(groups, borders):
            part = images[i] if b - a == c else images[i, :, :, a:b]
            rotated = cv2.warpAffine(
                np.ascontiguousarray(part),
                matrix,
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=border,
            )
            out[i, :, :, a:b] = rotated.reshape(h, w, b - a)
    return out


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur`` of each image with automatic kernel size and OpenCV's default
    (reflect-101) border."""
    cv2: Any = load()  # not None: _image.py calls these only when load() found OpenCV
    n, h, w, c = images.shape
    out = np.empty_like(images, order="C")
    for i in range(n):
        blurred = cv2.GaussianBlur(np.ascontiguousarray(images[i]), (0, 0), sigma, sigmaY=sigma)
        out[i] = blurred.reshape(h, w, c)
    return out


def lookup(data: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[data]`` for a non-empty uint8 batch ``data`` and a 256-entry uint8 ``table``."""
    flat = np.ascontiguousarray(data).reshape(data.shape[0], -1)
    cv2: Any = load()  # not None: _image.py calls this only when load() found OpenCV
    return cast(np.ndarray, cv2.LUT(flat, table).reshape(data.shape))
