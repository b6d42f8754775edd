"""On-disk form of one cached batch: an uncompressed ``.npz`` with arrays and a JSON header.

No pickle: fields, snapshot fields and array-valued metadata are ``.npy`` members written with
``allow_pickle=False``; every other metadata value is JSON with a small tagged encoding that
keeps tuples, dicts with any keys, sets, paths, bytes and numpy scalars round-tripping exactly.
"""

from __future__ import annotations

import base64
import json
import logging
import pathlib
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError

from . import _metadata as _meta
from ._batch import Batch

_logger = logging.getLogger("introscope.base.cacher")

FORMAT_VERSION = 1
_TAG = "~"
_PATH_TYPES = {
    cls.__name__: cls
    for cls in (pathlib.Path, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)
}


class UnsupportedMetadata(IntroscopeError):
    """A metadata value that the cache cannot store without pickle."""

    def __init__(self, key: str, value: Any) -> None:
        super().__init__(
            f"metadata {key} holds a {type(value).__module__}.{type(value).__qualname__} that "
            f"the cache cannot store without pickle (it stores None, bool, int, float, complex, "
            f"str, bytes, paths, numpy scalars and non-object arrays, and lists, tuples, sets and "
            f"dicts of those). Convert it, remove the key with MetadataRemover before the "
            f"Cacher, or pass Cacher(..., drop_unsupported_metadata=True)"
        )
        self.key = key


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    # Exact types only: a subclass (an IntEnum, a StrEnum) would come back as its base type.
    if value is None or type(value) in (bool, str, int, float):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise UnsupportedMetadata(where, value)
        name = f"m{len(arrays)}"
        arrays[name] = value
        return {_TAG: "array", "ref": name}
    if isinstance(value, np.generic):
        kind = value.dtype.kind
        if kind in "biu" or (kind == "f" and value.dtype.itemsize <= 8):
            return {_TAG: "scalar", "dtype": value.dtype.str, "v": value.item()}
        if value.dtype.hasobject:
            raise UnsupportedMetadata(where, value)
        name = f"m{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {_TAG: "array0", "ref": name}
    if isinstance(value, list):
        return [_encode(v, arrays, where) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return {_TAG: "tuple", "v": [_encode(v, arrays, where) for v in value]}
    if type(value) is dict:
        return {
            _TAG: "dict",
            "v": [[_encode(k, arrays, where), _encode(v, arrays, where)] for k, v in value.items()],
        }
    if type(value) in (set, frozenset):
        return {_TAG: type(value).__name__, "v": [_encode(v, arrays, where) for v in value]}
    if type(value) is complex:
        return {_TAG: "complex", "v": [value.real, value.imag]}
    if type(value) is bytes:
        return {_TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if type(value) in (pathlib.PosixPath, pathlib.WindowsPath):
        return {_TAG: "path", "cls": "Path", "v": str(value)}
    if type(value) in (pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath):
        return {_TAG: "path", "cls": type(value).__name__, "v": str(value)}
    raise UnsupportedMetadata(where, value)


def _decode(data: Any, arrays: Any) -> Any:
    if isinstance(data, list):
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data[_TAG]
    if tag == "array":
        return arrays[data["ref"]]
    if tag == "array0":
        return arrays[data["ref"]][()]
    if tag == "scalar":
        return np.dtype(data["dtype"]).type(data["v"])
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in data["v"])
    if tag == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in data["v"]}
    if tag == "set":
        return {_decode(v, arrays) for v in data["v"]}
    if tag == "frozenset":
        return frozenset(_decode(v, arrays) for v in data["v"])
    if tag == "complex":
        return complex(*data["v"])
    if tag == "bytes":
        return base64.b64decode(data["v"])
    if tag == "path":
        return _PATH_TYPES[data["cls"]](data["v"])
    raise IntroscopeError(f"unknown value tag {tag!r} in a cached batch")


class MetadataPolicy:
    """What to do with metadata the cache cannot store; remembers the keys kept and dropped.

    A key is dropped (with ``drop_unsupported``) at the first batch where it cannot be stored and
    stays dropped, so every cached batch carries the same keys; a key already stored in earlier
    batches that later cannot be stored is an error either way.
    """

    def __init__(self, drop_unsupported: bool) -> None:
        self.drop_unsupported = drop_unsupported
        self.kept: set[tuple[str, str]] = set()
        self.dropped: set[tuple[str, str]] = set()


def _encode_metadata(
    storage: _meta.Storage, arrays: dict[str, np.ndarray], policy: MetadataPolicy
) -> list[dict[str, Any]]:
    entries = []
    for key, value in storage.items():
        kind = "dict" if isinstance(key, _meta.DictMetaKey) else "meta"
        ident = (kind, key.name)
        if ident in policy.dropped:
            continue
        mark = len(arrays)
        try:
            if kind == "dict":
                encoded: Any = {
                    entry: [_encode(v, arrays, f"{key!r}[{entry!r}]") for v in seq]
                    for entry, seq in value.items()
                }
            else:
                encoded = [_encode(v, arrays, repr(key)) for v in value]
        except UnsupportedMetadata as exc:
            if not policy.drop_unsupported:
                raise
            if ident in policy.kept:
                raise IntroscopeError(
                    f"{exc} (with drop_unsupported_metadata=True: earlier batches stored this "
                    f"key, so it cannot be dropped now)"
                ) from None
            for name in list(arrays)[mark:]:
                del arrays[name]
            policy.dropped.add(ident)
            _logger.warning("Cacher: not caching metadata %r: %s", key, exc)
            continue
        policy.kept.add(ident)
        entries.append({"key": key.name, "kind": kind, "values": encoded})
    return entries


def _decode_metadata(entries: list[dict[str, Any]], arrays: Any) -> _meta.Storage:
    storage: _meta.Storage = {}
    for entry in entries:
        if entry["kind"] == "dict":
            key: Any = _meta.DictMetaKey(entry["key"])
            storage[key] = {n: _decode(seq, arrays) for n, seq in entry["values"].items()}
        else:
            storage[_meta.MetaKey(entry["key"])] = _decode(entry["values"], arrays)
    return storage


def _check_field(what: str, array: np.ndarray) -> None:
    if array.dtype.hasobject:
        raise IntroscopeError(
            f"{what} has dtype object; the cache stores only arrays that load without pickle "
            f"(numbers, bool, fixed-width strings)"
        )


def write_batch(path: pathlib.Path, batch: Batch, policy: MetadataPolicy) -> None:
    """Write ``batch`` to ``path`` (the caller renames it into place)."""
    s = batch._s
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {"version": FORMAT_VERSION, "size": s.batch_size, "fields": []}
    members: dict[str, np.ndarray] = {}
    for i, (name, array) in enumerate(s.fields.items()):
        _check_field(f"field {name!r}", array)
        header["fields"].append(name)
        members[f"f{i}"] = array
    header["snapshots"] = []
    for j, (snap_name, snap) in enumerate(s.snapshots.items()):
        names = []
        for k, (name, array) in enumerate(snap._s.fields.items()):
            _check_field(f"field {name!r} of snapshot {snap_name!r}", array)
            names.append(name)
            members[f"s{j}f{k}"] = array
        snap_meta = _encode_metadata(snap._s.metadata, arrays, policy)
        header["snapshots"].append({"name": snap_name, "fields": names, "metadata": snap_meta})
    header["metadata"] = _encode_metadata(s.metadata, arrays, policy)
    members.update(arrays)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    members["header"] = np.frombuffer(text, dtype=np.uint8)
    # The npz layout numpy itself writes (stored, zip64), without numpy.savez's pickle default.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in members.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fp:
                np.lib.format.write_array(fp, np.asanyarray(array), allow_pickle=False)


class _StoredNpz:
    """Reads members of an uncompressed ``.npz`` straight into their arrays, one read each.

    ``numpy.load`` copies a zip member through 256 KiB chunks, several times slower for large
    batches. With ``verify`` each member's CRC-32 is checked, as zipfile does (about 2 GB/s).
    """

    def __init__(self, path: pathlib.Path, verify: bool = True) -> None:
        self._path = path
        self._verify = verify
        self._file = open(path, "rb")  # noqa: SIM115 - closed by __exit__
        try:
            with zipfile.ZipFile(self._file) as zf:
                self._infos = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
        except (zipfile.BadZipFile, OSError) as exc:
            self._file.close()
            raise IntroscopeError(f"{path} is not a readable cache file: {exc}") from None

    def __enter__(self) -> _StoredNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def _corrupt(self, name: str, why: str) -> IntroscopeError:
        return IntroscopeError(f"{self._path} is corrupt: member {name!r} {why}")

    def __getitem__(self, name: str) -> np.ndarray:
        info = self._infos.get(name)
        if info is None:
            raise self._corrupt(name, "is missing")
        if info.compress_type != zipfile.ZIP_STORED:
            raise self._corrupt(name, "is compressed; caches store members uncompressed")
        f = self._file
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise self._corrupt(name, "has no zip header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise self._corrupt(name, f"has no valid .npy header ({exc})") from None
        if dtype.hasobject:
            raise self._corrupt(name, "has dtype object, which only pickle can load")
        header_len = f.tell() - start
        array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
        if header_len + array.nbytes != info.file_size:
            raise self._corrupt(name, "has the wrong size")
        if self._verify:
            f.seek(start)
            crc = zlib.crc32(f.read(header_len))
        if array.nbytes:
            buffer = memoryview(array.reshape(-1).view(np.uint8))
            if f.readinto(buffer) != array.nbytes:
                raise self._corrupt(name, "is truncated")
            if self._verify:
                crc = zlib.crc32(buffer, crc)
        if self._verify and crc != info.CRC:
            raise self._corrupt(name, "fails its CRC check")
        return array.T if fortran else array


def read_batch(path: pathlib.Path, verify: bool = True) -> Batch:
    """Load one batch written by :func:`write_batch` (checking CRCs with ``verify``)."""
    with _StoredNpz(path, verify) as z:
        try:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
        except ValueError as exc:
            raise IntroscopeError(f"{path} is corrupt: unreadable header ({exc})") from None
        if header.get("version") != FORMAT_VERSION:
            raise IntroscopeError(
                f"{path} is in cache format {header.get('version')}, this introscope reads "
                f"format {FORMAT_VERSION}; re-create the cache"
            )
        fields = {name: z[f"f{i}"] for i, name in enumerate(header["fields"])}
        snapshots = {}
        for j, snap in enumerate(header["snapshots"]):
            snap_fields = {name: z[f"s{j}f{k}"] for k, name in enumerate(snap["fields"])}
            snapshots[snap["name"]] = Batch._from_parts(
                snap_fields, None, _decode_metadata(snap["metadata"], z)
            )
        metadata = _decode_metadata(header["metadata"], z)
    batch = Batch._from_parts(fields, snapshots, metadata)
    if batch.batch_size != header["size"]:
        raise IntroscopeError(
            f"{path} is corrupt: it holds {batch.batch_size} elements, "
            f"its header says {header['size']}"
        )
    return batch
