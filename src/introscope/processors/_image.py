"""Image processors: resize, rotate, Gaussian blur, gamma contrast.

Each works on batches of images in ``NHWC`` or ``NCHW`` layout. When OpenCV (``cv2``, the
``image`` extra) imports, the stages call it as DNIKit 2.0 does and give DNIKit's numbers
exactly, with one exception: ``ImageRotationProcessor`` on images of more than 4 channels.
It rotates those 4 channels at a time (OpenCV's limit for a per-channel fill), so each channel
comes out exact, equal to rotating it alone (for a last group of 2 channels, as of a 6-channel
image, OpenCV's 1/32-pixel rounding applies), where DNIKit's numbers, from OpenCV's 1/32-pixel
path, differ by a few levels (up to about 5 of 255); and ``cval`` fills channels past the fourth
as given, where DNIKit repeats its first four values. Otherwise, and for what OpenCV cannot take
(int8/int32/int64/float16/bool images, more than 128 channels), they use numpy/scipy kernels
that follow OpenCV's rules computed exactly in floating point (within one 8-bit level of OpenCV,
which works in fixed point). Integer images are rounded and clipped back to their dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TypeAlias, cast

import numpy as np

from introscope.base._image_producer import ImageFormat
from introscope.exceptions import IntroscopeError, IntroscopeValueError, MissingDependencyError
from introscope.typing import OneManyOrNone

from . import _image_cv
from ._base import Processor

__all__ = [
    "ImageResizer",
    "ImageRotationProcessor",
    "ImageGaussianBlurProcessor",
    "ImageGammaContrastProcessor",
]


#: Which kernels the stages use: "auto" (OpenCV when ``cv2`` imports, else numpy), "opencv"
#: (an error without OpenCV) or "numpy". Tests switch it to run both paths on the same inputs.
BACKEND = "auto"


def _opencv_selected() -> bool:
    """Whether :data:`BACKEND` selects OpenCV and it is importable."""
    if BACKEND == "numpy":
        return False
    if BACKEND not in ("auto", "opencv"):
        raise IntroscopeValueError(
            f"image BACKEND must be 'auto', 'opencv' or 'numpy', got {BACKEND!r}"
        )
    if _image_cv.load() is None:
        if BACKEND == "opencv":
            raise MissingDependencyError("cv2", "image", "the OpenCV image kernels")
        return False
    return True


def _use_opencv(images: np.ndarray) -> bool:
    """Whether to process this ``NHWC`` batch with OpenCV: selected, and it takes the dtype and
    channel count (otherwise the numpy kernels do the work)."""
    return _opencv_selected() and _image_cv.supports(images)


def _check_images(stage: str, name: str, data: np.ndarray, layout: ImageFormat | None) -> None:
    if data.ndim != 4:
        raise IntroscopeError(
            f"{stage}: field {name!r} has shape {data.shape}; images must be 4-d "
            f"(batch, height, width, channels) or (batch, channels, height, width)"
        )
    if layout is not None and 0 in _to_nhwc(data, layout).shape[1:3]:
        raise IntroscopeError(
            f"{stage}: field {name!r} has shape {data.shape}; images in {layout.name} layout "
            f"must have a height and width of at least 1"
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
        result = np.rint(result, out=result if result.flags.writeable else None)
        return np.clip(result, info.min, info.max, out=result).astype(dtype)
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


def _lerp_axis(images: np.ndarray, size: int, axis: int, dtype: type) -> np.ndarray:
    """Bilinear resampling of ``images`` to ``size`` along ``axis`` (1 or 2 of NHWC), as floats."""
    i0, i1, weight = _linear_taps(images.shape[axis], size)
    weight = weight.astype(dtype).reshape((size,) + (1,) * (3 - axis))
    # Gather in the input dtype, convert only what is gathered; then low += (high - low) * w
    # in place (np.take copies, so astype(copy=False) never aliases the input).
    low: np.ndarray = np.take(images, i0, axis=axis).astype(dtype, copy=False)
    high: np.ndarray = np.take(images, i1, axis=axis).astype(dtype, copy=False)
    high -= low
    high *= weight
    low += high
    return low


def _resize_numpy(images: np.ndarray, width: int, height: int) -> np.ndarray:
    n, h, w, c = images.shape
    dtype = _work_dtype(images.dtype)
    # Resample first along the axis that leaves the smaller intermediate; skip unchanged axes.
    passes = [(1, height), (2, width)] if height * w <= h * width else [(2, width), (1, height)]
    out = images
    for axis, size in passes:
        if out.shape[axis] != size:
            out = _lerp_axis(out, size, axis, dtype)
    return _cast_like(out.astype(dtype, copy=False), images.dtype)


class ImageResizer(Processor):
    """Resizes images to ``size = (width, height)`` with bilinear interpolation (aspect ratio is
    not kept), OpenCV's ``INTER_LINEAR``.

    Args:
        pixel_format: layout of each image, ``ImageFormat.HWC`` or ``ImageFormat.CHW``
            (also reachable as ``ImageResizer.Format``).
        size: ``(width, height)`` in pixels.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import ImageResizer
        >>> images = Batch({"images": np.zeros((2, 4, 6, 3), dtype=np.uint8)})  # 2 HWC images
        >>> resizer = ImageResizer(pixel_format=ImageResizer.Format.HWC, size=(3, 2))
        >>> out = peek_first_batch(pipeline(producer_from_batches(images), resizer), batch_size=2)
        >>> out.fields["images"].shape
        (2, 2, 3, 3)
    """

    Format: TypeAlias = ImageFormat
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
            raise IntroscopeValueError(f"ImageResizer: size must be (width, height), got {size!r}")
        for what, value in (("width (size[0])", size[0]), ("height (size[1])", size[1])):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise IntroscopeValueError(
                    f"ImageResizer: {what} must be a positive int, got {value!r}"
                )
        self.size = (int(size[0]), int(size[1]))
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageResizer", name, array, self.pixel_format)
        images = _to_nhwc(array, self.pixel_format)
        width, height = self.size
        if images.shape[1:3] == (height, width):
            return array.copy()
        if _use_opencv(images):
            out = _image_cv.resize(images, width, height)
        else:
            out = _resize_numpy(images, width, height)
        return _from_nhwc(out, self.pixel_format)


def _fill_values(cval: Sequence[float], channels: int, dtype: np.dtype) -> np.ndarray:
    """Per-channel fill (0 past the end of ``cval``), saturated to ``dtype`` as OpenCV does."""
    fill = np.zeros(channels, dtype=np.float64)
    k = min(channels, len(cval))
    fill[:k] = cval[:k]
    return _cast_like(fill, dtype).astype(np.float64) if dtype != np.bool_ else fill


@functools.lru_cache(maxsize=8)
def _rotation_matrix(h: int, w: int, angle: float, dtype: type) -> object:
    """Sparse (h*w, (h+2)*(w+2)) bilinear weights: output pixel <- its 4 source taps in the
    image framed by one pixel of fill value (so OpenCV's constant border, which blends the fill
    into edge pixels, needs no masks)."""
    from scipy import sparse

    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    cx, cy = w / 2, h / 2
    # Inverse map: output pixel (x, y) samples the source at the point rotated by -angle
    # (image y points down, so counter-clockwise on screen flips the sign of sin).
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = (cos * (xs - cx) - sin * (ys - cy) + cx).ravel()
    src_y = (sin * (xs - cx) + cos * (ys - cy) + cy).ravel()
    x0, y0 = np.floor(src_x), np.floor(src_y)
    fx, fy = src_x - x0, src_y - y0
    cols = [np.clip(x0 + dx, -1, w).astype(np.intp) + 1 for dx in (0, 1)]
    rows = [(np.clip(y0 + dy, -1, h).astype(np.intp) + 1) * (w + 2) for dy in (0, 1)]
    taps = [
        (rows[j] + cols[i], (fx if i else 1 - fx) * (fy if j else 1 - fy))
        for j in (0, 1)
        for i in (0, 1)
    ]
    pixel = np.tile(np.arange(h * w), 4)
    index = np.concatenate([t[0] for t in taps])
    weight: np.ndarray = np.concatenate([t[1] for t in taps]).astype(dtype)
    # Coinciding taps (clamped to the frame) are summed by the CSR conversion.
    return sparse.csr_matrix((weight, (pixel, index)), shape=(h * w, (h + 2) * (w + 2)))


def _rotate_numpy(images: np.ndarray, angle: float, cval: Sequence[float]) -> np.ndarray:
    n, h, w, c = images.shape
    dtype = _work_dtype(images.dtype)
    # Pixels as rows, (image, channel) as columns: one sparse product moves whole rows.
    framed = np.empty((h + 2, w + 2, n, c), dtype=dtype)
    framed[...] = _fill_values(cval, c, images.dtype)
    framed[1:-1, 1:-1] = np.transpose(images, (1, 2, 0, 3))
    out = _rotation_matrix(h, w, angle, dtype) @ framed.reshape((h + 2) * (w + 2), n * c)
    out = np.ascontiguousarray(np.transpose(out.reshape(h, w, n, c), (2, 0, 1, 3)))
    return _cast_like(out, images.dtype)


class ImageRotationProcessor(Processor):
    """Rotates images by ``angle`` degrees counter-clockwise about ``(width/2, height/2)``
    (OpenCV's centre convention), bilinear, filling uncovered pixels with ``cval``.

    Args:
        angle: rotation in degrees; positive is counter-clockwise.
        pixel_format: layout of each image.
        cval: fill value per channel (channels beyond its length are filled with 0).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import ImageRotationProcessor
        >>> image = np.zeros((1, 4, 4, 1), dtype=np.float32)
        >>> image[0, 1, 3, 0] = 1.0  # row 1, column 3: right of the centre (2, 2), above it
        >>> rotate = ImageRotationProcessor(90, cval=[0])
        >>> out = peek_first_batch(pipeline(producer_from_batches(Batch({"x": image})), rotate), 1)
        >>> np.argwhere(out.fields["x"][0, ..., 0] == 1.0).tolist()  # now above and left of it
        [[1, 1]]
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
            raise IntroscopeValueError(
                f"ImageRotationProcessor: angle must be finite, got {angle!r}"
            )
        self.angle = float(angle)
        self.pixel_format = _check_layout("ImageRotationProcessor", pixel_format)
        self.cval = tuple(float(c) for c in np.atleast_1d(cval))
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageRotationProcessor", name, array, self.pixel_format)
        images = _to_nhwc(array, self.pixel_format)
        if _use_opencv(images):
            fill = _fill_values(self.cval, images.shape[3], images.dtype)
            out = _image_cv.rotate(images, self.angle, tuple(fill.tolist()))
        else:
            out = _rotate_numpy(images, self.angle, self.cval)
        return _from_nhwc(out, self.pixel_format)


def _gaussian_kernel(sigma: float, eight_bit: bool) -> np.ndarray:
    """OpenCV's Gaussian kernel for ``sigma``; for 8-bit images also its 8-bit fixed point."""
    # OpenCV's automatic kernel size: radius 3 sigma for 8-bit images, 4 sigma otherwise.
    size = int(round(sigma * (3 if eight_bit else 4) * 2 + 1)) | 1
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    if not eight_bit:
        return cast(np.ndarray, kernel)
    # OpenCV blurs 8-bit images with weights in 1/256 steps, rounded from the outside in with
    # the rounding error carried inward, the centre taking what is left so they sum to one.
    # Applying the same weights exactly matches it but for rare ties.
    fixed, carry = np.empty(size), 0.0
    for i in range(size // 2):
        scaled = kernel[i] * 256 + carry
        fixed[i] = fixed[size - 1 - i] = np.rint(scaled)
        carry = scaled - fixed[i]
    fixed[size // 2] = 256 - 2 * fixed[: size // 2].sum()
    return fixed / 256


def _reflect_101(index: np.ndarray, length: int) -> np.ndarray:
    """OpenCV's BORDER_REFLECT_101 (mirror without repeating the edge), for any overhang."""
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)


def _correlate_axis1(data: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``data`` (batch, length, k) correlated with ``kernel`` along axis 1, reflect-101 border.

    The filter is a banded matrix applied block by block (rows of the band times the window of
    inputs they touch), so BLAS does the arithmetic.
    """
    length = data.shape[1]
    radius = len(kernel) // 2
    block = max(32, 2 * radius)
    out = np.empty_like(data)
    taps = np.arange(len(kernel)) - radius
    for start in range(0, length, block):
        stop = min(length, start + block)
        source = _reflect_101(np.arange(start, stop)[:, None] + taps, length)
        low, high = int(source.min()), int(source.max()) + 1
        band = np.zeros((stop - start, high - low))
        np.add.at(band, (np.arange(stop - start)[:, None], source - low), kernel)
        np.matmul(band.astype(data.dtype), data[:, low:high], out=out[:, start:stop])
    return out


def _blur_numpy(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import correlate1d

    n, h, w, c = images.shape
    dtype = _work_dtype(images.dtype)
    kernel = _gaussian_kernel(sigma, images.dtype == np.uint8)
    # Height: banded matmul along axis 1 of (n, h, w*c). Width: scipy's line filter along
    # axis 2 ("mirror" is reflect-101); both faster here than transposing for a second matmul.
    out = _correlate_axis1(images.astype(dtype).reshape(n, h, w * c), kernel)
    out = correlate1d(out.reshape(n, h, w, c), kernel.astype(dtype), axis=2, mode="mirror")
    return _cast_like(out, images.dtype)


class ImageGaussianBlurProcessor(Processor):
    """Blurs images with a Gaussian of standard deviation ``sigma`` pixels (0: no blur).

    The kernel size, the mirrored border and (for uint8 images) the 8-bit weights follow
    OpenCV's ``GaussianBlur`` defaults.

    Args:
        sigma: blur strength; 0 to 3 is typical.
        pixel_format: layout of each image (an introscope addition; DNIKit assumes the
            blur axes are the first two of each image).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import ImageGaussianBlurProcessor
        >>> image = np.zeros((1, 5, 5, 1), dtype=np.float32)
        >>> image[0, 2, 2, 0] = 1.0
        >>> blur = ImageGaussianBlurProcessor(sigma=1.0)
        >>> out = peek_first_batch(pipeline(producer_from_batches(Batch({"x": image})), blur), 1)
        >>> out.fields["x"][0, 2, :, 0].round(3)  # middle row: the point spread out
        array([0.043, 0.098, 0.159, 0.098, 0.043], dtype=float32)
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
            raise IntroscopeValueError(
                f"ImageGaussianBlurProcessor: sigma must be >= 0, got {sigma!r}"
            )
        self.sigma = float(sigma)
        self.pixel_format = _check_layout("ImageGaussianBlurProcessor", pixel_format)
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageGaussianBlurProcessor", name, array, self.pixel_format)
        if self.sigma == 0:
            return array.copy()
        images = _to_nhwc(array, self.pixel_format)
        if _use_opencv(images):
            out = _image_cv.gaussian_blur(images, self.sigma)
        else:
            out = _blur_numpy(images, self.sigma)
        return _from_nhwc(out, self.pixel_format)


class ImageGammaContrastProcessor(Processor):
    """Gamma-corrects images with values in [0, 255]: ``floor(255 * (I / 255) ** gamma)``
    per pixel, with ``I`` truncated to an integer first (DNIKit's 8-bit lookup table).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import ImageGammaContrastProcessor
        >>> image = np.array([0, 64, 128, 255], dtype=np.uint8).reshape(1, 1, 4, 1)  # one 1x4 image
        >>> darker = ImageGammaContrastProcessor(gamma=2.0)
        >>> out = peek_first_batch(pipeline(producer_from_batches(Batch({"x": image})), darker), 1)
        >>> out.fields["x"].ravel()
        array([  0,  16,  64, 255], dtype=uint8)
    """

    _needs_numbers = True

    def __init__(self, gamma: float = 1.0, *, fields: OneManyOrNone[str] = None) -> None:
        if not math.isfinite(gamma) or gamma < 0:
            raise IntroscopeValueError(
                f"ImageGammaContrastProcessor: gamma must be >= 0, got {gamma!r}"
            )
        self.gamma = float(gamma)
        self._table = ((np.arange(256) / 255.0) ** self.gamma * 255).astype(np.uint8)
        super().__init__(lambda a: a, fields=fields)

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        _check_images("ImageGammaContrastProcessor", name, array, None)
        _check_0_255("ImageGammaContrastProcessor", name, array)
        pixels = array.astype(np.uint8, copy=False)
        if array.size and _opencv_selected():
            out = _image_cv.lookup(pixels, self._table)
        else:
            out = self._table[pixels]
        return out.astype(array.dtype, copy=False)
