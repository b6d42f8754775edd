"""The image stages' two kernels (OpenCV, numpy/scipy) agree, and the OpenCV path is DNIKit's."""

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

import introscope.processors._image as image_module
from introscope.base import Batch, ImageFormat
from introscope.exceptions import MissingDependencyError
from introscope.processors import (
    ImageGammaContrastProcessor,
    ImageGaussianBlurProcessor,
    ImageResizer,
    ImageRotationProcessor,
    _image_cv,
)

needs_cv2 = pytest.mark.skipif(_image_cv.load() is None, reason="OpenCV (cv2) not installed")


def run(stage, images, backend, monkeypatch):
    monkeypatch.setattr(image_module, "BACKEND", backend)
    return stage._get_batch_processor()(Batch({"img": images})).fields["img"]


def both(stage, images, monkeypatch):
    return run(stage, images, "opencv", monkeypatch), run(stage, images, "numpy", monkeypatch)


def assert_agree(cv, ref, dtype, what, coarse_range=None):
    assert cv.shape == ref.shape and cv.dtype == ref.dtype == dtype, what
    if coarse_range is not None:
        # OpenCV rounds the sample position to 1/32 pixel: off by up to (|dI/dx| + |dI/dy|)/64.
        diff = np.abs(cv.astype(np.float64) - ref.astype(np.float64))
        assert diff.max(initial=0) <= coarse_range / 32 + 1, what
    elif np.issubdtype(dtype, np.integer):
        # OpenCV works in fixed point on integer images: at most one level off the exact value.
        diff = np.abs(cv.astype(np.int64) - ref.astype(np.int64))
        assert diff.max(initial=0) <= 1, what
        assert np.mean(diff) < 0.2, what
    else:
        np.testing.assert_allclose(cv, ref, rtol=1e-5, atol=1e-3, err_msg=what)


def images(rng, dtype, shape):
    return (rng.random(shape) * 255).astype(dtype)


DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64]
SHAPES = [(2, 7, 9, 3), (1, 1, 5, 1), (2, 2, 3, 4), (1, 6, 6, 5), (3, 12, 10, 2)]
STAGES = {
    "up": lambda f: ImageResizer(pixel_format=f, size=(13, 11)),
    "down": lambda f: ImageResizer(pixel_format=f, size=(4, 3)),
    "mixed": lambda f: ImageResizer(pixel_format=f, size=(1, 17)),
    "rot33": lambda f: ImageRotationProcessor(33.0, f, cval=(10, 20, 30, 40, 50)),
    "rot-90": lambda f: ImageRotationProcessor(-90.0, f),
    "rot200": lambda f: ImageRotationProcessor(200.0, f, cval=(7.0,)),
    "blur0.5": lambda f: ImageGaussianBlurProcessor(0.5, pixel_format=f),
    "blur1.3": lambda f: ImageGaussianBlurProcessor(1.3, pixel_format=f),
    "blur3": lambda f: ImageGaussianBlurProcessor(3.0, pixel_format=f),
    "gamma": lambda f: ImageGammaContrastProcessor(0.7),
}


@needs_cv2
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_opencv_and_numpy_paths_agree(dtype, rng, monkeypatch):
    for shape in SHAPES:
        data = images(rng, dtype, shape)
        for tag, make in STAGES.items():
            for layout in (ImageFormat.HWC, ImageFormat.CHW):
                x = (
                    data
                    if layout is ImageFormat.HWC
                    else np.ascontiguousarray(data.transpose(0, 3, 1, 2))
                )
                cv, ref = both(make(layout), x, monkeypatch)
                coarse = tag.startswith("rot") and (
                    dtype in (np.int16, np.float64) or shape[3] == 2
                )
                span = float(data.max()) - float(data.min()) if coarse else None
                assert_agree(cv, ref, np.dtype(dtype), f"{tag} {layout.name} {shape}", span)


@needs_cv2
def test_opencv_path_keeps_the_layout_fixes(rng, monkeypatch):
    monkeypatch.setattr(image_module, "BACKEND", "opencv")
    hwc = images(rng, np.uint8, (2, 6, 9, 3))
    chw = np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))
    for make in STAGES.values():
        a = make(ImageFormat.HWC)._get_batch_processor()(Batch({"x": hwc})).fields["x"]
        b = make(ImageFormat.CHW)._get_batch_processor()(Batch({"x": chw})).fields["x"]
        # CHW keeps height and width in place and blurs/rotates the spatial axes only.
        np.testing.assert_array_equal(b.transpose(0, 2, 3, 1), a)


@needs_cv2
def test_rotation_fill_per_channel_beyond_four_channels(monkeypatch):
    x = np.zeros((1, 9, 9, 6), dtype=np.float32)
    cval = (1, 2, 3, 4, 5)
    for backend in ("opencv", "numpy"):
        out = run(ImageRotationProcessor(45.0, cval=cval), x, backend, monkeypatch)
        np.testing.assert_array_equal(out[0, 0, 0], [1, 2, 3, 4, 5, 0], err_msg=backend)
    # OpenCV saturates the fill to the dtype; the numpy path does the same.
    u8 = np.zeros((1, 9, 9, 1), dtype=np.uint8)
    for backend in ("opencv", "numpy"):
        out = run(ImageRotationProcessor(45.0, cval=(300,)), u8, backend, monkeypatch)
        assert out[0, 0, 0, 0] == 255, backend


@needs_cv2
def test_unsupported_dtypes_and_channels_use_numpy(rng, monkeypatch):
    stage = ImageResizer(pixel_format=ImageFormat.HWC, size=(5, 4))
    for dtype in (np.int8, np.int32, np.int64, np.float16):
        x = (rng.random((2, 7, 9, 3)) * 100).astype(dtype)
        cv, ref = both(stage, x, monkeypatch)
        np.testing.assert_array_equal(cv, ref)
        assert cv.dtype == dtype
    many = images(rng, np.uint8, (1, 5, 6, 130))  # over the 128 channels cv2 takes
    cv, ref = both(ImageGaussianBlurProcessor(1.0), many, monkeypatch)
    np.testing.assert_array_equal(cv, ref)


def test_backend_switch(monkeypatch):
    x = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    stage = ImageResizer(pixel_format=ImageFormat.HWC, size=(2, 2))
    with pytest.raises(ValueError, match="BACKEND"):
        run(stage, x, "fast", monkeypatch)
    monkeypatch.setattr(_image_cv, "load", lambda: None)
    # Without OpenCV, "auto" falls back to numpy and "opencv" names the extra to install.
    assert run(stage, x, "auto", monkeypatch).shape == (1, 2, 2, 3)
    with pytest.raises(MissingDependencyError, match="image"):
        run(stage, x, "opencv", monkeypatch)


def test_zero_sized_images_are_an_error(monkeypatch):
    from introscope.exceptions import IntroscopeError

    x = np.zeros((1, 0, 4, 3), dtype=np.uint8)
    for backend in ("auto", "numpy"):
        with pytest.raises(IntroscopeError, match="height and width of at least 1"):
            run(ImageRotationProcessor(10.0), x, backend, monkeypatch)


_DNIKIT_SCRIPT = """
from dnikit.base import Batch, ImageFormat
from dnikit.processors import *
stages = {
    "up": ImageResizer(pixel_format=ImageFormat.HWC, size=(13, 11)),
    "down": ImageResizer(pixel_format=ImageFormat.HWC, size=(4, 3)),
    "rot": ImageRotationProcessor(angle=33.0, cval=(10, 20, 30)),
    "rot4": ImageRotationProcessor(angle=-71.5, cval=(1, 2, 3, 4)),
    "blur": ImageGaussianBlurProcessor(sigma=1.3),
    "blur3": ImageGaussianBlurProcessor(sigma=3.0),
    "gamma": ImageGammaContrastProcessor(gamma=0.7),
}
result = {
    name + tag: stage._get_batch_processor()(Batch({"x": arrays[name]})).fields["x"]
    .astype(float).tolist()
    for name in arrays for tag, stage in stages.items()
}
"""


@needs_cv2
def test_opencv_path_equals_dnikit_exactly(tmp_path, rng, monkeypatch):
    arrays = {
        "u8": rng.integers(0, 256, (2, 7, 9, 3)).astype(np.uint8),
        "u8c4": rng.integers(0, 256, (2, 8, 8, 4)).astype(np.uint8),
        "u16": rng.integers(0, 256, (2, 7, 9, 3)).astype(np.uint16),
        "f32": (rng.random((2, 7, 9, 3)) * 255).astype(np.float32),
        "f64": rng.random((2, 9, 7, 2)) * 255,
    }
    ref = run_dnikit(_DNIKIT_SCRIPT, arrays, tmp_path)
    stages = {
        "up": ImageResizer(pixel_format=ImageFormat.HWC, size=(13, 11)),
        "down": ImageResizer(pixel_format=ImageFormat.HWC, size=(4, 3)),
        "rot": ImageRotationProcessor(angle=33.0, cval=(10, 20, 30)),
        "rot4": ImageRotationProcessor(angle=-71.5, cval=(1, 2, 3, 4)),
        "blur": ImageGaussianBlurProcessor(sigma=1.3),
        "blur3": ImageGaussianBlurProcessor(sigma=3.0),
        "gamma": ImageGammaContrastProcessor(gamma=0.7),
    }
    for name, x in arrays.items():
        for tag, stage in stages.items():
            out = run(stage, x, "opencv", monkeypatch)
            assert out.dtype == x.dtype
            np.testing.assert_array_equal(out, np.array(ref[name + tag]), err_msg=name + tag)
