"""Cache file bytes: memory-mapped on POSIX; pooled read buffers, reused only when nothing refers
to them and never overwritten in use."""

from __future__ import annotations

import gc
import mmap
import os

import numpy as np
import pytest

from introscope.base import _read_buffers as rb


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    monkeypatch.setattr(rb, "_pool", [])


def write(tmp_path, name: str, payload: bytes):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


def read(path, allow_mmap=False):
    with open(path, "rb", buffering=0) as f:
        return rb.read_whole(f, allow_mmap=allow_mmap)


def root_of(array):
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


@pytest.mark.skipif(os.name != "posix", reason="mapped on POSIX only")
def test_files_are_mapped_read_only_and_survive_an_atomic_rewrite(tmp_path, monkeypatch):
    path = write(tmp_path, "a", b"old!" * 3000)
    got = read(path, allow_mmap=None)
    assert isinstance(root_of(got), mmap.mmap) and not got.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        got[0] = 1
    # a cache is rewritten by writing a new file and renaming it over the old one
    new = write(tmp_path, "a.tmp", b"new!" * 10)
    os.replace(new, path)
    assert got[:4].tobytes() == b"old!" and len(got) == 12000
    assert read(path, allow_mmap=None).tobytes() == b"new!" * 10
    monkeypatch.setenv("INTROSCOPE_CACHE_MMAP", "0")
    assert not isinstance(root_of(read(path, allow_mmap=None)), mmap.mmap)


def test_a_buffer_in_use_is_never_overwritten(tmp_path):
    a = read(write(tmp_path, "a", b"A" * 5000))
    view = a[10:20].view(np.uint16)  # a view of a view keeps the buffer alive too
    del a
    b = read(write(tmp_path, "b", b"B" * 5000))
    assert view.tobytes() == b"A" * 10 and bytes(b[:3]) == b"BBB"
    assert not view.flags.writeable and not b.flags.writeable
    assert len(rb._pool) == 2


def test_a_free_buffer_is_reused_and_grown(tmp_path):
    first = read(write(tmp_path, "a", b"x" * 4096))
    base = id(first.base)  # not the buffer itself: a reference would keep it in use
    del first
    gc.collect()
    again = read(write(tmp_path, "b", b"y" * 4000))
    assert id(again.base) == base and bytes(again[:2]) == b"yy" and len(again) == 4000
    del again
    bigger = read(write(tmp_path, "c", b"z" * 10000))
    assert len(rb._pool) == 1 and rb._pool[0].size >= 10000 and bytes(bigger[-1:]) == b"z"


def test_pool_keeps_a_few_buffers_and_large_files_get_their_own(tmp_path, monkeypatch):
    held = [read(write(tmp_path, f"f{i}", bytes([i]) * 100)) for i in range(rb._KEEP + 2)]
    assert len(rb._pool) == rb._KEEP
    assert [int(h[0]) for h in held] == list(range(rb._KEEP + 2))
    monkeypatch.setattr(rb, "_MAX_POOLED", 50)
    del held
    big = read(write(tmp_path, "big", b"q" * 100))
    assert all(big.base is not buf for buf in rb._pool)


def test_truncated_or_empty_files(tmp_path):
    assert len(read(write(tmp_path, "empty", b""))) == 0

    class Short:
        def __init__(self, real):
            self.real = real

        def fileno(self):
            return self.real.fileno()

        def readinto(self, view):
            return 0  # the file shrank after its size was read

    path = write(tmp_path, "short", b"s" * 100)
    with open(path, "rb", buffering=0) as f, pytest.raises(OSError, match="ended after 0 of"):
        rb.read_whole(Short(f), allow_mmap=False)
