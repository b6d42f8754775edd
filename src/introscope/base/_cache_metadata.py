"""Metadata of a cached batch as JSON: a tagged encoding of non-JSON values, and its policy.

Exact types round-trip: tuples, dicts with any keys, sets, paths, bytes, complex and numpy
scalars are tagged JSON; arrays (and long lists of str, one UTF-8 member) are ``.npy`` members
of the batch file, referenced by name. A value the cache cannot store without pickle raises
``UnsupportedMetadata``, or is dropped under ``MetadataPolicy(drop_unsupported=True)``.
"""

from __future__ import annotations

import base64
import logging
import pathlib
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError

from . import _metadata as _meta
from ._batch import Batch

_logger = logging.getLogger("introscope.base.cacher")

# A list of at least this many str (identifiers, paths, labels) is stored as one UTF-8 member,
# its items joined by NUL (when no item holds one): splitting it back is ~10x faster than
# parsing the same list from JSON and checking each item's type.
_STRS_MIN = 32
_STRS_SEP = "\x00"
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


def _plain_array(array: np.ndarray) -> bool:
    """An ndarray whose data is all there is to it (a memmap is a file-backed plain array)."""
    return type(array) is np.ndarray or isinstance(array, np.memmap)
