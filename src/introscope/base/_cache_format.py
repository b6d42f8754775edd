"""On-disk form of one cached batch: an uncompressed ``.npz`` with arrays and a JSON header.

No pickle: fields, snapshot fields and array-valued metadata are ``.npy`` members written with
``allow_pickle=False``; every other metadata value is JSON with a small tagged encoding that
keeps tuples, dicts with any keys, sets, paths, bytes and numpy scalars round-tripping exactly.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import pathlib
import struct
import zipfile
import zlib
from collections import OrderedDict

try:  # the zip format's CRC-32, vectorised; the same values as zlib.crc32
    from zlib_ng.zlib_ng import crc32 as _crc32
except ImportError:  # pragma: no cover - zlib-ng is a dependency; a source build may lack it
    _crc32 = zlib.crc32
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

from . import _metadata as _meta
from ._batch import Batch
from ._read_buffers import read_whole

_logger = logging.getLogger("introscope.base.cacher")

FORMAT_VERSION = 2  # 2: long lists of strings may be one member (tag "strs"); 1 still reads
READABLE_VERSIONS = (1, 2)
# A list of at least this many str (identifiers, paths, labels) is stored as one UTF-8 member,
# its items joined by NUL (when no item holds one): splitting it back is ~10x faster than
# parsing the same list from JSON and checking each item's type.
_STRS_MIN = 32
_STRS_SEP = "\x00"
_ALIGN = 64  # members' data start on 64-byte boundaries of the file (numpy pads .npy headers)
_PAD_FIELD = 0xD935  # the zip extra-field id zipalign uses for alignment padding
_TAG = "~"
_PATH_TYPES = {
    cls.__name__: cls
    for cls in (pathlib.Path, pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath)
}


class UnsupportedMetadata(IntroscopeError):
    """A metadata value that the cache cannot store without pickle."""

    def __init__(self, key: str, value: Any) -> None:
        #: what cannot be stored, without the advice (the warning of a Cacher that drops it)
        self.reason = (
            f"metadata {key} holds a {type(value).__module__}.{type(value).__qualname__} that "
            f"the cache cannot store without pickle (it stores None, bool, int, float, complex, "
            f"str, bytes, paths, numpy scalars and plain non-object arrays, and lists, tuples, "
            f"sets and dicts of those)"
        )
        super().__init__(
            f"{self.reason}. Convert it, remove the key with MetadataRemover before the "
            f"Cacher, or pass Cacher(..., drop_unsupported_metadata=True)"
        )
        self.key = key


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    # Exact types only: a subclass (an IntEnum, a StrEnum) would come back as its base type.
    if value is None or type(value) in (bool, str, int, float):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or not _plain_array(value):
            raise UnsupportedMetadata(where, value)  # a subclass would lose its meaning
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


def _encode_sequence(values: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """A metadata sequence: one member for a long list of str, else a JSON list."""
    if len(values) >= _STRS_MIN and type(values) is list and all(type(v) is str for v in values):
        joined = _STRS_SEP.join(values)
        if joined.count(_STRS_SEP) == len(values) - 1:  # no item holds the separator
            name = f"m{len(arrays)}"
            arrays[name] = np.frombuffer(joined.encode("utf-8", "surrogatepass"), np.uint8)
            return {_TAG: "strs", "ref": name, "n": len(values)}
    return [_encode(v, arrays, where) for v in values]


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _decode(data: Any, arrays: Any) -> Any:
    if isinstance(data, list):
        if _PLAIN.issuperset(map(type, data)):
            return data  # a fresh list from json.loads: identifiers, labels, paths as str
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data[_TAG]
    if tag == "strs":
        items = arrays[data["ref"]].tobytes().decode("utf-8", "surrogatepass").split(_STRS_SEP)
        if len(items) != data["n"]:
            raise IntroscopeError(
                f"a cached list of strings holds {len(items)} items, its header says {data['n']}"
            )
        return items
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
                    entry: _encode_sequence(seq, arrays, f"{key!r}[{entry!r}]")
                    for entry, seq in value.items()
                }
            else:
                encoded = _encode_sequence(value, arrays, repr(key))
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
            _logger.warning(
                "Cacher: not caching metadata %r (drop_unsupported_metadata=True): %s",
                key,
                exc.reason,
            )
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


def check_metadata(batch: Batch, policy: MetadataPolicy) -> None:
    """Apply ``policy`` to the batch's metadata now (drop or raise), as writing it would."""
    s = batch._s
    _encode_metadata(s.metadata, {}, policy)
    for snap in s.snapshots.values():
        _encode_metadata(snap._s.metadata, {}, policy)


def batch_nbytes(batch: Batch) -> int:
    """Bytes of a batch's field arrays, snapshots included."""
    s = batch._s
    return sum(a.nbytes for a in s.fields.values()) + sum(
        batch_nbytes(snap) for snap in s.snapshots.values()
    )


def _plain_array(array: np.ndarray) -> bool:
    """An ndarray whose data is all there is to it (a memmap is a file-backed plain array)."""
    return type(array) is np.ndarray or isinstance(array, np.memmap)


def _check_field(what: str, array: np.ndarray) -> None:
    if array.dtype.hasobject:
        raise IntroscopeError(
            f"{what} has dtype object; the cache stores only arrays that load without pickle "
            f"(numbers, bool, fixed-width strings)"
        )
    # ndarray subclasses are refused rather than stored as their data: a mask, or what a
    # matrix, recarray or a library's subclass means, would be silently lost in the read-back
    # (a mask could be stored, but one clear rule beats a list of special cases).
    if isinstance(array, np.ma.MaskedArray):
        raise IntroscopeError(
            f"{what} is a numpy.ma.MaskedArray; the cache stores plain arrays and would drop its "
            f"mask. Before the Cacher, pass the data as plain arrays, e.g. x.filled(fill_value), "
            f"and the mask as its own field (numpy.ma.getmaskarray(x))"
        )
    if not _plain_array(array):
        kind = f"{type(array).__module__}.{type(array).__qualname__}"
        raise IntroscopeError(
            f"{what} is a {kind} (a numpy.ndarray subclass); the cache stores plain arrays and "
            f"would lose what the subclass adds. Before the Cacher, pass numpy.asarray(x) "
            f"(for a recarray: x.view(numpy.ndarray), which keeps its structured dtype)"
        )


def check_fields(batch: Batch) -> None:
    """Refuse (``IntroscopeError``) fields, snapshots' too, that the cache cannot store."""
    s = batch._s
    for name, array in s.fields.items():
        _check_field(f"field {name!r}", array)
    for snap_name, snap in s.snapshots.items():
        for name, array in snap._s.fields.items():
            _check_field(f"field {name!r} of snapshot {snap_name!r}", array)


def write_batch(path: pathlib.Path, batch: Batch, policy: MetadataPolicy) -> dict[str, list[int]]:
    """Write ``batch`` to ``path`` (the caller renames it into place); return its member index.

    The index maps each member to ``[offset, length, crc32, 0]`` of its bytes in the file, for
    ``read_batch`` to read the file without parsing the zip structure.
    """
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
    # dtype and shape of every member, so a read needs no .npy header parsing (optional: caches
    # written without it are read through numpy's header parser)
    header["layout"] = {name: _layout(np.asanyarray(a)) for name, a in members.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    members["header"] = np.frombuffer(text, dtype=np.uint8)
    # The npz layout numpy itself writes (stored, zip64), without numpy.savez's pickle default,
    # with every member's data 64-byte aligned in the file (as Android's zipalign does, with a
    # padding extra field), so a reader can use the bytes it read in place.
    index: dict[str, list[int]] = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            # local header: 30 bytes + name + our padding field (4 + pad) + zip64 field (20)
            assert zf.fp is not None  # open: inside the with block
            fixed = zf.fp.tell() + 30 + len(info.filename.encode()) + 4 + 20
            pad = -fixed % _ALIGN
            info.extra = struct.pack("<HH", _PAD_FIELD, pad) + b"\0" * pad
            with zf.open(info, "w", force_zip64=True) as fp:
                begin = zf.fp.tell()  # where the member's bytes (.npy header, data) start
                np.lib.format.write_array(fp, np.asanyarray(array), allow_pickle=False)
            index[name] = [begin, 0, 0, 0]
        for info in zf.infolist():
            entry = index[info.filename.removesuffix(".npy")]
            entry[1], entry[2] = info.file_size, info.CRC
    return index


# Files whose every member passed its CRC check in this process (or that this process wrote),
# with the (inode, size, mtime) they had then: a later read of the unchanged file skips the CRCs.
_VERIFIED: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
_VERIFIED_MAX = 200_000


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def remember_verified(path: str, stamp: tuple[int, int, int] | None = None) -> None:
    """Record that ``path`` (as it is now, or as ``stamp`` says) holds intact members."""
    key = os.path.abspath(path)
    _VERIFIED[key] = _stamp(os.stat(key)) if stamp is None else stamp
    _VERIFIED.move_to_end(key)
    while len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)


class _Member:
    """What ``_StoredNpz`` needs of a member: its length and CRC (a ZipInfo has both)."""

    __slots__ = ("file_size", "CRC", "compress_type")

    def __init__(self, file_size: int, crc: int) -> None:
        self.file_size = file_size
        self.CRC = crc
        self.compress_type = zipfile.ZIP_STORED


def _layout(array: np.ndarray) -> list[Any] | None:
    if array.dtype.fields is not None or array.dtype.subdtype is not None:
        return None  # structured dtypes: read through numpy's header parser
    # numpy.lib.format writes an array in Fortran order exactly when it is F- but not C-contiguous
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    return [array.dtype.str, list(array.shape), fortran]


class _StoredNpz:
    """Reads an uncompressed ``.npz`` with one read; its arrays are read-only views of the bytes
    (read into a pooled buffer, ``_read_buffers``).

    ``numpy.load`` copies each zip member through 256 KiB chunks, several times slower for large
    batches. Members written by ``write_batch`` are 64-byte aligned, so no array is copied
    (one of an older, unaligned file is). With ``verify`` each member's CRC-32 is checked, as
    zipfile does, with zlib-ng's vectorised CRC (a dependency; the standard library's is many
    times slower), once per file and process: a file this process wrote or already checked is
    not checked again while its inode, size and modification time stay the same. ``index``
    (from the manifest) saves parsing the zip directory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        verify: bool = True,
        index: dict[str, list[int]] | None = None,
    ) -> None:
        self._path = path
        self._verify = verify
        self.layout: dict[str, Any] | None = None
        try:
            with open(path, "rb", buffering=0) as f:
                raw = read_whole(f)
                stamp = _stamp(os.fstat(f.fileno()))
        except OSError as exc:
            raise IntroscopeError(f"{path} is not a readable cache file: {exc}") from None
        key = os.path.abspath(path)
        if verify and _VERIFIED.get(key) == stamp:
            self._verify = False  # checked (or written) by this process and not changed since
        self._verified = (key, stamp) if self._verify else None
        self._raw = raw
        if index is not None:
            self._starts = {
                name: (_Member(length, crc), offset)
                for name, (offset, length, crc, _) in index.items()
            }
        else:
            self._starts = self._zip_directory()

    def _zip_directory(self) -> dict[str, tuple[Any, int]]:
        raw = self._raw
        try:
            with zipfile.ZipFile(io.BytesIO(raw.tobytes())) as zf:
                infos = zf.infolist()
        except zipfile.BadZipFile as exc:
            raise IntroscopeError(f"{self._path} is not a readable cache file: {exc}") from None
        starts: dict[str, tuple[Any, int]] = {}
        for info in infos:
            name = info.filename.removesuffix(".npy")
            local = raw[info.header_offset : info.header_offset + 30].tobytes()
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise self._corrupt(name, "has no zip header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            starts[name] = (info, info.header_offset + 30 + name_len + extra_len)
        return starts

    def __enter__(self) -> _StoredNpz:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None and self._verified is not None:
            remember_verified(*self._verified)

    def _corrupt(self, name: str, why: str) -> IntroscopeError:
        return IntroscopeError(f"{self._path} is corrupt: member {name!r} {why}")

    def __getitem__(self, name: str) -> np.ndarray:
        entry = self._starts.get(name)
        if entry is None:
            raise self._corrupt(name, "is missing")
        info, start = entry
        if info.compress_type != zipfile.ZIP_STORED:
            raise self._corrupt(name, "is compressed; caches store members uncompressed")
        raw = self._raw
        member = raw[start : start + info.file_size]
        if len(member) != info.file_size:
            raise self._corrupt(name, "is truncated")
        if self._verify and _crc32(member) != info.CRC:
            raise self._corrupt(name, "fails its CRC check")
        if self.layout is not None:
            known = self.layout.get(name)
        elif name == "header":  # the JSON header itself: bytes; its length follows from the size
            known = ["|u1", [-1], False]
        else:
            known = None
        if known is not None and bytes(member[:6]) == b"\x93NUMPY" and member[6] == 1:
            header_len = 10 + int(member[8]) + (int(member[9]) << 8)
            dtype, shape, fortran = np.dtype(known[0]), tuple(known[1]), bool(known[2])
            if shape == (-1,):
                shape = ((info.file_size - header_len) // dtype.itemsize,)
        else:
            dtype, shape, fortran, header_len = self._parse_header(name, member)
        if dtype.hasobject:
            raise self._corrupt(name, "has dtype object, which only pickle can load")
        count = int(np.prod(shape, dtype=np.int64))
        if header_len + count * dtype.itemsize != info.file_size:
            raise self._corrupt(name, "has the wrong size")
        data = member[header_len:]
        array = np.frombuffer(data, dtype=dtype, count=count)
        if dtype.alignment > 1 and not array.flags.aligned:
            array = array.copy()
        array = array.reshape(shape[::-1] if fortran else shape)
        return array.T if fortran else array

    def _parse_header(
        self, name: str, member: np.ndarray
    ) -> tuple[np.dtype, tuple[int, ...], bool, int]:
        stream = io.BytesIO(member[:65536].tobytes())
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise IntroscopeValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise self._corrupt(name, f"has no valid .npy header ({exc})") from None
        return dtype, tuple(shape), fortran, stream.tell()


def read_batch(
    path: str | os.PathLike[str], verify: bool = True, index: dict[str, list[int]] | None = None
) -> Batch:
    """Load one batch written by ``write_batch`` (checking CRCs with ``verify``).

    ``index`` is what ``write_batch`` returned (kept in the manifest): the file is then read
    without parsing its zip structure; without it the zip directory is read.
    """
    with _StoredNpz(path, verify, index) as z:
        try:
            header = json.loads(z["header"].tobytes().decode("utf-8"))
        except ValueError as exc:
            raise IntroscopeError(f"{path} is corrupt: unreadable header ({exc})") from None
        z.layout = header.get("layout")
        if header.get("version") not in READABLE_VERSIONS:
            raise IntroscopeError(
                f"{path} is in cache format {header.get('version')}, this introscope reads "
                f"formats {', '.join(map(str, READABLE_VERSIONS))}; re-create the cache"
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
