"""Reading a cached batch file: one read into a pooled buffer, arrays as views of its bytes.

``_StoredNpz`` reads the uncompressed ``.npz`` that ``write_batch`` writes (or any stored
``.npz``), checks each member's CRC-32 once per file and process (``remember_verified``), and
hands out read-only arrays without copying the aligned members.
"""

from __future__ import annotations

import io
import os
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

from ._read_buffers import read_whole

__all__ = ["_VERIFIED", "_StoredNpz", "_crc32", "remember_verified"]

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
