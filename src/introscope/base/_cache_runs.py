"""The on-disk layout of a cache folder: the marker, one ``run-<id>/`` per caching pass, the manifest.

A run is written by one ``_RunWriter`` (one ``.npz`` per batch, renamed into place, and an
advisory lock while the writer lives); ``manifest.json`` is written last and names the run it
describes, so a run it does not name is unfinished and is never read (``_cacher`` reads and
writes through these helpers).

Every change to the folder itself (creating a run, publishing the manifest, removing stale runs,
clearing) happens under an exclusive ``flock`` on a folder lock file, ``.introscope-cache.lock``,
which exists only while someone holds it. So of two writers (threads or processes) that finish
at the same moment exactly one publishes its run, the other sees the manifest and discards its
own; and nobody deletes the run the manifest names, a run being created, or a live writer's
files. Lock descriptors are closed in forked children (``os.register_at_fork``), so a worker
forked during a pass does not keep a finished run looking "still being written".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import uuid
import weakref
from collections.abc import Iterator
from typing import Any, cast

from introscope._atomic import write_text
from introscope.exceptions import IntroscopeError

from ._batch import Batch
from ._cache_format import FORMAT_VERSION, READABLE_VERSIONS, write_batch
from ._cache_metadata import MetadataPolicy
from ._stored_npz import remember_verified

try:  # advisory locks tell a live writer from a dead one; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger("introscope.base.cacher")

_MARKER = ".introscope-cache"
_MANIFEST = "manifest.json"
_RUN_PREFIX = "run-"
_LOCK = ".lock"
_FOLDER_LOCK = ".introscope-cache.lock"


class _HeldFd:
    """An open lock descriptor; closed in a forked child, where its lock must not live on.

    ``flock`` locks belong to the open file, which a forked child shares: a child that kept
    the descriptor (a worker pool started during a pass) would keep the lock after the parent
    released it. Closing the child's copy leaves the parent's lock alone.
    """

    __slots__ = ("fd", "__weakref__")

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd
        _HELD.add(self)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        _HELD.discard(self)
        if fd is not None:
            os.close(fd)


_HELD: weakref.WeakSet[_HeldFd] = weakref.WeakSet()


def _close_held_in_child() -> None:
    for held in list(_HELD):
        try:
            held.close()
        except OSError:
            pass


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_close_held_in_child)


@contextlib.contextmanager
def _folder_lock(root: pathlib.Path, *, create_root: bool = False) -> Iterator[None]:
    """Hold the folder's exclusive lock (``create_root``: make ``root`` first if missing).

    The lock file is removed on release; a process that waited on a removed file sees that
    the path no longer names what it locked and locks afresh.
    """
    if fcntl is None:  # pragma: no cover - Windows: no locking
        if create_root:
            root.mkdir(parents=True, exist_ok=True)
        yield
        return
    path = root / _FOLDER_LOCK
    while True:
        if create_root:
            root.mkdir(parents=True, exist_ok=True)
        try:
            # 0o666 less the umask, as every other file of the cache.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            if create_root:
                continue  # the folder was removed meanwhile (Cacher.clear): make it again
            raise
        except PermissionError as exc:
            try:  # a folder we cannot write: flock works on a read-only descriptor too
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise exc from None
        held = _HeldFd(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            held.close()
            raise
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            break
        held.close()  # the holder before us removed the file: lock the one there now
    try:
        yield
    finally:
        try:
            path.unlink()  # while still holding it: a waiter then sees a stale file
        except OSError:
            pass
        held.close()


def _manifest_run(root: pathlib.Path) -> str | None:
    """The run the manifest names, or None (no manifest, or one that cannot be read)."""
    try:
        run = json.loads((root / _MANIFEST).read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return None
    return run if isinstance(run, str) else None


def _runs(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in root.glob(f"{_RUN_PREFIX}*") if p.is_dir())


def _run_is_live(run: pathlib.Path) -> bool:
    """True while some process (this one included) holds the run's lock, i.e. still writes it."""
    if fcntl is None:
        return False
    try:
        # Read-only suffices for flock, so another user of a shared folder can probe it.
        fd = os.open(run / _LOCK, os.O_RDONLY)
    except PermissionError:
        return True  # cannot tell: treat it as live rather than delete someone's run
    except OSError:
        return False
    probe = _HeldFd(fd)  # closed in a child forked meanwhile, as every lock we hold
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        probe.close()  # closing drops the probe's lock too
    return False


def _write_marker(root: pathlib.Path) -> None:
    marker = root / _MARKER
    if not marker.exists():
        write_text(marker, json.dumps({"format": "introscope-cache"}))


def _read_manifest(root: pathlib.Path) -> dict[str, Any] | None:
    try:
        text = (root / _MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise IntroscopeError(
            f"the cache manifest {root / _MANIFEST} is unreadable ({exc}); "
            f"remove the cache with Cacher.clear({str(root)!r})"
        ) from None
    if manifest.get("version") not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise IntroscopeError(
            f"{root} holds a cache in format {manifest.get('version')}; this introscope reads "
            f"formats {readable}. Re-create it (Cacher.clear({str(root)!r}) removes it)"
        )
    return cast("dict[str, Any]", manifest)


def _write_json_atomic(path: pathlib.Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=1))


def _remove_stale(root: pathlib.Path, keep: str | None, *, clearing: bool = False) -> None:
    """Delete runs that no manifest names and no live process writes, and leftover temp files
    (``clearing``: every run is being removed on purpose, finished ones too). The caller holds
    the folder lock; the run the manifest names is never removed (``clearing`` removes the
    manifest first)."""
    what = "cache run" if clearing else "unfinished cache run"
    named = _manifest_run(root)
    for run in _runs(root):
        if run.name not in (keep, named) and not _run_is_live(run):
            _logger.info("removing %s %s", what, run)
            shutil.rmtree(run, ignore_errors=True)
    # Temporary manifests of an interrupted commit (of this or an older introscope; a live
    # writer now writes its manifest inside its own run, which is not touched here).
    for tmp in root.glob(f".{_MANIFEST}.*.tmp"):
        tmp.unlink(missing_ok=True)


class _RunWriter:
    """Writes one caching pass into a fresh ``run-<id>/`` folder; ``commit`` publishes it."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.run = root / f"{_RUN_PREFIX}{uuid.uuid4().hex}"
        self._pid = os.getpid()  # a forked child never commits or removes this run
        self._lock: _HeldFd | None = None
        # Under the folder lock: nobody removes the run before its lock is held.
        with _folder_lock(root, create_root=True):
            self.run.mkdir()
            _write_marker(root)  # again, in case the folder was cleared since the Cacher was made
            # 0o666 less the umask, as every other file of the cache.
            self._lock = _HeldFd(os.open(self.run / _LOCK, os.O_RDWR | os.O_CREAT, 0o666))
            if fcntl is not None:
                fcntl.flock(cast("int", self._lock.fd), fcntl.LOCK_EX)
        self.entries: list[dict[str, Any]] = []

    def _next_name(self) -> str:
        return f"batch-{len(self.entries):06d}.npz"

    def add(self, batch: Batch, policy: MetadataPolicy) -> None:
        name = self._next_name()
        tmp = self.run / f".{name}.tmp"
        index = write_batch(tmp, batch, policy)
        os.replace(tmp, self.run / name)
        remember_verified(str(self.run / name))  # written and CRC'd by this process just now
        self.entries.append({"file": name, "size": batch.batch_size, "members": index})

    def add_file(self, source: pathlib.Path, entry: dict[str, Any]) -> None:
        name = self._next_name()
        tmp = self.run / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        os.replace(tmp, self.run / name)
        copied = {"file": name, "size": entry["size"]}
        if "members" in entry:
            copied["members"] = entry["members"]
        self.entries.append(copied)

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _foreign(self) -> bool:
        """True in a process forked from the writer's: the run is not this process's."""
        return os.getpid() != self._pid

    def commit(self, *, replace: bool = False) -> bool:
        """Publish the run; False (and the run discarded) if a cache appeared meanwhile.

        The manifest is written inside the run first, then, under the folder lock, renamed
        into place unless a manifest is there already (``replace``: replaced); stale runs are
        removed under the same lock.
        """
        if self._foreign():
            raise IntroscopeError("a cache pass cannot be finished in a forked process")
        for entry in self.entries:
            entry["bytes"] = (self.run / entry["file"]).stat().st_size
        manifest = {
            "format": "introscope-cache",
            "version": FORMAT_VERSION,
            "run": self.run.name,
            "elements": sum(e["size"] for e in self.entries),
            "batches": self.entries,
        }
        pending = self.run / _MANIFEST  # inside the live run: nobody else removes it
        _write_json_atomic(pending, manifest)
        with _folder_lock(self.root):
            if not replace and (self.root / _MANIFEST).exists():
                self.abort()
                return False
            os.replace(pending, self.root / _MANIFEST)
            self._unlock()
            _remove_stale(self.root, keep=self.run.name)
        return True

    def abort(self) -> None:
        if self._foreign():
            return  # a forked child's copy of a writer: the parent's run is not ours to remove
        self._unlock()
        shutil.rmtree(self.run, ignore_errors=True)


def _holds_dnikit_cache(root: pathlib.Path) -> bool:
    """Whether ``root`` holds a DNIKit 2.0 cache (its markers or its ``<n>.pkl`` batches)."""
    try:
        return (
            (root / ".dni_cache_dir").exists()
            or (root / ".cache.done").exists()
            or any(p.stem.isdigit() for p in root.glob("*.pkl"))
        )
    except OSError:
        return False


def _dnikit_cache_text(root: pathlib.Path) -> str:
    return (
        f"{root} holds a DNIKit cache (pickled batches), which introscope does not read "
        f"(unpickling can run code); re-create the cache with introscope's Cacher in another "
        f"folder, or delete DNIKit's files"
    )


def _check_folder(root: pathlib.Path) -> None:
    """Make ``root`` a cache folder for a new Cacher, or say why it cannot be one."""
    if root.exists() and not root.is_dir():
        raise IntroscopeError(f"Cacher storage_path {root} exists and is not a folder")
    if root.is_dir() and _holds_dnikit_cache(root):
        raise IntroscopeError(_dnikit_cache_text(root))
    if root.is_dir():
        _check_no_cache(root)  # first without the lock: a clear error in a read-only folder
        with _folder_lock(root):
            _check_no_cache(root)
            live = [r for r in _runs(root) if _run_is_live(r)]
            if live:
                raise IntroscopeError(
                    f"{root} is being written by another Cacher (run {live[0].name}); "
                    f"use another folder"
                )
            if _runs(root):
                _logger.warning(
                    "%s holds an unfinished cache (an interrupted run); removing it", root
                )
            _remove_stale(root, keep=None)
            _write_marker(root)
        return
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root)


def _check_no_cache(root: pathlib.Path) -> None:
    if (root / _MANIFEST).exists():
        raise IntroscopeError(
            f"{root} already holds a cache. Read it with CachedProducer({str(root)!r}), "
            f"or remove it with Cacher.clear({str(root)!r}) before caching there again"
        )


def _clear_folder(folder: pathlib.Path) -> bool:
    """Remove the cache in ``folder`` (see ``Cacher.clear``); False if a live writer has it."""
    with _folder_lock(folder):
        named = _manifest_run(folder)  # committed: finished, whatever holds its old lock
        live = [r for r in _runs(folder) if r.name != named and _run_is_live(r)]
        if live:
            _logger.warning("not clearing %s: a Cacher is still writing to it", folder)
            return False
        (folder / _MANIFEST).unlink(missing_ok=True)
        if named is not None and (folder / named).is_dir():
            _logger.info("removing cache run %s", folder / named)
            shutil.rmtree(folder / named, ignore_errors=True)
        _remove_stale(folder, keep=None, clearing=True)
        (folder / _MARKER).unlink(missing_ok=True)
    try:
        folder.rmdir()  # only when nothing of the user's is left in it
    except OSError:
        pass
    return True


def _describe_missing_cache(root: pathlib.Path) -> str:
    if not root.exists():
        return f"{root} does not exist"
    if not root.is_dir():
        return f"{root} is not a folder"
    if _runs(root):
        return (
            f"{root} holds only an unfinished cache (caching was interrupted or is still running); "
            f"run the pipeline with its Cacher to the end first"
        )
    if (root / _MARKER).exists():
        return f"{root} is a cache folder whose caching has not finished (or was cleared)"
    if _holds_dnikit_cache(root):
        return _dnikit_cache_text(root)
    return f"{root} holds no cached batches"
