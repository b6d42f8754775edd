"""ImageProducer on PNG/BMP files written into tmp_path, ImageFormat and PixelFormat."""

import pathlib

import numpy as np
import pytest

from introscope.base import Batch, ImageFormat, ImageProducer, PixelFormat, pipeline
from introscope.exceptions import IntroscopeError
from introscope.processors import ImageResizer

Image = pytest.importorskip("PIL.Image")


def write(path: pathlib.Path, array: np.ndarray, mode: str | None = None) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return array


@pytest.fixture
def folder(tmp_path, rng):
    images = {}
    for name in ["b.png", "a.png", "sub/c.PNG", "sub/deeper/d.bmp"]:
        images[name] = write(tmp_path / name, rng.integers(0, 256, (5, 4, 3), dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, images


def test_loads_sorted_rgb_images_with_paths(folder):
    root, images = folder
    producer = ImageProducer(root)
    names = [p.relative_to(root.resolve()).as_posix() for p in producer.image_paths]
    assert names == ["a.png", "b.png", "sub/c.PNG", "sub/deeper/d.bmp"]
    batches = list(producer(3))
    assert [b.batch_size for b in batches] == [3, 1]
    stacked = np.concatenate([b.fields["images"] for b in batches])
    assert stacked.shape == (4, 5, 4, 3) and stacked.dtype == np.uint8
    for i, name in enumerate(names):
        np.testing.assert_array_equal(stacked[i], images[name])
    paths = [p for b in batches for p in b.metadata[Batch.StdKeys.PATH]]
    assert paths == list(producer.image_paths)
    assert all(p.is_absolute() for p in paths)
    assert list(batches[0].metadata[Batch.StdKeys.IDENTIFIER]) == paths[:3]
    # Batches are the same on every pass.
    assert list(producer(3))[1] == batches[1]


def test_extensions_recursive_and_field(folder):
    root, images = folder
    only_png = ImageProducer(root, extensions=".png", recursive=False, field="pix")
    assert [p.name for p in only_png.image_paths] == ["a.png", "b.png"]
    batch = next(iter(only_png(8)))
    np.testing.assert_array_equal(batch.fields["pix"][1], images["b.png"])
    assert [p.name for p in ImageProducer(root, extensions=["bmp"]).image_paths] == ["d.bmp"]


def test_gray_alpha_palette_and_16_bit(tmp_path, rng):
    gray = write(tmp_path / "g/x.png", rng.integers(0, 256, (3, 2), dtype=np.uint8))
    batch = next(iter(ImageProducer(tmp_path / "g")(1)))
    assert batch.fields["images"].shape == (1, 3, 2, 1)
    np.testing.assert_array_equal(batch.fields["images"][0, :, :, 0], gray)

    rgba = write(tmp_path / "a/x.png", rng.integers(0, 256, (3, 2, 4), dtype=np.uint8))
    np.testing.assert_array_equal(
        next(iter(ImageProducer(tmp_path / "a")(1))).fields["images"][0], rgba
    )

    palette = Image.fromarray(rng.integers(0, 256, (3, 2, 3), dtype=np.uint8)).convert("P")
    (tmp_path / "p").mkdir()
    palette.save(tmp_path / "p/x.png")
    out = next(iter(ImageProducer(tmp_path / "p")(1))).fields["images"]
    np.testing.assert_array_equal(out[0], np.array(palette.convert("RGB")))

    deep = rng.integers(0, 65536, (3, 2), dtype=np.uint16)
    (tmp_path / "d").mkdir()
    Image.fromarray(deep).save(tmp_path / "d/x.png")
    out = next(iter(ImageProducer(tmp_path / "d")(1))).fields["images"]
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out[0, :, :, 0], deep)


def test_errors_missing_empty_and_mismatched(tmp_path, rng):
    with pytest.raises(NotADirectoryError, match="does not exist"):
        ImageProducer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.md").write_text("x")
    with pytest.raises(IntroscopeError, match="no images with extensions"):
        ImageProducer(tmp_path / "empty")
    write(tmp_path / "mix/a.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    write(tmp_path / "mix/b.png", rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    producer = ImageProducer(tmp_path / "mix")
    with pytest.raises(
        IntroscopeError, match=r"1 of 2 images do not match.*size=\(width, height\)"
    ):
        list(producer(1))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/broken.png").write_bytes(b"not a png")
    with pytest.raises(IntroscopeError, match="cannot read image .*broken.png"):
        list(ImageProducer(tmp_path / "bad")(1))
    with pytest.raises(IntroscopeError, match="batch_size"):
        list(producer(0))


def test_image_producer_feeds_resizer(folder):
    root, _ = folder
    resized = pipeline(
        ImageProducer(root), ImageResizer(pixel_format=ImageFormat.HWC, size=(8, 10))
    )
    batch = next(iter(resized(4)))
    assert batch.fields["images"].shape == (4, 10, 8, 3)
    assert len(batch.metadata[Batch.StdKeys.PATH]) == 4


def test_image_and_pixel_formats():
    img = np.arange(24).reshape(2, 3, 4)  # CHW
    hwc = ImageFormat.CHW.to_hwc(img)
    assert hwc.shape == (3, 4, 2) and hwc[1, 2, 1] == img[1, 1, 2]
    np.testing.assert_array_equal(ImageFormat.CHW.from_hwc(hwc), img)
    assert ImageFormat.HWC.to_hwc(img) is img
    assert ImageFormat.CHW.size_of(img) == (3, 4)
    assert ImageFormat.HWC.value == (0, 1, 2) and ImageFormat.CHW.value == (2, 1, 0)
    assert PixelFormat.RGBA.alpha_channel == 3 and PixelFormat.RGB.alpha_channel is None
    assert {p.name for p in PixelFormat} == {"BGRA", "BGR", "RGBA", "RGB", "GRAY"}


def test_16_bit_colour_png_keeps_all_16_bits(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(0).integers(0, 65535, (5, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[..., ::-1])  # OpenCV writes BGR
    (batch,) = list(ImageProducer(tmp_path)(4))
    image = batch.fields["images"][0]
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, rgb)  # Pillow alone gives rgb >> 8
