"""``ImageProducer`` (images from a folder, via Pillow) and the ``ImageFormat`` / ``PixelFormat`` enums."""

from __future__ import annotations

import enum
import logging
import os
import pathlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError, require
from introscope.typing import OneManyOrNone, PathOrStr, resolve_one_many_or_none

from ._batch import Batch
from ._producer import check_batch_size

__all__ = ["ImageFormat", "PixelFormat", "ImageProducer"]

_log = logging.getLogger("introscope.base.image_producer")

_DEFAULT_EXTENSIONS = frozenset({"png", "jpeg", "jpg", "tiff", "bmp"})


class ImageFormat(enum.Enum):
    """Layout of one image's array: ``HWC`` (height, width, channels) or ``CHW``.

    The values are DNIKit's; use :meth:`to_hwc` / :meth:`from_hwc` to convert an image, which
    keep height and width in place for ``CHW`` (DNIKit's value ``(2, 1, 0)`` swaps them).
    """

    HWC = (0, 1, 2)
    CHW = (2, 1, 0)

    def to_hwc(self, image: np.ndarray) -> np.ndarray:
        """Return a 3-d ``image`` in this layout as ``HWC`` (a view)."""
        return image if self is ImageFormat.HWC else np.transpose(image, (1, 2, 0))

    def from_hwc(self, image: np.ndarray) -> np.ndarray:
        """Return a 3-d ``HWC`` image in this layout (a view)."""
        return image if self is ImageFormat.HWC else np.transpose(image, (2, 0, 1))

    def size_of(self, image: np.ndarray) -> tuple[int, int]:
        """``(height, width)`` of a 3-d image in this layout."""
        return (image.shape[0], image.shape[1]) if self is ImageFormat.HWC else image.shape[1:3]


class PixelFormat(enum.Enum):
    """Order and meaning of an image's channels."""

    BGRA = enum.auto()
    BGR = enum.auto()
    RGBA = enum.auto()
    RGB = enum.auto()
    GRAY = enum.auto()

    @property
    def alpha_channel(self) -> int | None:
        """Index of the alpha channel, or None."""
        return 3 if self in (PixelFormat.BGRA, PixelFormat.RGBA) else None

    @property
    def to_opencv(self) -> int | None:
        """The ``cv2.cvtColor`` code that converts this format to OpenCV's BGR(A), or None."""
        try:
            import cv2
        except ImportError:
            raise IntroscopeError(
                "PixelFormat.to_opencv needs OpenCV; install it with "
                "pip install opencv-python-headless (introscope itself uses Pillow)"
            ) from None
        return {PixelFormat.RGBA: cv2.COLOR_RGBA2BGRA, PixelFormat.RGB: cv2.COLOR_RGB2BGR}.get(self)


def _pil_image_module() -> Any:
    return require("PIL.Image", "image", "loading images")


def load_image(path: pathlib.Path) -> np.ndarray:
    """Read one image as ``HWC``: C=1 grayscale, 3 RGB, 4 RGBA; 16-bit grayscale stays uint16."""
    image_module = _pil_image_module()
    try:
        with image_module.open(path) as im:
            mode = im.mode
            if mode == "1":
                im = im.convert("L")
            elif mode in ("P", "PA"):
                has_alpha = mode == "PA" or "transparency" in im.info
                im = im.convert("RGBA" if has_alpha else "RGB")
            elif mode == "LA":
                im = im.convert("RGBA")
            elif mode not in ("L", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
                im = im.convert("RGB")
            array = np.array(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise IntroscopeError(f"cannot read image {path}: {exc}") from exc
    if array.ndim == 2:
        array = array[..., np.newaxis]
    return array


def _gather(
    directory: pathlib.Path, extensions: frozenset[str], recursive: bool
) -> list[pathlib.Path]:
    candidates = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in candidates if p.suffix[1:].lower() in extensions and p.is_file())


class ImageProducer:
    """Producer of the images in a folder, as ``NHWC`` arrays in field ``field``.

    Images load lazily, per batch; every image must have the same shape and dtype. Each batch
    carries the files' absolute paths as ``Batch.StdKeys.PATH`` and ``Batch.StdKeys.IDENTIFIER``.

    Args:
        directory: folder to search.
        extensions: file extensions to accept (default png, jpeg, jpg, tiff, bmp; any case).
        recursive: search sub-folders too.
        field: name of the field that holds the images.
    """

    def __init__(
        self,
        directory: PathOrStr,
        *,
        extensions: OneManyOrNone[str] = None,
        recursive: bool = True,
        field: str = "images",
    ) -> None:
        directory = pathlib.Path(directory)
        if not directory.is_dir():
            what = "does not exist" if not directory.exists() else "is not a directory"
            raise NotADirectoryError(f"ImageProducer: {directory} {what}")
        if not isinstance(field, str) or not field:
            raise IntroscopeError(f"ImageProducer: field must be a non-empty str, got {field!r}")
        exts = resolve_one_many_or_none(extensions, str) or _DEFAULT_EXTENSIONS
        exts = frozenset(e.lstrip(".").lower() for e in exts)
        paths = _gather(directory.resolve(), exts, recursive)
        if not paths:
            where = "or its sub-folders " if recursive else ""
            raise IntroscopeError(
                f"ImageProducer: no images with extensions {sorted(exts)} in {directory} {where}"
                f"(pass extensions=... to accept other file types)"
            )
        _log.debug("found %d images in %s", len(paths), directory)
        self._paths = tuple(paths)
        self._field = field

    @property
    def image_paths(self) -> Sequence[pathlib.Path]:
        """The image files found, sorted; batches follow this order."""
        return self._paths

    @property
    def field(self) -> str:
        """Name of the field that holds the images."""
        return self._field

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        first: tuple[pathlib.Path, tuple[int, ...], np.dtype] | None = None
        workers = min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(self._paths), batch_size):
                paths = list(self._paths[start : start + batch_size])
                images = list(pool.map(load_image, paths))
                if first is None:
                    first = (paths[0], images[0].shape, images[0].dtype)
                for path, image in zip(paths, images):
                    if image.shape != first[1] or image.dtype != first[2]:
                        raise IntroscopeError(
                            f"ImageProducer: image {path} has shape {image.shape} and dtype "
                            f"{image.dtype}, but the first image {first[0]} has shape {first[1]} "
                            f"and dtype {first[2]}; all images must match (resize them first)"
                        )
                builder = Batch.Builder({self._field: np.stack(images)})
                builder.metadata[Batch.StdKeys.IDENTIFIER] = paths
                builder.metadata[Batch.StdKeys.PATH] = paths
                yield builder.make_batch()

    def __repr__(self) -> str:
        return f"ImageProducer({len(self._paths)} images, field={self._field!r})"
