"""Image processors: resize, rotate, Gaussian blur, gamma contrast (numpy/scipy, no OpenCV).

Each works on batches of images in ``NHWC`` or ``NCHW`` layout, on any channel count and
dtype; integer images are rounded and clipped back to their dtype. Resize and rotation use
OpenCV's bilinear conventions (what DNIKit calls), computed exactly in floating point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from introscope.base._image_producer import ImageFormat
from introscope.exceptions import IntroscopeError
from introscope.typing import OneManyOrNone

from ._base import Processor

__all__ = [
    "ImageResizer",
    "ImageRotationProcessor",
    "ImageGaussianBlurProcessor",
    "ImageGammaContrastProcessor",
]


def _check_images(stage: str, name: str, data: np.ndarray) -> None:
    if data.ndim != 4:
        raise IntroscopeError(
            f"{stage}: field {name!r} has shape {data.shape}; images must be 4-d "
            f"(batch, height, width, channels) or (batch, channels, height, width)"
        )


def _check_0_255(stage: str, name: str, data: np.ndarray) -> None:
    if data.size and not (data.min() >= 0 and data.max() <= 255):
        raise IntroscopeError(
            f"{stage}: field {name!r} has values in [{data.min()}, {data.max()}]; "
            f"pixel values must lie in [0, 255] (NaN is not allowed)"
        )


def _to_nhwc(data: np.ndarray, layout: ImageFormat) -> np.ndarray:
    return data if layout is ImageFormat.HWC else np.transpose(data, (0, 2, 3, 1))


def _from_nhwc(data: np.ndarray, layout: ImageFormat) -> np.ndarray:
    return data if layout is ImageFormat.HWC else np.transpose(data, (0, 3, 1, 2))


def _work_dtype(dtype: np.dtype) -> type:
    return (
        np.float64
        if dtype in (np.float64, np.int32, np.int64, np.uint32, np.uint64)
        else np.float32
    )


def _cast_like(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``result`` in ``dtype``: integers rounded and clipped to the dtype's range."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return result >= 0.5
    return result.astype(dtype, copy=False)


def _check_layout(stage: str, pixel_format: object) -> ImageFormat:
    if not isinstance(pixel_format, ImageFormat):
        raise TypeError(f"{stage}: pixel_format must be an ImageFormat, got {pixel_format!r}")
    return pixel_format


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for each of ``dst`` outputs (OpenCV's
    half-pixel mapping, clamped at the borders)."""
    position = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    i0 = np.floor(position).astype(np.intp)
    weight = position - i0
    low, high = i0 < 0, i0 >= src - 1
    i0[low], weight[low] = 0, 0.0
    i0[high], weight[high] = src - 1, 0.0
    return i0, np.minimum(i0 + 1, src - 1), weight


class ImageResizer(Processor):
    """Resizes images to ``size = (width, height)`` with bilinear interpolation (aspect ratio is
    not kept), like OpenCV's ``INTER_LINEAR``.

    Args:
        pixel_format: layout of each image, ``ImageFormat.HWC`` or ``ImageFormat.CHW``
            (also reachable as ``ImageResizer.Format``).
        size: ``(width, height)`` in pixels.
    """

    Format = ImageFormat
    _needs_numbers = True

    def __init__(
        self,
        *,
        pixel_format: ImageFormat,
        size: tuple[int, int],
        fields: OneManyOrNone[str] = None,
    ) -> None:
        self.pixel_format = _check_layout("ImageResizer", pixel_format)
        if len(size) != 2:
            raise ValueError(f"ImageResizer: size must be (width, height), got {size!r}")
        for what, value in (("width (size[0])", size[0]), ("height (size[1])", size[1])):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"ImageResizer: {what} must be a positive int, got {value!r}")
        self.size = (int(size[0]), int(size[1]))
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageResizer", name, array)
        images = _to_nhwc(array, self.pixel_format)
        width, height = self.size
        h, w = images.shape[1:3]
        if (h, w) == (height, width):
            return array.copy()
        dtype = _work_dtype(array.dtype)
        y0, y1, wy = _linear_taps(h, height)
        x0, x1, wx = _linear_taps(w, width)
        # Gather in the input dtype, convert only what is gathered (fewer bytes to touch).
        top = np.take(images, y0, axis=1).astype(dtype)
        rows = top + (np.take(images, y1, axis=1) - top) * wy.astype(dtype)[None, :, None, None]
        left = np.take(rows, x0, axis=2)
        out = left + (np.take(rows, x1, axis=2) - left) * wx.astype(dtype)[None, None, :, None]
        return _from_nhwc(_cast_like(out, array.dtype), self.pixel_format)


class ImageRotationProcessor(Processor):
    """Rotates images by ``angle`` degrees counter-clockwise about ``(width/2, height/2)``
    (OpenCV's centre convention), bilinear, filling uncovered pixels with ``cval``.

    Args:
        angle: rotation in degrees; positive is counter-clockwise.
        pixel_format: layout of each image.
        cval: fill value per channel (channels beyond its length are filled with 0).
    """

    _needs_numbers = True

    def __init__(
        self,
        angle: float = 0.0,
        pixel_format: ImageFormat = ImageFormat.HWC,
        *,
        cval: Sequence[float] = (0, 0, 0),
        fields: OneManyOrNone[str] = None,
    ) -> None:
        if not math.isfinite(angle):
            raise ValueError(f"ImageRotationProcessor: angle must be finite, got {angle!r}")
        self.angle = float(angle)
        self.pixel_format = _check_layout("ImageRotationProcessor", pixel_format)
        self.cval = tuple(float(c) for c in np.atleast_1d(cval))
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageRotationProcessor", name, array)
        images = _to_nhwc(array, self.pixel_format)
        n, h, w, c = images.shape
        theta = math.radians(self.angle)
        cos, sin = math.cos(theta), math.sin(theta)
        cx, cy = w / 2, h / 2
        # Inverse map: output pixel (x, y) samples the source at the point rotated by -angle
        # (image y points down, so counter-clockwise on screen flips the sign of sin).
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        src_x = cos * (xs - cx) - sin * (ys - cy) + cx
        src_y = sin * (xs - cx) + cos * (ys - cy) + cy
        dtype = _work_dtype(array.dtype)
        fill = np.zeros(c, dtype=dtype)
        k = min(c, len(self.cval))
        fill[:k] = self.cval[:k]
        # A one-pixel frame of the fill value: taps outside the image land on it, so OpenCV's
        # constant border (blended into edge pixels) needs no masks.
        framed = np.empty((n, h + 2, w + 2, c), dtype=dtype)
        framed[...] = fill
        framed[:, 1:-1, 1:-1] = images
        flat = framed.reshape(n, (h + 2) * (w + 2), c)
        x0, y0 = np.floor(src_x), np.floor(src_y)
        fx, fy = (src_x - x0).astype(dtype).ravel(), (src_y - y0).astype(dtype).ravel()
        cols = [np.clip(x0 + dx, -1, w).astype(np.intp) + 1 for dx in (0, 1)]
        rows = [(np.clip(y0 + dy, -1, h).astype(np.intp) + 1) * (w + 2) for dy in (0, 1)]
        fx, fy = fx[None, :, None], fy[None, :, None]
        top = np.take(flat, (rows[0] + cols[0]).ravel(), axis=1)
        top += (np.take(flat, (rows[0] + cols[1]).ravel(), axis=1) - top) * fx
        bottom = np.take(flat, (rows[1] + cols[0]).ravel(), axis=1)
        bottom += (np.take(flat, (rows[1] + cols[1]).ravel(), axis=1) - bottom) * fx
        out = (top + (bottom - top) * fy).reshape(n, h, w, c)
        return _from_nhwc(_cast_like(out, array.dtype), self.pixel_format)


def _gaussian_kernel(sigma: float, integer_data: bool) -> np.ndarray:
    # OpenCV's automatic kernel size: radius 3 sigma for 8-bit images, 4 sigma otherwise.
    size = int(round(sigma * (3 if integer_data else 4) * 2 + 1)) | 1
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


class ImageGaussianBlurProcessor(Processor):
    """Blurs images with a Gaussian of standard deviation ``sigma`` pixels (0: no blur).

    The kernel size and the mirrored border follow OpenCV's ``GaussianBlur`` defaults.

    Args:
        sigma: blur strength; 0 to 3 is typical.
        pixel_format: layout of each image (an introscope addition; DNIKit assumes the
            blur axes are the first two of each image).
    """

    _needs_numbers = True

    def __init__(
        self,
        sigma: float = 0.0,
        *,
        fields: OneManyOrNone[str] = None,
        pixel_format: ImageFormat = ImageFormat.HWC,
    ) -> None:
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"ImageGaussianBlurProcessor: sigma must be >= 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.pixel_format = _check_layout("ImageGaussianBlurProcessor", pixel_format)
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageGaussianBlurProcessor", name, array)
        if self.sigma == 0:
            return array.copy()
        from scipy.ndimage import correlate1d

        kernel = _gaussian_kernel(self.sigma, array.dtype == np.uint8)
        axes = (1, 2) if self.pixel_format is ImageFormat.HWC else (2, 3)
        work = array.astype(_work_dtype(array.dtype), copy=False)
        for axis in axes:
            # "mirror" reflects without repeating the edge pixel, like OpenCV's default border.
            work = correlate1d(work, kernel.astype(work.dtype), axis=axis, mode="mirror")
        return _cast_like(work, array.dtype)


class ImageGammaContrastProcessor(Processor):
    """Gamma-corrects images with values in [0, 255]: ``floor(255 * (I / 255) ** gamma)``
    per pixel, with ``I`` truncated to an integer first (DNIKit's 8-bit lookup table)."""

    _needs_numbers = True

    def __init__(self, gamma: float = 1.0, *, fields: OneManyOrNone[str] = None) -> None:
        if not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"ImageGammaContrastProcessor: gamma must be >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self._table = ((np.arange(256) / 255.0) ** self.gamma * 255).astype(np.uint8)
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageGammaContrastProcessor", name, array)
        _check_0_255("ImageGammaContrastProcessor", name, array)
        return self._table[array.astype(np.uint8)].astype(array.dtype)
