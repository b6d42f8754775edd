"""ImageResizer, ImageRotationProcessor, ImageGaussianBlurProcessor, ImageGammaContrastProcessor."""

import numpy as np
import pytest

import introscope.processors._image as image_module
from introscope.base import Batch, ImageFormat
from introscope.exceptions import IntroscopeError
from introscope.processors import (
    ImageGammaContrastProcessor,
    ImageGaussianBlurProcessor,
    ImageResizer,
    ImageRotationProcessor,
    _image_cv,
)


@pytest.fixture(autouse=True, params=["opencv", "numpy"])
def backend(request, monkeypatch):
    """Every test here runs on both kernels: OpenCV (DNIKit's) and the numpy fallback."""
    if request.param == "opencv" and _image_cv.load() is None:
        pytest.skip("OpenCV (cv2) not installed")
    monkeypatch.setattr(image_module, "BACKEND", request.param)
    return request.param


def run(stage, images):
    return stage._get_batch_processor()(Batch({"img": images})).fields["img"]


def test_resizer_format_alias_and_shapes():
    assert ImageResizer.Format is ImageFormat
    hwc = np.zeros((2, 6, 8, 3), dtype=np.uint8)
    out = run(ImageResizer(pixel_format=ImageResizer.Format.HWC, size=(5, 4)), hwc)
    assert out.shape == (2, 4, 5, 3) and out.dtype == np.uint8
    chw = np.zeros((2, 3, 6, 8), dtype=np.float32)
    out = run(ImageResizer(pixel_format=ImageFormat.CHW, size=(5, 4)), chw)
    # Height and width stay in place for CHW (DNIKit 2.0 swaps them for non-square sizes).
    assert out.shape == (2, 3, 4, 5) and out.dtype == np.float32


def test_resizer_bilinear_values():
    img = np.array([[0.0, 10.0], [20.0, 30.0]])[None, :, :, None]
    out = run(ImageResizer(pixel_format=ImageFormat.HWC, size=(4, 4)), img)[0, :, :, 0]
    # Half-pixel centres: output x 0..3 samples source x -0.25, 0.25, 0.75, 1.25 (clamped).
    np.testing.assert_allclose(out[0], [0, 2.5, 7.5, 10])
    np.testing.assert_allclose(out[:, 0], [0, 5, 15, 20])
    np.testing.assert_allclose(
        out[1, 1], 0.75 * 0.75 * 0 + 0.75 * 0.25 * 10 + 0.25 * 0.75 * 20 + 0.25 * 0.25 * 30
    )
    # Downscaling 4x4 -> 2x2 averages 2x2 blocks exactly (samples at 0.5, 2.5).
    big = np.arange(16.0).reshape(1, 4, 4, 1)
    small = run(ImageResizer(pixel_format=ImageFormat.HWC, size=(2, 2)), big)[0, :, :, 0]
    np.testing.assert_allclose(small, [[2.5, 4.5], [10.5, 12.5]])
    # Same size is the identity; uint8 rounds.
    u8 = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(
        run(ImageResizer(pixel_format=ImageFormat.HWC, size=(2, 2)), u8), u8
    )


def test_resizer_chw_equals_hwc_path():
    rng = np.random.default_rng(0)
    hwc = rng.random((2, 5, 7, 3))
    a = run(ImageResizer(pixel_format=ImageFormat.HWC, size=(4, 9)), hwc)
    b = run(ImageResizer(pixel_format=ImageFormat.CHW, size=(4, 9)), hwc.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(b.transpose(0, 2, 3, 1), a)


def test_resizer_errors():
    with pytest.raises(ValueError, match="width"):
        ImageResizer(pixel_format=ImageFormat.HWC, size=(0, 3))
    with pytest.raises(ValueError, match="height"):
        ImageResizer(pixel_format=ImageFormat.HWC, size=(3, -1))
    with pytest.raises(TypeError, match="ImageFormat"):
        ImageResizer(pixel_format="HWC", size=(3, 3))
    with pytest.raises(IntroscopeError, match="field 'img' has shape \\(2, 3\\)"):
        run(ImageResizer(pixel_format=ImageFormat.HWC, size=(3, 3)), np.ones((2, 3)))


def test_rotation_90_degrees_is_rot90_shifted_by_opencv_centre():
    img = np.arange(16.0).reshape(1, 4, 4, 1) + 1
    out = run(ImageRotationProcessor(90.0, cval=(-1,)), img)[0, :, :, 0]
    expected = np.rot90(img[0, :, :, 0])  # counter-clockwise
    # The centre (w/2, h/2) = (2, 2) is half a pixel off the image centre: rows move down one.
    np.testing.assert_allclose(out[1:], expected[:-1], atol=1e-12)
    np.testing.assert_allclose(out[0], -1)


def test_rotation_identity_full_turn_and_formats():
    rng = np.random.default_rng(2)
    img = (rng.random((2, 5, 6, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(run(ImageRotationProcessor(0.0), img), img)
    np.testing.assert_array_equal(run(ImageRotationProcessor(360.0), img), img)
    hwc = run(ImageRotationProcessor(25.0, cval=(1, 2, 3)), img)
    chw = run(
        ImageRotationProcessor(25.0, ImageFormat.CHW, cval=(1, 2, 3)), img.transpose(0, 3, 1, 2)
    )
    np.testing.assert_array_equal(chw.transpose(0, 2, 3, 1), hwc)
    # A pixel rotated in from outside takes the per-channel fill value.
    corner = run(ImageRotationProcessor(45.0, cval=(7, 8, 9)), np.zeros((1, 9, 9, 3)))[0, 0, 0]
    np.testing.assert_allclose(corner, [7, 8, 9])


def test_gaussian_blur_values():
    img = np.zeros((1, 15, 15, 1))
    img[0, 7, 7, 0] = 1.0
    out = run(ImageGaussianBlurProcessor(sigma=1.0), img)[0, :, :, 0]
    assert out.sum() == pytest.approx(1.0)
    # Float kernel: size round(8 sigma + 1) | 1 = 9, normalised exp(-d^2 / 2).
    k = np.exp(-((np.arange(9) - 4.0) ** 2) / 2)
    k /= k.sum()
    expected = np.zeros((15, 15))
    expected[3:12, 3:12] = np.outer(k, k)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # The border mirrors without repeating the edge pixel (OpenCV's BORDER_REFLECT_101).
    edge = np.zeros((1, 1, 5, 1))
    edge[0, 0, 1, 0] = 1.0
    row = run(ImageGaussianBlurProcessor(sigma=0.5), edge)[0, 0, :, 0]
    k = np.exp(-((np.arange(5) - 2.0) ** 2) / 0.5)
    k /= k.sum()
    np.testing.assert_allclose(row, [2 * k[3], k[2] + k[4], k[3], k[4], 0], atol=1e-12)
    np.testing.assert_array_equal(run(ImageGaussianBlurProcessor(0.0), img), img)
    flat = np.full((2, 5, 5, 3), 100, dtype=np.uint8)
    np.testing.assert_array_equal(run(ImageGaussianBlurProcessor(2.0), flat), flat)
    with pytest.raises(ValueError, match="sigma"):
        ImageGaussianBlurProcessor(-1.0)


def test_gaussian_blur_chw_blurs_spatial_axes_only():
    rng = np.random.default_rng(3)
    hwc = rng.random((1, 6, 7, 2))
    a = run(ImageGaussianBlurProcessor(1.5), hwc)
    b = run(
        ImageGaussianBlurProcessor(1.5, pixel_format=ImageFormat.CHW), hwc.transpose(0, 3, 1, 2)
    )
    np.testing.assert_allclose(b.transpose(0, 2, 3, 1), a, atol=1e-12)


def test_gamma_contrast_lookup():
    img = np.array([0, 64, 128, 255], dtype=np.uint8).reshape(1, 1, 4, 1)
    out = run(ImageGammaContrastProcessor(gamma=2.0), img)
    expected = np.floor((np.array([0, 64, 128, 255]) / 255.0) ** 2 * 255)
    np.testing.assert_array_equal(out.ravel(), expected)
    assert out.dtype == np.uint8
    # Float pixels are truncated to integers before the lookup, as in DNIKit.
    as_float = run(ImageGammaContrastProcessor(gamma=0.5), img.astype(np.float32) * 0.99 + 0.5)
    assert as_float.dtype == np.float32
    truncated = np.array([0, 63, 127, 252])
    np.testing.assert_array_equal(as_float.ravel(), np.floor(np.sqrt(truncated / 255) * 255))
    np.testing.assert_array_equal(run(ImageGammaContrastProcessor(), img), img)
    with pytest.raises(IntroscopeError, match="field 'img' has values in \\[-1.0, 3.0\\]"):
        run(ImageGammaContrastProcessor(), np.array([-1.0, 3.0]).reshape(1, 1, 2, 1))
    with pytest.raises(IntroscopeError, match="NaN"):
        run(ImageGammaContrastProcessor(), np.array([np.nan, 3.0]).reshape(1, 1, 2, 1))
