"""Image folders as users have them: mixed sizes and channel counts, ImageFolder labels."""

import pathlib

import numpy as np
import pytest

from introscope.base import Batch, ImageProducer, pipeline
from introscope.exceptions import IntroscopeError

Image = pytest.importorskip("PIL.Image")


def _png(path: pathlib.Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


@pytest.fixture
def mixed(tmp_path, rng):
    """Two classes, three sizes, grayscale, RGB and RGBA files."""
    _png(tmp_path / "cat/1.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    _png(tmp_path / "cat/2.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    _png(tmp_path / "cat/3.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    _png(tmp_path / "dog/4.png", rng.integers(0, 256, (6, 8), dtype=np.uint8))  # grayscale
    _png(tmp_path / "dog/5.png", rng.integers(0, 256, (7, 5, 4), dtype=np.uint8))  # RGBA
    return tmp_path


def test_mismatched_files_are_all_listed_before_any_image_is_loaded(mixed, monkeypatch):
    import introscope.base._image_producer as module

    loaded = []
    real = module.load_image
    monkeypatch.setattr(module, "load_image", lambda *a, **k: loaded.append(a) or real(*a, **k))
    producer = ImageProducer(mixed)
    with pytest.raises(IntroscopeError) as info:
        next(iter(producer(2)))
    message = str(info.value)
    assert "3 of 5 images do not match the others (8x6 pixels, 3 channel(s) of uint8, 2 files)" in (
        message
    )
    assert all(name in message for name in ("3.png", "4.png", "5.png"))
    assert "1.png" not in message and "size=(width, height)" in message and "mode='RGB'" in message
    assert loaded == []  # nothing was decoded before the error


def test_size_and_mode_make_a_mixed_folder_one_rgb_array(mixed):
    producer = ImageProducer(mixed, size=(8, 6), mode="RGB")
    (batch,) = list(producer(10))
    images = batch.fields["images"]
    assert images.shape == (5, 6, 8, 3) and images.dtype == np.uint8
    # a file already of that size and mode is unchanged
    np.testing.assert_array_equal(images[0], np.asarray(Image.open(mixed / "cat/1.png")))
    # grayscale becomes three equal channels
    gray = np.asarray(Image.open(mixed / "dog/4.png"))
    np.testing.assert_array_equal(images[3], np.repeat(gray[..., None], 3, axis=2))
    # resized with Pillow's bilinear filter
    ref = np.asarray(Image.open(mixed / "cat/3.png").resize((8, 6), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images[2], ref)


def test_mode_alone_is_enough_for_same_size_images_of_mixed_channels(tmp_path, rng):
    _png(tmp_path / "a.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    _png(tmp_path / "b.png", rng.integers(0, 256, (4, 4, 4), dtype=np.uint8))
    with pytest.raises(IntroscopeError, match=r"mode='RGB'") as info:
        list(ImageProducer(tmp_path)(2))
    assert "size=" not in str(info.value)
    (batch,) = list(ImageProducer(tmp_path, mode="L")(2))
    assert batch.fields["images"].shape == (2, 4, 4, 1)


def test_labels_from_sub_folders(mixed):
    producer = ImageProducer(mixed, size=(4, 4), mode="RGB", labels=True)
    assert list(producer.labels) == ["cat", "cat", "cat", "dog", "dog"]
    batches = list(producer(2))
    labels = [v for b in batches for v in b.metadata[Batch.StdKeys.LABELS]["label"]]
    assert labels == ["cat", "cat", "cat", "dog", "dog"]
    named = ImageProducer(mixed, size=(4, 4), mode="RGB", labels="species")
    (batch,) = list(named(5))
    assert batch.metadata[Batch.StdKeys.LABELS]["species"][3] == "dog"


def test_labels_refuse_images_outside_a_label_folder(mixed, rng):
    _png(mixed / "stray.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    with pytest.raises(IntroscopeError, match=r"lie directly in .*stray\.png"):
        ImageProducer(mixed, labels=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": (0, 4)}, "size must be"),
        ({"size": 8}, "size must be"),
        ({"mode": "CMYK"}, "mode must be one of"),
        ({"labels": ""}, "labels must be"),
    ],
)
def test_bad_arguments(mixed, kwargs, match):
    with pytest.raises(IntroscopeError, match=match):
        ImageProducer(mixed, **kwargs)


def test_grayscale_images_into_an_rgb_torch_model_say_how_to_fix_it(tmp_path, rng):
    torch = pytest.importorskip("torch")
    from introscope.processors import Processor, Transposer
    from introscope.torch import load_torch_model_from_memory

    for i in range(3):
        _png(tmp_path / f"{i}.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3))
    data = pipeline(
        ImageProducer(tmp_path),
        Transposer(dim=(0, 3, 1, 2)),
        Processor(lambda x: x.astype(np.float32) / 255),
    )
    model = load_torch_model_from_memory(net)
    with pytest.raises(IntroscopeError, match=r"1 channel \(grayscale\).*mode='RGB'"):
        list(pipeline(data, model(None))(3))
