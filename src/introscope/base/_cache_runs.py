"""The on-disk layout of a cache folder: the marker, one ``run-<id>/`` per caching pass, the manifest.

A run is written by one ``_RunWriter`` (one ``.npz`` per batch, renamed into place, and an
advisory lock while the writer lives); ``manifest.json`` is written last and names the run it
describes, so a run it does not name is unfinished and is never read (``_cacher`` reads and
writes through these helpers).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import uuid
from typing import Any, cast

from introscope._atomic import write_text
from introscope.exceptions import IntroscopeError

from ._batch import Batch
from ._cache_format import (
    FORMAT_VERSION,
    READABLE_VERSIONS,
    MetadataPolicy,
    remember_verified,
    write_batch,
)

try:  # advisory locks tell a live writer from a dead one; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_logger = logging.getLogger("introscope.base.cacher")

_MARKER = ".introscope-cache"
_MANIFEST = "manifest.json"
_RUN_PREFIX = "run-"
_LOCK = ".lock"


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
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock too
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
    (``clearing``: every run is being removed on purpose, finished ones too)."""
    what = "cache run" if clearing else "unfinished cache run"
    for run in _runs(root):
        if run.name != keep and not _run_is_live(run):
            _logger.info("removing %s %s", what, run)
            shutil.rmtree(run, ignore_errors=True)
    for tmp in root.glob(f".{_MANIFEST}.*.tmp"):
        tmp.unlink(missing_ok=True)


class _RunWriter:
    """Writes one caching pass into a fresh ``run-<id>/`` folder; ``commit`` publishes it."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.run = root / f"{_RUN_PREFIX}{uuid.uuid4().hex}"
        self.run.mkdir(parents=True)
        _write_marker(root)  # again, in case the folder was cleared since the Cacher was made
        # 0o666 less the umask, as every other file of the cache.
        self._lock_fd: int | None = os.open(self.run / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
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
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def commit(self, *, replace: bool = False) -> bool:
        """Publish the run; False (and the run discarded) if a cache appeared meanwhile."""
        if not replace and (self.root / _MANIFEST).exists():
            self.abort()
            return False
        for entry in self.entries:
            entry["bytes"] = (self.run / entry["file"]).stat().st_size
        manifest = {
            "format": "introscope-cache",
            "version": FORMAT_VERSION,
            "run": self.run.name,
            "elements": sum(e["size"] for e in self.entries),
            "batches": self.entries,
        }
        _write_json_atomic(self.root / _MANIFEST, manifest)
        self._unlock()
        _remove_stale(self.root, keep=self.run.name)
        return True

    def abort(self) -> None:
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
        if (root / _MANIFEST).exists():
            raise IntroscopeError(
                f"{root} already holds a cache. Read it with CachedProducer({str(root)!r}), "
                f"or remove it with Cacher.clear({str(root)!r}) before caching there again"
            )
        live = [r for r in _runs(root) if _run_is_live(r)]
        if live:
            raise IntroscopeError(
                f"{root} is being written by another Cacher (run {live[0].name}); "
                f"use another folder"
            )
        if _runs(root):
            _logger.warning("%s holds an unfinished cache (an interrupted run); removing it", root)
        _remove_stale(root, keep=None)
    root.mkdir(parents=True, exist_ok=True)
    _write_marker(root)


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
