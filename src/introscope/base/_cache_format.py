"""On-disk form of one cached batch: an uncompressed ``.npz`` with arrays and a JSON header.

No pickle: fields, snapshot fields and array-valued metadata are ``.npy`` members written with
``allow_pickle=False``; every other metadata value is JSON with a small tagged encoding that
keeps tuples, dicts with any keys, sets, paths, bytes and numpy scalars round-tripping exactly
(:mod:`._cache_metadata`). Members are 64-byte aligned, so :mod:`._stored_npz` reads a file with
one read and no copies.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import zipfile
from typing import Any

import numpy as np

from introscope.exceptions import IntroscopeError

from ._batch import Batch
from ._cache_metadata import (  # noqa: F401 - re-exported: the cache's names at their old path
    _PATH_TYPES,
    _PLAIN,
    _STRS_MIN,
    _STRS_SEP,
    _TAG,
    MetadataPolicy,
    UnsupportedMetadata,
    _decode,
    _decode_metadata,
    _encode,
    _encode_metadata,
    _encode_sequence,
    _plain_array,
    check_metadata,
)
from ._stored_npz import (  # noqa: F401 - re-exported
    _VERIFIED,
    _VERIFIED_MAX,
    _crc32,
    _Member,
    _stamp,
    _StoredNpz,
    remember_verified,
)

FORMAT_VERSION = 2  # 2: long lists of strings may be one member (tag "strs"); 1 still reads
READABLE_VERSIONS = (1, 2)
_ALIGN = 64  # members' data start on 64-byte boundaries of the file (numpy pads .npy headers)
_PAD_FIELD = 0xD935  # the zip extra-field id zipalign uses for alignment padding


def batch_nbytes(batch: Batch) -> int:
    """Bytes of a batch's field arrays, snapshots included."""
    s = batch._s
    return sum(a.nbytes for a in s.fields.values()) + sum(
        batch_nbytes(snap) for snap in s.snapshots.values()
    )


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


def _layout(array: np.ndarray) -> list[Any] | None:
    if array.dtype.fields is not None or array.dtype.subdtype is not None:
        return None  # structured dtypes: read through numpy's header parser
    # numpy.lib.format writes an array in Fortran order exactly when it is F- but not C-contiguous
    fortran = bool(array.flags.f_contiguous and not array.flags.c_contiguous)
    return [array.dtype.str, list(array.shape), fortran]


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
