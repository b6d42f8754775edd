"""Cacher and CachedProducer: one run upstream, any batch size after, no pickle, safe interrupts."""

import json
import logging
import os
import pathlib
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

import introscope.base._cacher as cacher_module
from introscope.base import Batch, CachedProducer, Cacher, peek_first_batch, pipeline
from introscope.exceptions import IntroscopeError

ID = Batch.StdKeys.IDENTIFIER
LABELS = Batch.StdKeys.LABELS
NOTE = Batch.MetaKey("note")


class Source:
    """n elements: x = [i, 2i] float32, LABELS["parity"]; counts calls and batches."""

    def __init__(self, n: int = 23, fail_at: int | None = None, ids: bool = False) -> None:
        self.n, self.fail_at, self.ids = n, fail_at, ids
        self.calls: list[int] = []
        self.yielded = 0

    def __call__(self, batch_size: int):
        self.calls.append(batch_size)
        for i, start in enumerate(range(0, self.n, batch_size)):
            if i == self.fail_at:
                raise OSError("upstream broke")
            idx = np.arange(start, min(start + batch_size, self.n))
            b = Batch.Builder({"x": np.stack([idx, 2 * idx], axis=1).astype(np.float32)})
            b.metadata[LABELS] = {"parity": ["even" if k % 2 == 0 else "odd" for k in idx]}
            if self.ids:
                b.metadata[ID] = [f"img{k}" for k in idx]
            self.yielded += 1
            yield b.make_batch()


def _x(batches) -> np.ndarray:
    return np.concatenate([b.fields["x"] for b in batches])


def _expected_x(n: int) -> np.ndarray:
    idx = np.arange(n)
    return np.stack([idx, 2 * idx], axis=1).astype(np.float32)


def _files(root: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_first_pass_caches_later_passes_read_at_any_size(tmp_path):
    source = Source(23)
    cacher = Cacher(tmp_path / "cache")
    producer = pipeline(source, cacher)
    assert not cacher.cached and source.calls == []

    first = list(producer(5))
    assert [b.batch_size for b in first] == [5, 5, 5, 5, 3]
    assert cacher.cached and source.calls == [5]
    for size, expected in [(5, [5, 5, 5, 5, 3]), (7, [7, 7, 7, 2]), (100, [23]), (1, [1] * 23)]:
        again = list(producer(size))
        assert [b.batch_size for b in again] == expected
        np.testing.assert_array_equal(_x(again), _expected_x(23))
        ids = sum((list(b.metadata[ID]) for b in again), [])
        assert ids == list(range(23))
        parity = sum((list(b.metadata[LABELS]["parity"]) for b in again), [])
        assert parity == ["even", "odd"] * 11 + ["even"]
    assert source.calls == [5]  # upstream ran once
    assert first == list(producer(5))  # the first pass yields what later passes read
    assert cacher.storage_path == (tmp_path / "cache").resolve()


def test_identifiers_added_only_when_missing(tmp_path):
    with_ids = pipeline(Source(4, ids=True), Cacher(tmp_path / "a"))
    list(with_ids(3))
    assert sum((list(b.metadata[ID]) for b in with_ids(3)), []) == ["img0", "img1", "img2", "img3"]
    without = pipeline(Source(4), Cacher(tmp_path / "b"))
    assert [list(b.metadata[ID]) for b in without(3)] == [[0, 1, 2], [3]]


def test_as_producer_cached_producer_and_copy_to(tmp_path):
    cacher = Cacher(tmp_path / "cache")
    producer = pipeline(Source(10), cacher)
    with pytest.raises(IntroscopeError, match="complete"):
        cacher.as_producer()
    list(producer(4))
    cached = cacher.as_producer()
    assert isinstance(cached, CachedProducer) and cached.num_elements == 10
    np.testing.assert_array_equal(_x(cached(3)), _expected_x(10))
    reopened = CachedProducer(str(tmp_path / "cache"))
    assert list(reopened(4)) == list(cached(4))
    assert list(CachedProducer(tmp_path / "cache", verify=False)(4)) == list(cached(4))

    copy = cached.copy_to(tmp_path / "copy")
    assert copy.storage_path == (tmp_path / "copy").resolve()
    assert list(copy(6)) == list(cached(6))
    with pytest.raises(IntroscopeError, match="overwrite=True"):
        cached.copy_to(tmp_path / "copy")
    other = pipeline(Source(3), Cacher(tmp_path / "other"))
    list(other(2))
    replaced = CachedProducer(tmp_path / "other").copy_to(tmp_path / "copy", overwrite=True)
    assert replaced.num_elements == 3
    assert len(list((tmp_path / "copy").glob("run-*"))) == 1  # the old copy was removed
    Cacher.clear(tmp_path / "cache")
    np.testing.assert_array_equal(_x(copy(8)), _expected_x(3))  # copies are independent


def test_misuse_errors(tmp_path):
    cacher = Cacher(tmp_path / "c")
    pipeline(Source(), cacher)
    with pytest.raises(IntroscopeError, match="already part of a pipeline"):
        pipeline(Source(), cacher)
    list(pipeline(Source(4), Cacher(tmp_path / "full"))(2))
    with pytest.raises(IntroscopeError, match="already holds a cache"):
        Cacher(tmp_path / "full")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IntroscopeError, match="holds no cached batches"):
        CachedProducer(tmp_path / "empty")
    with pytest.raises(IntroscopeError, match="does not exist"):
        CachedProducer(tmp_path / "missing")
    with pytest.raises(IntroscopeError, match="caching has not finished"):
        CachedProducer(cacher.storage_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(IntroscopeError, match="not a folder"):
        Cacher(tmp_path / "file")
    with pytest.raises(IntroscopeError, match="batch_size"):
        list(CachedProducer(tmp_path / "full")(0))


def test_a_cacher_never_serves_another_cachers_batches(tmp_path, caplog):
    def constant(value):
        def producer(batch_size):
            yield Batch({"x": np.full((2, 2), value, np.float32)})

        return producer

    # Both made before either runs: the second to finish must not read the first's cache.
    a, b = Cacher(tmp_path / "c"), Cacher(tmp_path / "c")
    pa, pb = pipeline(constant(1), a), pipeline(constant(2), b)
    assert [x.fields["x"][0, 0] for x in pa(2)] == [1]
    assert a.cached and not b.cached
    with pytest.raises(IntroscopeError, match="another Cacher finished caching"):
        list(pb(2))
    # Overlapping passes: the one that commits second is told, and its next pass raises.
    c, d = Cacher(tmp_path / "d"), Cacher(tmp_path / "d")
    pc, pd = pipeline(constant(1), c), pipeline(constant(2), d)
    first = pc(2)
    next(first)  # c's pass is under way
    assert [x.fields["x"][0, 0] for x in pd(2)] == [2]  # d finishes first
    with caplog.at_level(logging.WARNING, logger="introscope.base.cacher"):
        list(first)
    assert "another Cacher finished caching there first" in caplog.text
    assert d.cached and not c.cached
    with pytest.raises(IntroscopeError, match="another Cacher finished caching"):
        list(pc(2))
    assert [x.fields["x"][0, 0] for x in pd(2)] == [2]  # d reads its own cache


def test_the_lock_file_follows_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        cacher = Cacher(tmp_path / "c")
        passing = pipeline(Source(4), cacher)(2)
        next(passing)
        (run,) = (tmp_path / "c").glob("run-*")
        assert (run / ".lock").stat().st_mode & 0o777 == 0o664
        list(passing)
    finally:
        os.umask(old)


def test_default_storage_is_a_temporary_folder_and_clear(tmp_path):
    cacher = Cacher()
    try:
        assert cacher.storage_path.is_dir() and cacher.storage_path.name.startswith("introscope-")
    finally:
        Cacher.clear(cacher.storage_path)
    assert not cacher.storage_path.exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    list(pipeline(Source(4), Cacher(mine))(2))
    list(pipeline(Source(4), Cacher(tmp_path / "sub"))(2))
    Cacher.clear(tmp_path)  # clears caches in tmp_path's sub-folders
    assert _files(mine) == ["notes.txt"]  # only what the Cacher wrote is gone
    assert not (tmp_path / "sub").exists()
    with pytest.raises(NotADirectoryError):
        Cacher.clear(tmp_path / "nothing")


@pytest.fixture
def file_per_batch(monkeypatch):
    """Write every batch to its own file (small batches are normally joined into chunks)."""
    monkeypatch.setattr(cacher_module, "_CHUNK_BYTES", 0)


def test_small_batches_are_joined_into_chunks_and_read_back_unchanged(tmp_path):
    producer = pipeline(Source(40), Cacher(tmp_path / "c"))
    original = list(producer(3))  # 14 batches of a few bytes
    files = sorted((tmp_path / "c").rglob("batch-*.npz"))
    assert len(files) == 1
    again = list(producer(3))
    assert [b.batch_size for b in again] == [b.batch_size for b in original]
    for a, b in zip(original, again, strict=True):
        assert a.fields.keys() == b.fields.keys()
        for name in a.fields:
            np.testing.assert_array_equal(a.fields[name], b.fields[name])
        assert a.metadata[Batch.StdKeys.IDENTIFIER] == b.metadata[Batch.StdKeys.IDENTIFIER]


def test_large_batches_get_a_file_each(tmp_path, monkeypatch):
    monkeypatch.setattr(cacher_module, "_CHUNK_BYTES", 50)  # below one batch (64 bytes)
    list(pipeline(Source(40), Cacher(tmp_path / "c"))(8))
    assert len(list((tmp_path / "c").rglob("batch-*.npz"))) == 5


def test_no_pickle_on_disk_and_no_temp_files_left(tmp_path, file_per_batch):
    producer = pipeline(Source(9), Cacher(tmp_path / "c"))
    list(producer(4))
    files = _files(tmp_path / "c")
    assert not [f for f in files if f.endswith(".tmp")]
    npz = [tmp_path / "c" / f for f in files if f.endswith(".npz")]
    assert len(npz) == 3
    for path in npz:
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                assert not z[name].dtype.hasobject
        with zipfile.ZipFile(path) as zf:
            assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["elements"] == 9 and [b["size"] for b in manifest["batches"]] == [4, 4, 1]


def test_metadata_and_field_types_round_trip(tmp_path):
    n = 2
    b = Batch.Builder(
        {
            "f16": np.array([1.5, -2.0], dtype=np.float16),
            "flag": np.array([True, False]),
            "text": np.array(["ab", "cde"]),
            "cplx": np.array([1 + 2j, 3j]),
            "img": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
            "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            "when": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
            "record": np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        }
    )
    values = [
        (1, "a"),
        {"k": [1, 2], 3: None, (1, 2): "tuple key"},
        {1, 2},
        frozenset({"x"}),
        pathlib.Path("/data/img0.png"),
        pathlib.PurePosixPath("a/b"),
        b"\x00\xff",
        np.int8(-3),
        np.uint64(2**64 - 1),
        np.float32(0.1),
        np.float16(3.5),
        np.bool_(True),
        np.complex128(1 - 1j),
        np.datetime64("2024-01-02"),
        np.arange(3.0),
        float("nan"),
        float("inf"),
        2**80,
        None,
        3 + 4j,
        [[1, [2.5]], "s"],
        "plain",
        True,
    ]
    for i, v in enumerate(values):
        b.metadata[Batch.MetaKey(f"k{i}")] = [v, v]
    b.metadata[ID] = [("scene", 0), ("scene", 1)]
    b.metadata[LABELS] = {"digit": [np.int64(3), np.int64(7)], "name": ["three", "seven"]}
    b.metadata[Batch.DictMetaKey("k0")] = {"z": [1, 2]}  # same name as a MetaKey, other kind
    snap = Batch.Builder({"raw": np.array([[1, 2], [3, 4]], dtype=np.int16)})
    snap.metadata[NOTE] = ["s0", "s1"]
    b.snapshots["before"] = snap.make_batch()
    original = b.make_batch()

    producer = pipeline(lambda size: iter([original]), Cacher(tmp_path / "c"))
    list(producer(n))
    (loaded,) = list(CachedProducer(tmp_path / "c")(n))
    for name, arr in original.fields.items():
        assert loaded.fields[name].dtype == arr.dtype
        np.testing.assert_array_equal(loaded.fields[name], arr)
    for i, v in enumerate(values):
        got = loaded.metadata[Batch.MetaKey(f"k{i}")]
        for g in got:
            assert type(g) is type(v), (i, v, g)
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(g, v)
            elif isinstance(v, float) and np.isnan(v):
                assert np.isnan(g)
            else:
                assert g == v
                if isinstance(v, np.generic):
                    assert g.dtype == v.dtype
    assert loaded.metadata[ID] == [("scene", 0), ("scene", 1)]
    assert loaded.metadata[LABELS]["digit"] == [3, 7]
    assert loaded.metadata[LABELS]["digit"][0].dtype == np.int64
    assert loaded.metadata[Batch.DictMetaKey("k0")]["z"] == [1, 2]
    assert loaded.snapshots["before"] == original.snapshots["before"]
    with pytest.raises(ValueError, match="read-only"):
        loaded.fields["img"][0, 0, 0] = 1


class Opaque:
    pass


def _with_note(values):
    def produce(batch_size):
        for i, v in enumerate(values):
            b = Batch.Builder({"x": np.array([float(i)])})
            b.metadata[NOTE] = [v]
            yield b.make_batch()

    return produce


def test_unsupported_metadata_is_an_error_naming_the_key(tmp_path):
    cacher = Cacher(tmp_path / "c")
    with pytest.raises(IntroscopeError, match=r"MetaKey\('note'\).*Opaque.*drop_unsupported"):
        list(pipeline(_with_note(["fine", Opaque()]), cacher)(1))
    assert not cacher.cached
    assert not list((tmp_path / "c").glob("run-*"))
    object_field = pipeline(
        lambda n: iter([Batch({"obj": np.array([Opaque()], dtype=object)})]), Cacher()
    )
    with pytest.raises(IntroscopeError, match="field 'obj' has dtype object"):
        list(object_field(1))


def test_drop_unsupported_metadata(tmp_path, caplog):
    cacher = Cacher(tmp_path / "c", drop_unsupported_metadata=True)
    producer = pipeline(_with_note([Opaque(), "text"]), cacher)
    with caplog.at_level(logging.WARNING, logger="introscope"):
        first = list(producer(1))
    assert "not caching metadata" in caplog.text and "note" in caplog.text
    assert cacher.cached
    assert len(first) == 2 and all(
        NOTE not in b.metadata for b in first
    )  # first pass matches what is stored
    again = list(producer(2))
    assert NOTE not in again[0].metadata and again[0].metadata[ID] == [0, 1]
    # a key already stored cannot be dropped later: that would make batches disagree
    late = pipeline(
        _with_note(["text", Opaque()]), Cacher(tmp_path / "d", drop_unsupported_metadata=True)
    )
    with pytest.raises(IntroscopeError, match="earlier batches stored this key"):
        list(late(1))


def test_exception_midway_leaves_no_cache_and_next_pass_recaches(tmp_path):
    source = Source(30, fail_at=3)
    cacher = Cacher(tmp_path / "c")
    producer = pipeline(source, cacher)
    with pytest.raises(OSError, match="upstream broke"):
        list(producer(4))
    assert source.yielded == 3 and not cacher.cached
    assert _files(tmp_path / "c") == [".introscope-cache"]
    with pytest.raises(IntroscopeError, match="caching has not finished"):
        CachedProducer(tmp_path / "c")
    source.fail_at = None
    np.testing.assert_array_equal(_x(producer(4)), _expected_x(30))
    assert cacher.cached and source.calls == [4, 4]
    np.testing.assert_array_equal(_x(producer(11)), _expected_x(30))
    ids = sum((list(b.metadata[ID]) for b in producer(7)), [])
    assert ids == list(range(30))  # numbering restarts with the pass that completed


def test_consumer_stopping_early_does_not_complete_the_cache(tmp_path):
    source = Source(30)
    cacher = Cacher(tmp_path / "c")
    producer = pipeline(source, cacher)
    assert peek_first_batch(producer, 4).batch_size == 4
    assert not cacher.cached and not list((tmp_path / "c").glob("run-*"))
    list(producer(4))
    assert cacher.cached and source.calls == [4, 4]


def test_reads_are_lazy(tmp_path, monkeypatch, file_per_batch):
    list(pipeline(Source(40), Cacher(tmp_path / "c"))(4))
    reads = []
    real = cacher_module.read_batch
    monkeypatch.setattr(cacher_module, "read_batch", lambda p, *a: reads.append(p) or real(p, *a))
    it = iter(CachedProducer(tmp_path / "c")(4))
    next(it)
    assert len(reads) == 1
    next(it)
    assert len(reads) == 2
    first = next(iter(CachedProducer(tmp_path / "c")(6)))
    assert first.batch_size == 6 and len(reads) == 4  # two stored batches make one of 6


def test_empty_producer_makes_an_empty_cache(tmp_path):
    cacher = Cacher(tmp_path / "c")
    producer = pipeline(lambda n: iter(()), cacher)
    assert list(producer(3)) == []
    assert cacher.cached and cacher.as_producer().num_elements == 0
    with pytest.raises(IntroscopeError, match="yielded no batch"):
        peek_first_batch(cacher.as_producer())


def test_damaged_cache_is_detected(tmp_path, file_per_batch):
    list(pipeline(Source(8), Cacher(tmp_path / "c"))(4))
    (victim,) = [p for p in (tmp_path / "c").rglob("batch-000001.npz")]
    data = bytearray(victim.read_bytes())
    with zipfile.ZipFile(victim) as zf:
        info = zf.getinfo("f0.npy")  # field "x"
    off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[off + 26 : off + 30])  # zip local header
    data[off + 30 + name_len + extra_len + info.file_size - 3] ^= 0xFF  # inside x's data
    victim.write_bytes(bytes(data))
    with pytest.raises(IntroscopeError, match="batch-000001.npz is corrupt.*CRC"):
        list(CachedProducer(tmp_path / "c")(4))
    victim.write_bytes(bytes(data[:-10]))
    with pytest.raises(IntroscopeError, match="damaged.*batch-000001.npz"):
        CachedProducer(tmp_path / "c")
    with pytest.raises(IntroscopeError, match="damaged.*batch-000001.npz"):
        CachedProducer(tmp_path / "c", verify=False)  # sizes are checked either way
    victim.unlink()
    with pytest.raises(IntroscopeError, match="missing"):
        CachedProducer(tmp_path / "c")


_KILLED_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    import numpy as np
    from introscope.base import Batch, Cacher, pipeline
    import introscope.base._cacher as cacher_module

    cacher_module._CHUNK_BYTES = 0  # one file per batch, so a killed pass leaves some behind
    root, ready = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

    def slow(batch_size):
        for i in range(10):
            if i == 3:
                ready.write_text("3 batches cached")
                time.sleep(120)  # killed here
            yield Batch({"x": np.full((batch_size, 2), float(i))})

    for _ in pipeline(slow, Cacher(root))(4):
        pass
    """
)


def test_killed_process_leaves_no_readable_cache_and_next_run_recaches(tmp_path):
    root, ready = tmp_path / "cache", tmp_path / "ready"
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_SCRIPT)
    env = {**os.environ, "INTROSCOPE_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer never got halfway"
            time.sleep(0.05)
        written = [p for p in root.rglob("batch-*.npz")]
        assert len(written) == 3  # midway: three batches are on disk
        with pytest.raises(IntroscopeError, match="being written by another Cacher"):
            Cacher(root)  # a live writer is not disturbed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with pytest.raises(IntroscopeError, match="unfinished cache"):
        CachedProducer(root)
    cacher = Cacher(root)  # detects the dead run and removes it
    assert not list(root.glob("run-*"))
    source = Source(10)
    out = list(pipeline(source, cacher)(4))
    assert cacher.cached and len(out) == 3
    np.testing.assert_array_equal(_x(CachedProducer(root)(10)), _expected_x(10))
    assert len(list(root.glob("run-*"))) == 1


def test_metadata_only_batches_cache_and_rebatch(tmp_path):
    def only_metadata(batch_size):
        for start in range(0, 5, batch_size):
            b = Batch.Builder()
            b.metadata[NOTE] = [f"n{i}" for i in range(start, min(start + batch_size, 5))]
            yield b.make_batch()

    producer = pipeline(only_metadata, Cacher(tmp_path / "c"))
    list(producer(2))
    out = list(producer(3))
    assert [dict(b.fields) for b in out] == [{}, {}]
    assert [b.metadata[NOTE] for b in out] == [["n0", "n1", "n2"], ["n3", "n4"]]
    assert [b.metadata[ID] for b in out] == [[0, 1, 2], [3, 4]]


def test_same_batches_and_identifiers_as_dnikit(tmp_path):
    x = np.random.default_rng(0).standard_normal((11, 3)).astype(np.float32)
    script = """
    import pathlib
    from dnikit.base import Batch, pipeline
    from dnikit.processors import Cacher

    def produce(batch_size):
        for s in range(0, 11, batch_size):
            yield Batch({"x": arrays["x"][s:s + batch_size]})

    producer = pipeline(produce, Cacher(pathlib.Path("cache")))
    first = [b.batch_size for b in producer(4)]
    again = list(producer(3))
    result = {
        "first": first,
        "sizes": [b.batch_size for b in again],
        "ids": [list(b.metadata[Batch.StdKeys.IDENTIFIER]) for b in again],
        "x": np.concatenate([b.fields["x"] for b in again]).tolist(),
    }
    """
    ref = run_dnikit(script, {"x": x}, tmp_path / "dnikit")

    def produce(batch_size):
        for s in range(0, 11, batch_size):
            yield Batch({"x": x[s : s + batch_size]})

    producer = pipeline(produce, Cacher(tmp_path / "ours"))
    assert [b.batch_size for b in producer(4)] == ref["first"]
    again = list(producer(3))
    assert [b.batch_size for b in again] == ref["sizes"]
    assert [list(b.metadata[ID]) for b in again] == ref["ids"]
    np.testing.assert_array_equal(_x(again), np.asarray(ref["x"], dtype=np.float32))


def test_a_dnikit_cache_folder_is_named_not_read_or_mixed(tmp_path) -> None:
    from introscope.base import CachedProducer
    from introscope.exceptions import IntroscopeError

    (tmp_path / ".dni_cache_dir").touch()  # what DNIKit 2.0's Cacher leaves
    (tmp_path / ".cache.done").touch()
    (tmp_path / "0.pkl").write_bytes(b"not read")
    with pytest.raises(IntroscopeError, match="holds a DNIKit cache"):
        CachedProducer(tmp_path)
    with pytest.raises(IntroscopeError, match="holds a DNIKit cache"):
        Cacher(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache.done", ".dni_cache_dir", "0.pkl"]
