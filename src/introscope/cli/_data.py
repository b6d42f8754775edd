"""Data sources of ``introscope analyze``: an image folder, an ``.npy``/``.npz`` array, or a table
of embeddings (``.parquet``/``.npy``), each as a producer with ids and labels in the metadata."""

from __future__ import annotations

import dataclasses
import pathlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from introscope.base._image_producer import _png16_colour_channels, load_image, read_header
from introscope.exceptions import IntroscopeError, IntroscopeValueError, require

from ._folder import IMAGE_SUFFIXES, folder_summary, image_folder
from ._models import InputFileError, InputSpec
from ._tables import NO_LABEL, label_strings, load_parquet
from ._tables import labels_csv as read_labels_csv

__all__ = ["DataSource", "Preprocess", "load_data", "IMAGE_SUFFIXES"]

_SAMPLE_KEYS = ("samples", "x", "images", "data", "embeddings", "inputs", "arr_0")
_LABEL_KEYS = ("labels", "label", "y", "targets", "classes")
_ID_KEYS = ("ids", "id", "paths", "path", "filenames", "names")


@dataclass(frozen=True)
class Preprocess:
    """Pixel normalisation: ``(pixel * scale - mean) / std`` per channel.

    ``scale`` multiplies the raw values (0-255 for 8-bit images, 0-65535 for 16-bit ones);
    left None, each image is divided by its bit depth's maximum, so pixels are in [0, 1]."""

    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def apply(
        self, x: np.ndarray, default_scale: float | np.ndarray, channel_axis: int | None
    ) -> np.ndarray:
        """``x`` normalised; ``default_scale`` (a number, or one per sample broadcasting against
        ``x``) applies when no ``scale`` was given."""
        scale = default_scale if self.scale is None else self.scale
        x = x.astype(np.float32) * np.asarray(scale, dtype=np.float32)
        for values, op in ((self.mean, np.subtract), (self.std, np.divide)):
            if values is None:
                continue
            v = np.asarray(values, dtype=np.float32)
            if v.size > 1:
                if channel_axis is None or x.shape[channel_axis] != v.size:
                    raise IntroscopeValueError(
                        f"--mean/--std: {v.size} values given but the samples have "
                        f"{'no channel axis' if channel_axis is None else x.shape[channel_axis]} "
                        "channels; give one value, or one per channel"
                    )
                shape = [1] * x.ndim
                shape[channel_axis] = v.size
                v = v.reshape(shape)
            x = op(x, v)
        return x


@dataclass
class DataSource:
    """Samples, ids and labels from one path; ``producer(batch_size)`` yields batches."""

    kind: str  # "images", "arrays" or "embeddings"
    path: pathlib.Path
    ids: list[str]
    labels: list[str]
    field: str
    notes: list[str] = dataclasses.field(default_factory=list)
    array: Any = None
    files: list[pathlib.Path] | None = None
    spec: InputSpec | None = None
    preprocess: Preprocess = dataclasses.field(default_factory=Preprocess)
    image_size: tuple[int, int] | None = None
    channels: int = 3
    #: Set when a PyTorch model refused the integer samples (a CNN given int16 scans): they
    #: are then fed as float32, like any other samples.
    integers_as_float: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def integer_dtype(self) -> np.dtype | None:
        """The dtype integer samples are fed as, unchanged (token ids for an embedding layer);
        None when they become float32 like any other samples.

        Integers stay integers when the model declares an integer input, or declares none
        (PyTorch) and no --scale/--mean/--std is given; uint8 arrays are pixels (float32)."""
        if self.array is None or self.kind != "arrays" or self.integers_as_float:
            return None
        dtype = np.dtype(self.array.dtype)
        if not np.issubdtype(dtype, np.integer):
            return None
        declared = self.spec.dtype if self.spec is not None else None
        if declared is not None:
            declared = np.dtype(declared)
            integral = np.issubdtype(declared, np.integer) or declared == np.bool_
            return declared if integral else None
        plain = self.preprocess == Preprocess()
        return dtype if plain and dtype != np.uint8 else None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        if self.array is not None:
            return tuple(self.array.shape[1:])
        w, h = self.image_size or (0, 0)
        layout = self.spec.layout if self.spec else "HWC"
        if layout == "HW":
            return (h, w)
        return (self.channels, h, w) if layout == "CHW" else (h, w, self.channels)

    def _load(self, start: int, stop: int, pool: ThreadPoolExecutor | None) -> np.ndarray:
        if self.array is not None:
            x = np.asarray(self.array[start:stop])
            if self.kind == "embeddings" or not np.issubdtype(x.dtype, np.number):
                return np.ascontiguousarray(x, dtype=np.float32)
            kept = self.integer_dtype
            if kept is not None:
                return np.ascontiguousarray(x, dtype=kept)
            axis = _channel_axis(x.shape[1:])
            return self.preprocess.apply(x, 1.0, axis)
        assert self.files is not None
        paths = self.files[start:stop]
        read = list(pool.map(self._read_image, paths)) if pool else map(self._read_image, paths)
        images, peaks = zip(*read)
        x = np.stack(images)  # (n, h, w) or (n, h, w, c); 8- and 16-bit images stack as uint16
        layout = self.spec.layout if self.spec else "HWC"
        axis = None if x.ndim == 3 else x.ndim - 1
        per_image = (1.0 / np.asarray(peaks, dtype=np.float64)).reshape(-1, *[1] * (x.ndim - 1))
        x = self.preprocess.apply(x, per_image, axis)
        if layout == "CHW":
            x = np.moveaxis(x, -1, 1)
        return np.ascontiguousarray(x)

    def _read_image(self, path: pathlib.Path) -> tuple[np.ndarray, float]:
        """One image as HWC (HW for an HW model), and the largest value of its bit depth.

        16-bit images keep their 16 bits, read as ImageProducer reads them: Pillow's conversion
        to L/RGB would clip them to 255 (and it reads 16-bit colour PNGs as 8 bits)."""
        pil = require("PIL.Image", "image", "reading an image folder")
        mode = "L" if self.channels == 1 else "RGB"
        try:
            with pil.open(path) as img:
                deep = img.mode.startswith("I") or img.mode == "F"
                if not deep and img.format == "PNG" and img.mode in ("RGB", "RGBA"):
                    deep = bool(_png16_colour_channels(path))
                if not deep:
                    img = img.convert(mode)
                    if self.image_size is not None and img.size != self.image_size:
                        img = img.resize(self.image_size, pil.Resampling.BILINEAR)
                    arr, peak = np.asarray(img, dtype=np.uint8), 255.0
        except (OSError, ValueError) as exc:
            raise InputFileError(f"--data: cannot read the image {str(path)!r}: {exc}") from exc
        if deep:
            try:
                _, channels, dtype = read_header(path)
                # grey stays one channel of 16 bits (or float), made RGB below if need be
                arr = load_image(path, self.image_size, mode if channels > 1 else None)
            except IntroscopeError as exc:
                raise InputFileError(f"--data: {exc}") from exc
            peak = _PEAKS.get(dtype, 1.0)
            if arr.shape[-1] == 1 and self.channels == 3:
                arr = np.repeat(arr, 3, axis=-1)
        layout = self.spec.layout if self.spec else "HWC"
        if arr.ndim == 3 and arr.shape[-1] == 1 and layout == "HW":
            arr = arr[..., 0]
        elif arr.ndim == 2 and layout != "HW":
            arr = arr[..., None]
        return arr, peak

    def producer(self, batch_size: int) -> Iterator[Any]:
        """Batches of ``{field: samples}`` with identifiers and ``label`` metadata."""
        from introscope.base import Batch

        pool = ThreadPoolExecutor(max_workers=4) if self.files is not None else None
        try:
            for start in range(0, len(self), batch_size):
                stop = min(len(self), start + batch_size)
                builder = Batch.Builder(fields={self.field: self._load(start, stop, pool)})
                builder.metadata[Batch.StdKeys.IDENTIFIER] = self.ids[start:stop]
                builder.metadata[Batch.StdKeys.LABELS] = {"label": self.labels[start:stop]}
                yield builder.make_batch()
        finally:
            if pool is not None:
                pool.shutdown()

    def _deep_grey_thumbnail(self, path: pathlib.Path, dtype: str) -> np.ndarray:
        """A 16-bit or float greyscale image at thumbnail size, as 8 bits: reduced in its own
        mode first (not the whole image as floats), then 16 bits shown as value / 257, and
        floats as the model sees them before --mean/--std (value x --scale, 1 by default) in
        [0, 1], or stretched from their minimum to their maximum when outside it."""
        pil = require("PIL.Image", "image", "report thumbnails")
        with pil.open(path) as img:
            if img.mode not in ("I", "F"):
                img = img.convert("F" if dtype == "float32" else "I")  # I;16: reduce needs I
            img.thumbnail((64, 64))
            arr = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            arr = arr * (1.0 if self.preprocess.scale is None else self.preprocess.scale)
            finite = arr[np.isfinite(arr)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            if lo < 0.0 or hi > 1.0:
                arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            arr = np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0) * 255.0
        else:
            arr = arr * (255.0 / 65535.0)
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)

    def raw_image(self, index: int) -> np.ndarray | None:
        """The sample as it should look to a person (for thumbnails), or None for vectors."""
        if self.files is not None:
            pil = require("PIL.Image", "image", "report thumbnails")
            try:
                _, channels, dtype = read_header(self.files[index])
                if dtype in ("uint16", "int32", "float32") and channels == 1:
                    return self._deep_grey_thumbnail(self.files[index], dtype)
                if dtype in ("uint16", "int32"):  # 16-bit colour: to 8 for the eye, not clipped
                    arr = load_image(self.files[index]).astype(np.float64) * (255.0 / 65535.0)
                    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
                    return arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
                with pil.open(self.files[index]) as img:
                    img.draft("RGB", (64, 64))  # JPEG: decode at reduced size
                    img.thumbnail((64, 64))
                    return np.asarray(img.convert("L" if img.mode in ("L", "1") else "RGB"))
            except (OSError, IntroscopeError):
                return None
        if self.kind == "arrays" and self.array is not None:
            sample = np.asarray(self.array[index])
            return sample if sample.ndim in (2, 3) else None
        return None


def _channel_axis(shape: Sequence[int]) -> int | None:
    if len(shape) == 3:
        return 1 if shape[0] in (1, 3, 4) and shape[-1] not in (1, 3, 4) else 3
    return None


_GREY_MODES = ("L", "1", "I", "F")
#: Largest pixel value per dtype of ``read_header``: what the default scale divides by. Pillow's
#: 32-bit integer mode I holds 16-bit PNG/TIFF greys; float images are taken as they are.
_PEAKS = {"uint8": 255.0, "uint16": 65535.0, "int32": 65535.0}
#: Image headers read to choose the channel count (spread over the folder; headers only).
_CHANNEL_PROBES = 64


#: Image headers read to choose the default size (spread over the folder; headers only).
_SIZE_PROBES = 256


def _first_size(
    files: Sequence[pathlib.Path],
) -> tuple[tuple[int, int], int, Counter[tuple[int, int]]]:
    """The most common size among up to 256 images spread over the folder (the first file's
    on a tie), 3 channels if any of up to 64 of them is in colour (1 when all are greyscale: one
    greyscale file sorting first must not make a colour folder greyscale), and the sizes seen."""
    pil = require("PIL.Image", "image", "reading an image folder")
    step = max(1, len(files) // _SIZE_PROBES)
    probes = [files[0], *files[step::step][: _SIZE_PROBES - 1]]
    sizes: Counter[tuple[int, int]] = Counter()
    channels = 1
    for k, path in enumerate(probes):
        if path.is_symlink() and not path.exists():
            continue  # a broken link, named by the image check
        try:
            with pil.open(path) as img:
                sizes[tuple(img.size)] += 1
                if k % max(1, len(probes) // _CHANNEL_PROBES) == 0 and channels == 1:
                    if img.mode not in _GREY_MODES and not img.mode.startswith("I;16"):
                        channels = 3
        except OSError as exc:
            raise InputFileError(f"--data: cannot read the image {str(path)!r}: {exc}") from exc
    if not sizes:
        raise InputFileError(f"--data: cannot read the image {str(files[0])!r}")
    size = max(sizes, key=sizes.__getitem__)  # the first seen of the most common (files[0]'s)
    return size, channels, sizes


def _sizes_note(sizes: Counter[tuple[int, int]], size: Sequence[int], declared: bool) -> str:
    """The note of a folder whose images differ in size: what they are resized to, and why."""
    seen = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3))
    more = f" and {len(sizes) - 3} more" if len(sizes) > 3 else ""
    why = "the model's input size" if declared else "the most common size"
    return (
        f"images differ in size ({seen}{more} among {sum(sizes.values())} read): all are "
        f"resized to {size[0]}x{size[1]}, {why}; choose with --image-size W H"
    )


def _npz_pick(data: Any, keys: Sequence[str]) -> np.ndarray | None:
    for k in keys:
        if k in data.files:
            return cast(np.ndarray, data[k])
    return None


def _load_array_file(path: pathlib.Path) -> tuple[np.ndarray, Any, Any]:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None, None
        with np.load(path, allow_pickle=False) as data:
            x = _npz_pick(data, _SAMPLE_KEYS)
            if x is None:
                if len(data.files) != 1:
                    raise InputFileError(
                        f"--data {str(path)!r}: no samples array; name it one of "
                        f"{list(_SAMPLE_KEYS)} (found {data.files})"
                    )
                x = data[data.files[0]]
            return x, _npz_pick(data, _LABEL_KEYS), _npz_pick(data, _ID_KEYS)
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise InputFileError(f"--data {str(path)!r} cannot be read without pickle: {exc}") from exc
    except OSError as exc:
        raise InputFileError(f"--data {str(path)!r} is not a readable numpy file: {exc}") from exc


def load_data(
    path: str | pathlib.Path,
    *,
    spec: InputSpec | None,
    with_model: bool,
    image_size: tuple[int, int] | None = None,
    preprocess: Preprocess | None = None,
    labels_csv: str | None = None,
    out: str | pathlib.Path | None = None,
    color: str = "auto",
) -> DataSource:
    """Open ``--data`` as a :class:`DataSource` (reading nothing but headers yet for images)."""
    p = pathlib.Path(path)
    if not p.exists():
        raise InputFileError(f"--data {str(p)!r} does not exist")
    preprocess = preprocess or Preprocess()
    from_file = False  # ids read from the data file (else paths, or row numbers)
    if p.is_dir():
        files, labels, ids, walk_notes = image_folder(p, pathlib.Path(out) if out else None)
        if not files:
            raise InputFileError(
                f"--data {str(p)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); put "
                "them in one sub-folder per label"
            )
        fixed = spec.size if spec and spec.size else None
        if image_size and fixed and tuple(image_size) != tuple(fixed):
            raise IntroscopeValueError(
                f"--image-size {image_size[0]} {image_size[1]}: the model's input "
                f"{cast(InputSpec, spec).name!r} takes {fixed[0]}x{fixed[1]} images "
                f"(width x height); give "
                f"--image-size {fixed[0]} {fixed[1]}, or leave it out to resize to that"
            )
        first_size, first_channels, sizes = _first_size(files)
        size = image_size or (spec.size if spec else None) or first_size
        declared = spec.channels if spec and spec.channels else None
        forced = {"rgb": 3, "grey": 1}.get(color)
        if forced is not None and declared is not None and forced != declared:
            raise IntroscopeValueError(
                f"--color {color}: the model's input {cast(InputSpec, spec).name!r} takes "
                f"{declared} channel(s); leave --color out to read the images so"
            )
        channels = forced or declared or first_channels
        src = DataSource(
            "images", p, ids, labels, "samples", files=files, spec=spec,
            preprocess=preprocess, image_size=cast("tuple[int, int]", tuple(size)),
            channels=channels,
        )  # fmt: skip
        src.notes.append(
            f"{folder_summary(ids, labels)}, resized to "
            f"{size[0]}x{size[1]}, {channels} channel(s), layout {spec.layout if spec else 'HWC'}"
        )
        src.notes += walk_notes
        if not image_size and len(sizes) > 1:
            src.notes.append(_sizes_note(sizes, size, bool(spec and spec.size)))
    else:
        suffix = p.suffix.lower()
        notes: list[str] = []
        if suffix in (".npy", ".npz"):
            x, labels_arr, ids_arr = _load_array_file(p)
        elif suffix == ".parquet":
            x, labels_arr, ids_arr, notes = load_parquet(p)
        else:
            raise InputFileError(
                f"--data {str(p)!r}: expected a folder of images, .npy/.npz or .parquet, "
                f"got {suffix or 'no suffix'!r}"
            )
        if x.ndim < 2 or len(x) == 0:
            raise InputFileError(
                f"--data {str(p)!r}: expected an array of samples (n, ...), got shape {x.shape}"
            )
        kind = "arrays" if with_model else "embeddings"
        if kind == "embeddings" and x.ndim > 2:
            raise IntroscopeValueError(
                f"--data {str(p)!r} has samples of shape {x.shape[1:]} and no --model was given; "
                "without a model the data must be embeddings of shape (n, d)"
            )
        n = len(x)
        from_file = ids_arr is not None
        ids = [str(i) for i in ids_arr] if ids_arr is not None else [str(i) for i in range(n)]
        labels = label_strings(labels_arr) if labels_arr is not None else [NO_LABEL] * n
        if len(ids) != n or len(labels) != n:
            raise InputFileError(
                f"--data {str(p)!r}: {n} samples but {len(ids)} ids and {len(labels)} labels"
            )
        field_name = "samples" if with_model else "embeddings"
        src = DataSource(kind, p, ids, labels, field_name, array=x, spec=spec,
                         preprocess=preprocess)  # fmt: skip
        src.notes.append(f"{n} samples of shape {tuple(x.shape[1:])} from {p.name}")
        src.notes += notes
        kept = src.integer_dtype
        if kept is not None:
            fed = "unchanged" if kept == x.dtype else f"as {kept}, the model's input dtype"
            src.notes.append(
                f"{x.dtype} values fed {fed}, not as float32 (integers such as token ids; "
                f"--scale, --mean or --std make them float32)"
            )
    if labels_csv:
        hint = _id_hint(src, from_file)
        src.labels = read_labels_csv(pathlib.Path(labels_csv), src.ids, hint)
    return src


def _id_hint(src: DataSource, from_file: bool) -> str:
    """What the samples' ids are, for a --labels CSV that names others."""
    e_g = ", ".join(repr(i) for i in src.ids[:2])
    if src.kind == "images":
        return f"the ids are the image paths relative to the --data folder ({e_g}, ...)"
    if from_file:
        return f"the ids are those of the data file's id column or array ({e_g}, ...)"
    return (
        f"{src.path.name} has no ids, so the ids are row numbers '0' to '{len(src) - 1}': "
        f"use those in the id column, or give one label per row in order"
    )
