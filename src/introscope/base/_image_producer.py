"""``ImageProducer`` (images from a folder, via Pillow) and the ``ImageFormat`` / ``PixelFormat`` enums."""

from __future__ import annotations

import enum
import logging
import os
import pathlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

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

    The values are DNIKit's; use ``to_hwc`` / ``from_hwc`` to convert an image, which
    keep height and width in place for ``CHW`` (DNIKit's value ``(2, 1, 0)`` swaps them).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import ImageFormat
        >>> chw = np.zeros((3, 4, 6))  # channels, height, width
        >>> ImageFormat.CHW.to_hwc(chw).shape
        (4, 6, 3)
        >>> ImageFormat.HWC.size_of(np.zeros((4, 6, 3)))  # (height, width)
        (4, 6)
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
    """Order and meaning of an image's channels.

    Examples:
        >>> from introscope.base import PixelFormat
        >>> PixelFormat.RGBA.alpha_channel, PixelFormat.RGB.alpha_channel
        (3, None)
    """

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


# Pillow modes -> (channels, dtype) of the array load_image returns for them.
_MODE_LAYOUT: dict[str, tuple[int, str]] = {
    "1": (1, "uint8"),
    "L": (1, "uint8"),
    "LA": (4, "uint8"),
    "PA": (4, "uint8"),
    "RGBA": (4, "uint8"),
    "I": (1, "int32"),
    "F": (1, "float32"),
}

#: ``mode=`` values of ``ImageProducer``: Pillow modes every image can be converted to.
IMAGE_MODES = ("L", "RGB", "RGBA")


def _layout(mode: str, info: dict[str, Any]) -> tuple[int, str]:
    """Channels and dtype of the array ``load_image`` gives for an image of this mode."""
    if mode in _MODE_LAYOUT:
        return _MODE_LAYOUT[mode]
    if mode.startswith("I;16"):
        return 1, "uint16"
    if mode == "P":
        return (4 if "transparency" in info else 3), "uint8"
    return 3, "uint8"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png16_colour_channels(path: pathlib.Path) -> int:
    """3 or 4 for a 16-bit RGB / RGBA PNG (Pillow reads those as 8 bits per channel), else 0."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return 0
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return 0
    depth, colour = head[24], head[25]
    return {2: 3, 6: 4}.get(colour, 0) if depth == 16 else 0


def _load_png16(
    path: pathlib.Path, channels: int, size: tuple[int, int] | None, mode: str | None
) -> np.ndarray:
    """A 16-bit colour PNG as uint16 HWC, read with OpenCV (Pillow would drop the low bytes)."""
    try:
        import cv2
    except ImportError:
        raise IntroscopeError(
            f"{path} is a 16-bit colour PNG; Pillow reads only the high 8 bits of each channel. "
            f"Install OpenCV (pip install opencv-python-headless) to read all 16"
        ) from None
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise IntroscopeError(f"cannot read image {path}")
    array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA if channels == 4 else cv2.COLOR_BGR2RGB)
    if mode == "L":
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2GRAY if channels == 4 else cv2.COLOR_RGB2GRAY)
    elif mode == "RGB" and channels == 4:
        array = array[..., :3]
    elif mode == "RGBA" and channels == 3:
        alpha = np.full(array.shape[:2] + (1,), np.iinfo(np.uint16).max, np.uint16)
        array = np.concatenate([array, alpha], axis=2)
    if size is not None and (array.shape[1], array.shape[0]) != tuple(size):
        array = cv2.resize(array, tuple(size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(array if array.ndim == 3 else array[..., np.newaxis])


def read_header(path: pathlib.Path) -> tuple[tuple[int, int], int, str]:
    """``((width, height), channels, dtype)`` of an image file, from its header alone."""
    image_module = _pil_image_module()
    try:
        with image_module.open(path) as im:
            png16 = _png16_colour_channels(path)
            if png16:
                return im.size, png16, "uint16"
            return im.size, *_layout(im.mode, im.info)
    except (OSError, SyntaxError, ValueError) as exc:
        raise IntroscopeError(f"cannot read image {path}: {exc}") from exc


def load_image(
    path: pathlib.Path, size: tuple[int, int] | None = None, mode: str | None = None
) -> np.ndarray:
    """Read one image as ``HWC``: C=1 grayscale, 3 RGB, 4 RGBA; 16-bit images stay uint16.

    ``mode`` ("L", "RGB", "RGBA") converts every image to that many channels; ``size``
    (width, height) resizes with Pillow's bilinear filter (with antialiasing when shrinking).
    16-bit RGB/RGBA PNGs, which Pillow reads as 8 bits per channel, are read with OpenCV
    (and resized with its bilinear filter).
    """
    png16 = _png16_colour_channels(path)
    if png16:
        return _load_png16(path, png16, size, mode)
    image_module = _pil_image_module()
    try:
        with image_module.open(path) as im:
            current = im.mode
            if mode is not None:
                if current != mode:
                    im = im.convert(mode)
            elif current == "1":
                im = im.convert("L")
            elif current in ("P", "PA"):
                has_alpha = current == "PA" or "transparency" in im.info
                im = im.convert("RGBA" if has_alpha else "RGB")
            elif current == "LA":
                im = im.convert("RGBA")
            elif current not in ("L", "RGB", "RGBA", "I", "F") and not current.startswith("I;16"):
                im = im.convert("RGB")
            if size is not None and im.size != tuple(size):
                if im.mode.startswith("I;16"):
                    im = im.convert("I")  # Pillow resizes 32-bit integer images, not 16-bit
                im = im.resize(tuple(size), image_module.Resampling.BILINEAR)
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


def _list_files(paths: Sequence[pathlib.Path], limit: int = 10) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


class ImageProducer:
    """Producer of the images in a folder, as ``NHWC`` arrays in field ``field``.

    Before the first image is loaded, every file's header is read, so images that do not fit
    together (sizes, channel counts, bit depths) are reported at once, before any work: how
    many differ from the most common size and format, and up to 3 files of each other kind
    (``check`` does it up front). Images load lazily, per batch. Each batch carries the
    files' absolute paths as ``Batch.StdKeys.PATH`` and ``Batch.StdKeys.IDENTIFIER``.

    Args:
        directory: folder to search.
        extensions: file extensions to accept (default png, jpeg, jpg, tiff, bmp; any case).
        recursive: search sub-folders too.
        field: name of the field that holds the images.
        size: ``(width, height)`` to resize every image to on load (Pillow, bilinear), for
            folders of mixed sizes.
        mode: ``"RGB"``, ``"RGBA"`` or ``"L"`` (grayscale) to convert every image to, so
            grayscale and RGBA files can feed an RGB model.
        labels: read each image's label from the name of its sub-folder of ``directory`` (the
            layout of torchvision's ``ImageFolder``) into ``Batch.StdKeys.LABELS``; ``True``
            names the label dimension ``"label"``, a string names it.

    Examples:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from PIL import Image
        >>> from introscope.base import Batch, ImageProducer
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = pathlib.Path(tmp.name)
        >>> for name, value in [("a.png", 0), ("b.png", 255)]:
        ...     Image.fromarray(np.full((4, 6, 3), value, dtype=np.uint8)).save(folder / name)
        >>> images = ImageProducer(folder)
        >>> batch = next(iter(images(batch_size=2)))
        >>> batch.fields["images"].shape, batch.fields["images"].dtype  # NHWC
        ((2, 4, 6, 3), dtype('uint8'))
        >>> sorted(pathlib.Path(p).name for p in batch.metadata[Batch.StdKeys.PATH])
        ['a.png', 'b.png']
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        directory: PathOrStr,
        *,
        extensions: OneManyOrNone[str] = None,
        recursive: bool = True,
        field: str = "images",
        size: tuple[int, int] | None = None,
        mode: str | None = None,
        labels: bool | str = False,
    ) -> None:
        directory = pathlib.Path(directory)
        if not directory.is_dir():
            what = "does not exist" if not directory.exists() else "is not a directory"
            raise NotADirectoryError(f"ImageProducer: {directory} {what}")
        if not isinstance(field, str) or not field:
            raise IntroscopeError(f"ImageProducer: field must be a non-empty str, got {field!r}")
        self._size = _check_size(size)
        if mode is not None and mode not in IMAGE_MODES:
            raise IntroscopeError(
                f"ImageProducer: mode must be one of {list(IMAGE_MODES)} or None, got {mode!r}"
            )
        self._mode = mode
        if not isinstance(labels, (bool, str)) or labels == "":
            raise IntroscopeError(
                f"ImageProducer: labels must be True, False or a label-dimension name, "
                f"got {labels!r}"
            )
        self._label_key = "label" if labels is True else (labels or None)
        exts = resolve_one_many_or_none(extensions, str) or _DEFAULT_EXTENSIONS
        exts = frozenset(e.lstrip(".").lower() for e in exts)
        root = directory.resolve()
        paths = _gather(root, exts, recursive)
        if not paths:
            where = "or its sub-folders " if recursive else ""
            raise IntroscopeError(
                f"ImageProducer: no images with extensions {sorted(exts)} in {directory} {where}"
                f"(pass extensions=... to accept other file types)"
            )
        _log.debug("found %d images in %s", len(paths), directory)
        self._paths = tuple(paths)
        self._field = field
        self._labels: tuple[str, ...] | None = None
        if self._label_key is not None:
            loose = [p for p in paths if p.parent == root]
            if loose:
                raise IntroscopeError(
                    f"ImageProducer: labels= reads labels from sub-folder names, but "
                    f"{len(loose)} image(s) lie directly in {directory}: {_list_files(loose)}; "
                    f"move them into a folder named after their label"
                )
            self._labels = tuple(p.relative_to(root).parts[0] for p in paths)
        self._checked = False

    def check(self) -> None:
        """Read every file's header and raise, naming examples, if the images do not fit together.

        Runs by itself before the first batch is loaded; call it to check a folder up front.
        """
        if self._checked:
            return
        groups: dict[tuple[Any, ...], list[pathlib.Path]] = {}
        for path in self._paths:
            (width, height), channels, dtype = read_header(path)
            if self._mode is not None:
                channels, dtype = len(self._mode), "uint8"
            elif self._size is not None and dtype == "uint16":
                dtype = "int32"  # resized as 32-bit integers
            key = ((height, width) if self._size is None else None, channels, dtype)
            groups.setdefault(key, []).append(path)
        if len(groups) == 1:
            self._checked = True
            return
        common = max(groups, key=lambda k: len(groups[k]))
        odd = sorted(p for k, ps in groups.items() if k != common for p in ps)

        def describe(key: tuple[Any, ...]) -> str:
            hw, channels, dtype = key
            size = f"{hw[1]}x{hw[0]} pixels, " if hw is not None else ""
            return f"{size}{channels} channel(s) of {dtype}"

        kinds = "; ".join(
            f"{describe(k)}: {_list_files(ps, 3)}" for k, ps in groups.items() if k != common
        )
        fixes = []
        if len({k[0] for k in groups}) > 1:
            fixes.append("size=(width, height) to resize them on load")
        if len({k[1:] for k in groups}) > 1:
            fixes.append("mode='RGB' (or 'L', 'RGBA') to convert them")
        raise IntroscopeError(
            f"ImageProducer: {len(odd)} of {len(self._paths)} images do not match the others "
            f"({describe(common)}, {len(groups[common])} files): {kinds}. Pass "
            + " and ".join(fixes)
        )

    @property
    def image_paths(self) -> Sequence[pathlib.Path]:
        """The image files found, sorted; batches follow this order."""
        return self._paths

    @property
    def labels(self) -> Sequence[str] | None:
        """Each image's label (its sub-folder's name) when made with ``labels=``, else None."""
        return self._labels

    @property
    def field(self) -> str:
        """Name of the field that holds the images."""
        return self._field

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        self.check()
        workers = min(4, os.cpu_count() or 1)

        def load(path: pathlib.Path) -> np.ndarray:
            return load_image(path, self._size, self._mode)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(self._paths), batch_size):
                paths = list(self._paths[start : start + batch_size])
                images = list(pool.map(load, paths))
                builder = Batch.Builder({self._field: np.stack(images)})
                builder.metadata[Batch.StdKeys.IDENTIFIER] = paths
                builder.metadata[Batch.StdKeys.PATH] = paths
                if self._labels is not None:
                    builder.metadata[Batch.StdKeys.LABELS] = {
                        cast(str, self._label_key): list(self._labels[start : start + batch_size])
                    }
                yield builder.make_batch()

    def __repr__(self) -> str:
        return f"ImageProducer({len(self._paths)} images, field={self._field!r})"


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
        )
    )
    if not ok:
        raise IntroscopeError(
            f"ImageProducer: size must be (width, height), two positive ints, got {size!r}"
        )
    return int(size[0]), int(size[1])
