"""``Cacher`` (a pipeline stage that stores batches on disk) and ``CachedProducer`` (reads them).

A cache folder holds a marker file, one ``run-<id>/`` folder per caching pass with one ``.npz``
per batch, and ``manifest.json``. The manifest is written last, to a temporary name renamed into
place, and it names the run it describes: a folder without it, or a run it does not name, is an
unfinished pass (interrupted by an exception or a kill) and is never read.
"""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile
import weakref
from collections.abc import Iterator
from typing import Any, NoReturn

from introscope.exceptions import IntroscopeError
from introscope.typing import PathOrStr

from . import _metadata as _meta
from ._batch import Batch, concatenate_batches
from ._cache_format import batch_nbytes, check_fields, read_batch
from ._cache_metadata import MetadataPolicy, check_metadata
from ._cache_runs import (
    _MANIFEST,
    _MARKER,
    _check_folder,
    _clear_folder,
    _describe_missing_cache,
    _read_manifest,
    _RunWriter,
)
from ._pipeline import PipelineStage
from ._producer import Producer, check_batch_size, checked_batches
from ._producer_utils import resize_batches

try:  # advisory locks tell a live writer from a dead one; POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Cacher", "CachedProducer"]

_logger = logging.getLogger("introscope.base.cacher")

_CHUNK_BYTES = 4 << 20  # batches are written to files of about this many bytes of fields


class CachedProducer:
    """A producer that reads batches cached by ``Cacher``, re-cut to any batch size.

    Files are read one at a time (memory stays at about two files: batches of up to ~4 MiB
    are joined into one file when cached).

    Args:
        storage_path: a folder holding a complete cache.
        verify: check every array's CRC-32 while reading (about 2 GB/s); ``False`` reads about
            three times faster and still detects truncated or missing files.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from introscope.base import Batch, CachedProducer, Cacher, pipeline
        >>> from introscope.base import producer_from_batches
        >>> folder = tempfile.mkdtemp()
        >>> cacher = Cacher(folder)
        >>> for _ in pipeline(producer_from_batches(Batch({"x": np.arange(5)})), cacher)(batch_size=5):
        ...     pass
        >>> reader = CachedProducer(folder)  # e.g. in a later session
        >>> reader.num_elements, [b.fields["x"].tolist() for b in reader(batch_size=3)]
        (5, [[0, 1, 2], [3, 4]])
        >>> Cacher.clear(folder)
    """

    _owner: Cacher  # set for an anonymous Cacher: its temporary folder lives as long as this

    def __init__(self, storage_path: PathOrStr, *, verify: bool = True) -> None:
        self._storage_path = pathlib.Path(storage_path).resolve()
        self._verify = bool(verify)
        self._manifest()

    def _manifest(self) -> dict[str, Any]:
        manifest = _read_manifest(self._storage_path) if self._storage_path.is_dir() else None
        if manifest is None:
            raise IntroscopeError(
                f"cannot read a cache: {_describe_missing_cache(self._storage_path)}"
            )
        run = os.path.join(self._storage_path, manifest["run"])
        for entry in manifest["batches"]:
            try:
                size = os.stat(os.path.join(run, entry["file"])).st_size
            except FileNotFoundError:
                raise IntroscopeError(
                    f"the cache in {self._storage_path} is damaged: {entry['file']} is missing"
                ) from None
            if size != entry["bytes"]:
                raise IntroscopeError(
                    f"the cache in {self._storage_path} is damaged: {entry['file']} has {size} "
                    f"bytes, the manifest says {entry['bytes']}"
                )
        return manifest

    @property
    def storage_path(self) -> pathlib.Path:
        """The folder the batches are read from."""
        return self._storage_path

    @property
    def num_elements(self) -> int:
        """How many elements the cache holds."""
        return int(self._manifest()["elements"])

    def _stored_batches(self, manifest: dict[str, Any]) -> Iterator[Batch]:
        run = os.path.join(self._storage_path, manifest["run"])
        for entry in manifest["batches"]:
            path = os.path.join(run, entry["file"])
            try:
                yield read_batch(path, self._verify, entry.get("members"))
            except FileNotFoundError:
                raise IntroscopeError(
                    f"{path} disappeared while it was being read (was the cache cleared?)"
                ) from None

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        """Yield the cached elements in batches of ``batch_size`` (the last one may be short)."""
        check_batch_size(batch_size)
        manifest = self._manifest()
        _logger.info("reading %d cached elements from %s", manifest["elements"], self.storage_path)
        yield from resize_batches(self._stored_batches(manifest), batch_size)

    def copy_to(self, new_path: PathOrStr, *, overwrite: bool = False) -> CachedProducer:
        """Copy the cache to ``new_path`` and return a producer reading the copy.

        Of several copies to one new folder at the same time (threads or processes) exactly
        one is kept; without ``overwrite`` the others raise, as for a folder that held a cache.

        Raises:
            IntroscopeError: if ``new_path`` already holds a cache and ``overwrite`` is False.
        """
        manifest = self._manifest()
        dest = pathlib.Path(new_path).resolve()
        if dest == self._storage_path:
            raise IntroscopeError(f"cannot copy the cache in {dest} onto itself")
        if dest.exists() and not dest.is_dir():
            raise IntroscopeError(f"{dest} exists and is not a folder")
        taken = IntroscopeError(
            f"{dest} already holds a cache; pass overwrite=True to replace it, "
            f"or choose another folder"
        )
        if (dest / _MANIFEST).exists() and not overwrite:
            raise taken
        writer = _RunWriter(dest)
        try:
            run = self._storage_path / manifest["run"]
            for entry in manifest["batches"]:
                writer.add_file(run / entry["file"], entry)
        except BaseException:
            writer.abort()
            raise
        if not writer.commit(replace=overwrite):  # another copy (or Cacher) finished first
            raise taken
        return CachedProducer(dest)

    def __repr__(self) -> str:
        return f"CachedProducer({str(self._storage_path)!r})"


def _join_key(batch: Batch) -> tuple[Any, ...]:
    """What batches must share to be joined into one file without changing any value: field
    names (in order), dtypes and trailing shapes, the same of snapshots, and metadata keys."""
    s = batch._s
    return (
        tuple((n, a.dtype, a.shape[1:]) for n, a in s.fields.items()),
        tuple((n, _join_key(snap)) for n, snap in s.snapshots.items()),
        tuple(
            (type(k).__name__, k.name, tuple(v) if isinstance(v, dict) else None)
            for k, v in s.metadata.items()
        ),
    )


def _with_identifier(batch: Batch, start: int) -> tuple[Batch, int]:
    if Batch.StdKeys.IDENTIFIER in batch.metadata:
        return batch, start
    end = start + batch.batch_size
    builder = Batch.Builder(base=batch)
    builder.metadata[Batch.StdKeys.IDENTIFIER] = list(range(start, end))
    return builder.make_batch(), end


def _without_dropped(batch: Batch, dropped: set[tuple[str, str]]) -> Batch:
    if not dropped:
        return batch

    def keep(storage: _meta.Storage) -> _meta.Storage:
        return {
            k: v
            for k, v in storage.items()
            if ("dict" if isinstance(k, _meta.DictMetaKey) else "meta", k.name) not in dropped
        }

    s = batch._s
    snaps = {
        n: Batch._from_parts(b._s.fields, None, keep(b._s.metadata)) for n, b in s.snapshots.items()
    }
    return Batch._from_parts(s.fields, snaps, keep(s.metadata))


class Cacher(PipelineStage):
    """A pipeline stage that stores every batch on disk on the first pass and reads them after.

    The stages before the Cacher run once: the first complete pass writes each batch as it goes
    through; every later pass reads from disk, at any batch size. Batches without
    ``Batch.StdKeys.IDENTIFIER`` get a running number (0, 1, ...) as their identifier.

    A pass that does not finish (an exception, a consumer that stops early, a killed process)
    leaves no cache that can be read: the next pass caches again.

    Two Cachers on one folder (in threads or other processes) do not mix their batches: the
    pass that finishes first keeps its cache, the other logs a warning ("another Cacher
    finished caching there first") and discards its own batches. Batches that differ in a
    field's dtype or trailing shape are stored as they are (only alike batches are joined into
    one file), so later passes yield the dtypes and values the first pass yielded. Fields must be
    plain arrays: a ``numpy.ma.MaskedArray`` or another ndarray subclass is refused (its mask or
    meaning would not survive), before the batch is passed on.

    Args:
        storage_path: folder for the cache, kept until you delete it (``Cacher.clear(path)``).
            By default a new folder in the system's temporary folder, removed once this Cacher
            (with its pipelines and producers) is garbage-collected or the interpreter exits;
            keep such a cache with ``cacher.as_producer().copy_to(path)``. It must not already
            hold a cache.
        drop_unsupported_metadata: leave out (with a warning) metadata keys whose values the cache
            cannot store without pickle, instead of raising. Nothing is ever pickled.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from introscope.base import Batch, Cacher, pipeline, producer_from_batches
        >>> from introscope.processors import Processor
        >>> calls = []
        >>> def slow_square(a):
        ...     calls.append(len(a))
        ...     return a * a
        >>> cacher = Cacher(tempfile.mkdtemp())
        >>> cached = pipeline(
        ...     producer_from_batches(Batch({"x": np.arange(4.0)})), Processor(slow_square), cacher
        ... )
        >>> [b.fields["x"].tolist() for b in cached(batch_size=2)]  # computes and stores
        [[0.0, 1.0], [4.0, 9.0]]
        >>> [b.fields["x"].tolist() for b in cached(batch_size=4)]  # read back, any batch size
        [[0.0, 1.0, 4.0, 9.0]]
        >>> cacher.cached, len(calls)
        (True, 2)
        >>> Cacher.clear(cacher.storage_path)
    """

    @staticmethod
    def clear(storage_path: PathOrStr | None = None) -> None:
        """Delete the cache in ``storage_path`` and in its sub-folders (all introscope caches in
        the system's temporary folder when ``None``). Only files a Cacher wrote are removed, and
        caches still being written are left alone (with a warning each).

        With ``None``, caches this process may not remove (another user's, in a shared
        temporary folder) are skipped, and one warning lists them; every other cache is
        removed. Returns None either way.

        Raises:
            NotADirectoryError: if ``storage_path`` is not a folder.
            OSError: (only with a ``storage_path``) if a cache in it cannot be removed, e.g.
                ``PermissionError`` for another user's.
        """
        root = pathlib.Path(tempfile.gettempdir() if storage_path is None else storage_path)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a folder")
        skipped: list[str] = []
        for folder in [root, *(p for p in root.iterdir() if p.is_dir())]:
            try:
                if not (folder / _MARKER).is_file():
                    continue
            except OSError:  # e.g. another user's folder in the temporary folder
                continue
            try:
                _clear_folder(folder)
            except OSError as exc:
                if storage_path is not None:
                    raise
                skipped.append(f"{folder} ({exc.strerror or type(exc).__name__})")
        if skipped:
            _logger.warning(
                "Cacher.clear(): skipped %d cache folder%s it may not remove (another user's?): %s",
                len(skipped),
                "" if len(skipped) == 1 else "s",
                "; ".join(skipped),
            )

    def __init__(
        self, storage_path: PathOrStr | None = None, *, drop_unsupported_metadata: bool = False
    ) -> None:
        if storage_path is None:
            root = pathlib.Path(tempfile.mkdtemp(prefix="introscope-cacher-"))
        else:
            root = pathlib.Path(storage_path)
        self._storage_path = root.resolve()
        _check_folder(self._storage_path)
        self._anonymous = storage_path is None
        if self._anonymous:
            # An anonymous cache lives as long as this Cacher (its pipelines and the producers
            # that read it keep it alive), and at the latest until the interpreter exits.
            weakref.finalize(self, _remove_anonymous_cache, self._storage_path)
        self._drop_unsupported = bool(drop_unsupported_metadata)
        self._pipelined = False
        self._run: str | None = None  # the run this Cacher committed

    @property
    def storage_path(self) -> pathlib.Path:
        """The absolute path of the cache folder."""
        return self._storage_path

    @property
    def cached(self) -> bool:
        """True once a pass of this Cacher has run to the end and its batches are on disk."""
        if self._run is None:
            return False
        manifest = _read_manifest(self._storage_path)
        return manifest is not None and manifest.get("run") == self._run

    def _check_not_taken(self) -> None:
        """A cache this Cacher did not write is in its folder: never serve it as its own."""
        manifest = _read_manifest(self._storage_path)
        if manifest is not None and manifest.get("run") != self._run:
            raise IntroscopeError(
                f"another Cacher finished caching in {self._storage_path} (run "
                f"{manifest.get('run')}) while this one had not: its batches come from another "
                f"pipeline. Give each Cacher its own folder (read that cache with "
                f"CachedProducer({str(self._storage_path)!r}))"
            )

    def as_producer(self) -> CachedProducer:
        """A [`CachedProducer`][introscope.base.CachedProducer] over this Cacher's batches.

        Raises:
            IntroscopeError: if no pass has finished caching yet.
        """
        if not self.cached:
            self._check_not_taken()
            raise IntroscopeError(
                "Cacher.as_producer() needs the cache to be complete: run the pipeline to the end "
                "first (e.g. list(producer(batch_size)) or an introspector)"
            )
        producer = CachedProducer(self._storage_path)
        if self._anonymous:
            producer._owner = self  # the temporary folder is removed when the Cacher is
        return producer

    def _get_batch_processor(self) -> NoReturn:  # never used, _pipeline is overridden
        raise IntroscopeError("Cacher works on whole passes; it has no per-batch processor")

    def _pipeline(self, producer: Producer) -> Producer:
        if self._pipelined:
            raise IntroscopeError(
                "this Cacher is already part of a pipeline. Create a new Cacher for another "
                "pipeline, or use cacher.as_producer() to reuse this one's batches"
            )
        self._pipelined = True
        return _CachingProducer(self, producer)

    def _cache_pass(self, producer: Producer, batch_size: int) -> Iterator[Batch]:
        writer = _RunWriter(self._storage_path)
        policy = MetadataPolicy(self._drop_unsupported)
        committed = False
        try:
            next_id = 0
            # Small batches are joined into files of about _CHUNK_BYTES: a later read pays the
            # per-file cost (open, header, checks) once per chunk instead of once per batch.
            pending: list[Batch] = []
            pending_bytes = 0
            # Only batches alike in field names, dtypes and trailing shapes (snapshots too) and
            # metadata keys are joined: joining others would promote dtypes (uint64 and int64
            # give float64), so a later pass would not get what this one yielded.
            pending_key: tuple[Any, ...] | None = None
            for batch in checked_batches(
                producer, batch_size, allow_empty=True, what="the producer before Cacher"
            ):
                batch, next_id = _with_identifier(batch, next_id)
                check_fields(batch)  # refuse what the cache cannot store before passing it on
                check_metadata(batch, policy)  # drop or refuse metadata before passing it on
                yield _without_dropped(batch, policy.dropped)
                key = _join_key(batch)
                if pending and key != pending_key:
                    self._write_chunk(writer, pending, policy)
                    pending, pending_bytes = [], 0
                pending_key = key
                pending.append(batch)
                pending_bytes += batch_nbytes(batch)
                if pending_bytes >= _CHUNK_BYTES:
                    self._write_chunk(writer, pending, policy)
                    pending, pending_bytes = [], 0
            self._write_chunk(writer, pending, policy)
            committed = writer.commit()
            if committed:
                self._run = writer.run.name
                files = len(writer.entries)
                _logger.info(
                    "cached %d elements (%d file%s) in %s",
                    sum(e["size"] for e in writer.entries),
                    files,
                    "" if files == 1 else "s",
                    self._storage_path,
                )
            elif self.cached:  # an overlapping pass of this same Cacher finished first
                _logger.warning(
                    "%s: another pass through this Cacher finished caching first; this pass's "
                    "batches were not kept; later passes read the batches of the pass that finished",
                    self._storage_path,
                )
            else:
                _logger.warning(
                    "%s: another Cacher finished caching there first; this pass's batches were "
                    "not kept, and the next pass through this Cacher raises",
                    self._storage_path,
                )
        finally:
            if not committed:
                writer.abort()

    @staticmethod
    def _write_chunk(writer: _RunWriter, batches: list[Batch], policy: MetadataPolicy) -> None:
        if not batches:
            return
        try:
            joined = concatenate_batches(batches)
        except IntroscopeError:  # batches that do not join (other fields or metadata keys)
            for batch in batches:
                writer.add(batch, policy)
        else:
            writer.add(joined, policy)

    def __repr__(self) -> str:
        return f"Cacher({str(self._storage_path)!r}, cached={self.cached})"


def _remove_anonymous_cache(root: pathlib.Path) -> None:
    """Delete an anonymous Cacher's temporary folder (only the files a Cacher wrote in it)."""
    try:
        Cacher.clear(root)
    except Exception as exc:  # at interpreter exit or in a finalizer: never raise
        _logger.debug("could not remove the temporary cache %s: %s", root, exc)


class _CachingProducer:
    def __init__(self, cacher: Cacher, upstream: Producer) -> None:
        self._cacher = cacher
        self._upstream = upstream
        self._reader: CachedProducer | None = None

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        if self._cacher.cached:
            if self._reader is None:
                self._reader = CachedProducer(self._cacher.storage_path)
            yield from self._reader(batch_size)
        else:
            self._cacher._check_not_taken()
            yield from self._cacher._cache_pass(self._upstream, batch_size)

    def __repr__(self) -> str:
        return f"{self._upstream!r} -> Cacher"
