"""Cache fixes from audit 6: concurrent commits, dtype-preserving joins, ndarray subclasses,
Cacher.clear() skipping other users' caches, forked children and the run lock, and warnings."""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing as mp
import os
import pathlib
import threading

import numpy as np
import pytest

import introscope.base._cache_runs as runs
import introscope.base._cacher as cacher_module
from introscope.base import Batch, CachedProducer, Cacher, pipeline, producer_from_batches
from introscope.exceptions import IntroscopeError
from introscope.processors import Processor, SnapshotSaver

LOGGER = "introscope.base.cacher"
FORK = mp.get_context("fork")


def _constant(value, n=5):
    def producer(batch_size):
        yield Batch({"x": np.full(n, value, np.float64)})

    return producer


def _values(root) -> list[float]:
    return [v for b in CachedProducer(root)(100) for v in b.fields["x"].tolist()]


def _leftovers(root: pathlib.Path) -> list[str]:
    """Files a finished cache folder should not hold: lock files, temporary files."""
    return sorted(p.name for p in root.iterdir() if p.name.endswith((".lock", ".tmp")))


# 1. concurrent commits ------------------------------------------------------------------------


def test_two_cachers_committing_at_once_leave_one_readable_cache(tmp_path, monkeypatch, caplog):
    # Both writers pass the start of commit together (threads stand in for processes; the
    # barrier is where the auditor's race_det.py put it, right before the manifest is written).
    root = tmp_path / "c"
    before, after = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)
    write = runs._write_json_atomic

    def in_step(path, data):
        before.wait()
        write(path, data)
        after.wait()

    monkeypatch.setattr(runs, "_write_json_atomic", in_step)
    a, b = Cacher(root), Cacher(root)
    errors: list[BaseException] = []

    def run(cacher, value):
        try:
            list(pipeline(_constant(value), cacher)(5))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        threads = [threading.Thread(target=run, args=x) for x in ((a, 0.0), (b, 1.0))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert not errors
    assert sorted([a.cached, b.cached]) == [False, True]
    winner = 0.0 if a.cached else 1.0
    assert _values(root) == [winner] * 5
    assert "another Cacher finished caching there first" in caplog.text
    assert len(list(root.glob("run-*"))) == 1 and _leftovers(root) == []


def _racing_writer(root: str, value: float, barrier, results) -> None:
    """A real process: made before the other's pass starts; meets it at the start of commit."""
    commit = runs._RunWriter.commit

    def met(self, **kwargs):
        barrier.wait(10)
        return commit(self, **kwargs)

    runs._RunWriter.commit = met  # type: ignore[method-assign]  # this child only
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger(LOGGER).addHandler(handler)
    try:
        cacher = Cacher(root)
        barrier.wait(10)  # both made before either pass starts (as two jobs loading a model)
        got = [b.fields["x"][0] for b in pipeline(_constant(value), cacher)(5)]
        results.put((value, cacher.cached, got == [value], " ".join(messages), None))
    except BaseException as exc:  # noqa: BLE001 - sent to the test
        results.put((value, None, None, "", f"{type(exc).__name__}: {exc}"))


def test_two_processes_committing_at_once_leave_one_readable_cache(tmp_path):
    for attempt in range(4):
        root = tmp_path / f"c{attempt}"
        barrier, results = FORK.Barrier(2), FORK.Queue()
        procs = [
            FORK.Process(target=_racing_writer, args=(str(root), v, barrier, results))
            for v in (1.0, 2.0)
        ]
        for p in procs:
            p.start()
        got = sorted(results.get(timeout=20) for _ in procs)
        for p in procs:
            p.join(10)
        assert [g[4] for g in got] == [None, None], got  # no raw FileNotFoundError, no error
        assert all(g[2] for g in got)  # each pass yielded its own batches
        cached = [g[0] for g in got if g[1]]
        assert len(cached) == 1, got
        loser = next(g for g in got if not g[1])
        assert "another Cacher finished caching there first" in loser[3]
        assert _values(root) == cached * 5
        assert len(list(root.glob("run-*"))) == 1 and _leftovers(root) == []


def test_a_commit_never_removes_a_live_writers_run(tmp_path, caplog):
    root = tmp_path / "c"
    slow, fast = Cacher(root), Cacher(root)
    under_way = pipeline(_constant(1.0), slow)(5)
    batches = [next(under_way)]  # slow's run exists and is locked
    list(pipeline(_constant(2.0), fast)(5))  # fast commits and removes stale runs
    assert len(list(root.glob("run-*"))) == 2  # slow's run survived
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        batches += list(under_way)
    assert len(batches) == 1 and "another Cacher finished caching there first" in caplog.text
    assert fast.cached and not slow.cached and _values(root) == [2.0] * 5
    assert len(list(root.glob("run-*"))) == 1


def test_stale_removal_keeps_the_run_the_manifest_names(tmp_path):
    root = tmp_path / "c"
    cacher = Cacher(root)
    list(pipeline(_constant(3.0), cacher)(5))
    with runs._folder_lock(root):
        runs._remove_stale(root, keep=None)  # e.g. a commit that does not know the run
    assert _values(root) == [3.0] * 5


def test_concurrent_copies_to_one_folder_keep_one(tmp_path, monkeypatch):
    sources = []
    for v in (0.0, 1.0):
        c = Cacher(tmp_path / f"src{v}")
        list(pipeline(_constant(v), c)(5))
        sources.append(c.as_producer())
    before, after = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)
    write = runs._write_json_atomic

    def in_step(path, data):
        before.wait()
        write(path, data)
        after.wait()

    monkeypatch.setattr(runs, "_write_json_atomic", in_step)
    errors: list[str] = []
    copies: list[CachedProducer] = []

    def copy(source):
        try:
            copies.append(source.copy_to(tmp_path / "dest"))
        except Exception as exc:  # noqa: BLE001 - checked below
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=copy, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(copies) == 1 and len(errors) == 1
    assert errors[0].startswith("IntroscopeError:") and "already holds a cache" in errors[0]
    assert _values(tmp_path / "dest") in ([0.0] * 5, [1.0] * 5)
    assert _leftovers(tmp_path / "dest") == []


def test_copy_to_with_overwrite_replaces_and_leaves_no_lock(tmp_path):
    a, b = Cacher(tmp_path / "a"), Cacher(tmp_path / "b")
    list(pipeline(_constant(1.0), a)(5))
    list(pipeline(_constant(2.0), b)(5))
    a.as_producer().copy_to(tmp_path / "d")
    b.as_producer().copy_to(tmp_path / "d", overwrite=True)
    assert _values(tmp_path / "d") == [2.0] * 5
    assert len(list((tmp_path / "d").glob("run-*"))) == 1 and _leftovers(tmp_path / "d") == []


def test_the_folder_lock_is_exclusive_and_removed_on_release(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    with runs._folder_lock(root):
        fd = os.open(root / runs._FOLDER_LOCK, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not (root / runs._FOLDER_LOCK).exists()


# 2. joining small batches keeps dtypes and values ---------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (np.array([2**63 + 1, 2**63 + 3], np.uint64), np.array([5, 7], np.int64)),
        (np.array([1, 0], np.uint8), np.array([False, True])),
        (np.array([1, 0], np.int32), np.array([0, 1], np.int64)),
        (np.array([1, 0], np.float16), np.array([0, 1], np.int8)),
        (np.array(["a", "bb"], "U2"), np.array(["ccccc", "d"], "U5")),
    ],
)
def test_batches_of_other_dtypes_are_not_joined(tmp_path, first, second):
    def producer(batch_size):
        yield Batch({"x": first})
        yield Batch({"x": second})

    root = tmp_path / "c"
    passed = [b.fields["x"] for b in pipeline(producer, Cacher(root))(2)]
    again = [b.fields["x"] for b in CachedProducer(root)(2)]
    assert [a.dtype for a in again] == [a.dtype for a in passed] == [first.dtype, second.dtype]
    assert [a.tolist() for a in again] == [first.tolist(), second.tolist()]


def test_snapshot_dtypes_and_alike_batches(tmp_path):
    def producer(batch_size):
        for dtype in (np.int64, np.int64, np.uint64, np.uint64):
            yield Batch({"x": np.array([2**62, 3], dtype)})

    root = tmp_path / "c"
    stage = SnapshotSaver("snap")
    list(pipeline(producer, stage, Cacher(root))(2))
    manifest = json.loads((root / "manifest.json").read_text())
    assert len(manifest["batches"]) == 2  # alike neighbours are still joined
    back = list(CachedProducer(root)(2))
    assert [b.fields["x"].dtype for b in back] == [np.dtype(np.int64)] * 2 + [
        np.dtype(np.uint64)
    ] * 2
    assert [b.snapshots["snap"].fields["x"].dtype for b in back] == [
        b.fields["x"].dtype for b in back
    ]


def test_batches_with_other_trailing_shapes_or_field_order_are_written_apart(tmp_path):
    def producer(batch_size):
        yield Batch({"a": np.zeros((2, 3)), "b": np.ones(2)})
        yield Batch({"b": np.ones(2), "a": np.zeros((2, 3))})
        yield Batch({"a": np.zeros((2, 4)), "b": np.ones(2)})

    root = tmp_path / "c"
    list(pipeline(producer, Cacher(root))(2))
    back = list(CachedProducer(root)(2))
    assert [list(b.fields) for b in back] == [["a", "b"], ["b", "a"], ["a", "b"]]
    assert [b.fields["a"].shape for b in back] == [(2, 3), (2, 3), (2, 4)]


# 3. ndarray subclasses ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: np.ma.masked_array(np.arange(4.0), mask=[1, 0, 0, 1]), r"MaskedArray.*filled"),
        (lambda: np.asmatrix(np.arange(4.0).reshape(4, 1)), r"numpy.matrix.*numpy.asarray"),
        (lambda: np.rec.fromarrays([np.arange(4), np.arange(4.0)], names="a,b"), r"recarray"),
    ],
    ids=["masked", "matrix", "recarray"],
)
def test_ndarray_subclasses_are_refused_before_anything_is_cached(tmp_path, make, says):
    value = make()
    root = tmp_path / "c"
    cacher = Cacher(root)
    yielded = []

    def producer(batch_size):
        yield Batch({"ok": np.arange(4)})
        yield Batch({"ok": np.arange(4), "x": value})

    stream = pipeline(producer, cacher)(4)
    with pytest.raises(IntroscopeError, match=r"field 'x' is a .*" + says):
        for batch in stream:
            yielded.append(batch)
    assert len(yielded) == 1  # the offending batch was never passed on
    assert not cacher.cached and not list(root.glob("run-*"))


def test_masked_snapshot_fields_and_metadata_are_refused(tmp_path):
    masked = np.ma.masked_array(np.arange(2.0), mask=[1, 0])
    snapped = pipeline(
        producer_from_batches(Batch({"x": masked.filled(0)})),
        SnapshotSaver("s"),
        Processor(lambda a: np.ma.masked_array(a, mask=[1, 0])),
    )
    # the snapshot holds the plain array, the field the masked one
    with pytest.raises(IntroscopeError, match="field 'x' is a numpy.ma.MaskedArray"):
        list(pipeline(snapped, Cacher(tmp_path / "a"))(2))
    key = Batch.MetaKey("m")
    builder = Batch.Builder(fields={"x": np.arange(2)})
    builder.metadata[key] = [masked, masked]
    with pytest.raises(IntroscopeError, match="MaskedArray that the cache cannot store"):
        list(pipeline(producer_from_batches(builder.make_batch()), Cacher(tmp_path / "b"))(2))


def test_a_memmap_field_is_cached_as_its_data(tmp_path):
    np.save(tmp_path / "m.npy", np.arange(6.0).reshape(3, 2))
    mapped = np.load(tmp_path / "m.npy", mmap_mode="r")
    list(pipeline(producer_from_batches(Batch({"x": mapped})), Cacher(tmp_path / "c"))(3))
    (back,) = CachedProducer(tmp_path / "c")(3)
    assert type(back.fields["x"]) is np.ndarray and back.fields["x"].tolist() == mapped.tolist()


# 4. Cacher.clear() skips what it may not remove -----------------------------------------------


def _make_caches(root: pathlib.Path, names) -> None:
    for name in names:
        list(pipeline(_constant(1.0), Cacher(root / name))(5))


def test_clear_all_skips_caches_it_cannot_remove(tmp_path, monkeypatch, caplog):
    _make_caches(tmp_path, ["a_other", "b_mine", "c_mine"])
    monkeypatch.setattr(cacher_module.tempfile, "gettempdir", lambda: str(tmp_path))
    clear_folder = cacher_module._clear_folder

    def as_another_user(folder):
        if folder.name == "a_other":
            raise PermissionError(13, "Permission denied", str(folder / "manifest.json"))
        return clear_folder(folder)

    monkeypatch.setattr(cacher_module, "_clear_folder", as_another_user)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert Cacher.clear() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_other"]
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "a_other (Permission denied)" in warnings[0]
    with pytest.raises(PermissionError):  # a folder named by the caller: its error
        Cacher.clear(tmp_path / "a_other")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may remove any file")
def test_clear_all_skips_a_read_only_cache(tmp_path, monkeypatch, caplog):
    _make_caches(tmp_path, ["a_ro", "b_mine"])
    os.chmod(tmp_path / "a_ro", 0o555)
    try:
        monkeypatch.setattr(cacher_module.tempfile, "gettempdir", lambda: str(tmp_path))
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            Cacher.clear()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a_ro"]
        assert "a_ro" in caplog.text and "skipped 1 cache folder" in caplog.text
        assert _values(tmp_path / "a_ro") == [1.0] * 5
    finally:
        os.chmod(tmp_path / "a_ro", 0o755)


# 5. forked children and the run lock ----------------------------------------------------------


def _wait_for(event) -> None:
    event.wait(20)


def test_a_worker_forked_during_the_pass_does_not_keep_the_cache_live(tmp_path):
    root = tmp_path / "c"
    release = FORK.Event()
    workers = []

    def producer(batch_size):
        worker = FORK.Process(target=_wait_for, args=(release,))
        worker.start()  # forked while the run's lock is held, and outlives the pass
        workers.append(worker)
        yield Batch({"x": np.arange(4)})

    cacher = Cacher(root)
    try:
        assert [b.fields["x"].tolist() for b in pipeline(producer, cacher)(4)] == [[0, 1, 2, 3]]
        assert cacher.cached and workers[0].is_alive()
        (run,) = root.glob("run-*")
        assert not runs._run_is_live(run)
        Cacher.clear(root)
        assert not root.exists()
    finally:
        release.set()
        for w in workers:
            w.join(10)


def test_clear_treats_the_committed_run_as_finished(tmp_path, caplog):
    root = tmp_path / "c"
    list(pipeline(_constant(1.0), Cacher(root))(5))
    (run,) = root.glob("run-*")
    fd = os.open(run / runs._LOCK, os.O_RDONLY)  # a holder of the committed run's old lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        Cacher.clear(root)
        assert not root.exists()
    finally:
        os.close(fd)
    # a run the manifest does not name, still locked, is a live writer: left alone
    cacher = Cacher(root)
    stream = pipeline(_constant(1.0), cacher)(5)
    next(stream)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        Cacher.clear(root)
    assert "still writing" in caplog.text and list(root.glob("run-*"))
    stream.close()


def test_a_forked_copy_of_a_writer_never_removes_the_run(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    writer = runs._RunWriter(root)
    pid = os.fork()
    if pid == 0:  # the child: its copy of the writer must not touch the parent's run
        code = 1
        try:
            writer.abort()
            code = 0 if writer.run.is_dir() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert writer.run.is_dir() and runs._run_is_live(writer.run)
    writer.abort()
    assert not writer.run.exists()


# 6. overlapping passes of one Cacher ----------------------------------------------------------


def test_overlapping_passes_of_one_cacher_warn_accurately(tmp_path, caplog):
    def producer(batch_size):
        for start in range(0, 6, batch_size):
            yield Batch({"x": np.arange(start, min(6, start + batch_size))})

    cacher = Cacher(tmp_path / "c")
    cached = pipeline(producer, cacher)
    first = cached(2)
    next(first)
    assert len(list(cached(3))) == 2 and cacher.cached
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        list(first)
    assert "another pass through this Cacher finished caching first" in caplog.text
    assert "another Cacher" not in caplog.text and "raises" not in caplog.text
    assert [b.fields["x"].tolist() for b in cached(6)] == [[0, 1, 2, 3, 4, 5]]


# 8, 9, 10 -------------------------------------------------------------------------------------


def test_an_empty_field_selection_selects_every_field():  # documented, as DNIKit
    batch = Batch({"a": np.ones(2), "b": np.ones(2)})
    (out,) = pipeline(producer_from_batches(batch), Processor(lambda a: a * 10, fields=[]))(2)
    assert out.fields["a"].tolist() == out.fields["b"].tolist() == [10.0, 10.0]


def test_fields_of_other_dtypes_are_not_equal():  # documented difference from DNIKit
    assert (
        Batch({"x": np.arange(2, dtype=np.int32)}).fields
        != Batch({"x": np.arange(2, dtype=np.int64)}).fields
    )


def test_the_drop_warning_does_not_advise_the_option_already_set(tmp_path, caplog):
    class Opaque:
        pass

    builder = Batch.Builder(fields={"x": np.arange(2)})
    builder.metadata[Batch.MetaKey("note")] = [Opaque(), Opaque()]
    producer = producer_from_batches(builder.make_batch())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        list(pipeline(producer, Cacher(tmp_path / "c", drop_unsupported_metadata=True))(2))
    assert "not caching metadata" in caplog.text and "Opaque" in caplog.text
    assert "pass Cacher(" not in caplog.text
    with pytest.raises(IntroscopeError, match=r"drop_unsupported_metadata=True\)"):
        list(pipeline(producer, Cacher(tmp_path / "d"))(2))  # the error still advises it
