"""``Batch``: an immutable set of named arrays sharing dimension 0, with snapshots and metadata."""

from __future__ import annotations

import pathlib
from collections.abc import Hashable, ItemsView, Iterator, KeysView, Mapping, Sequence, ValuesView
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast, overload

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

from . import _metadata as _meta

_T = TypeVar("_T")

__all__ = ["Batch", "concatenate_batches"]


def _frozen(name: str, value: Any, where: str = "") -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise IntroscopeError(
            f"field {name!r}{where} must be a numpy.ndarray, got {type(value).__name__}; "
            f"wrap it with numpy.asarray(...)"
        )
    if value.ndim == 0:
        raise IntroscopeError(
            f"field {name!r}{where} is a 0-d array; dimension 0 must be the batch dimension"
        )
    # Frozen in place, as DNIKit does: a producer that refills an array it already put in a batch
    # gets numpy's read-only error instead of silently changing batches a consumer still holds.
    # (Writes through a writable base array of a view cannot be prevented without a copy.)
    value.flags.writeable = False
    return value


class _FrozenMapping(Mapping[str, Any]):
    """Read-only mapping of a batch's fields or snapshots.

    ``==`` compares values much as DNIKit does for these mappings: arrays by shape, dtype and
    contents, and batches with ``Batch.__eq__``, so ``batch.fields == other.fields`` is one
    bool. Unlike DNIKit, arrays of equal values but different dtypes (int32 and int64) are not
    equal.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    # The dict's own (read-only) views: faster than Mapping's, which go through __getitem__.
    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        return self._data.items()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.keys() == other.keys() and all(
            _same(self._data[k], other[k]) for k in self._data
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(dict(self._data))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b))
        )
    return _meta.values_equal(a, b)


class _Storage:
    __slots__ = ("fields", "snapshots", "metadata", "batch_size")

    def __init__(
        self,
        fields: Mapping[str, np.ndarray],
        snapshots: Mapping[str, Batch] | None = None,
        metadata: _meta.Storage | None = None,
    ) -> None:
        for name in fields:
            if not isinstance(name, str):
                raise IntroscopeError(f"field names must be str, got {name!r}")
        self.fields: dict[str, np.ndarray] = {
            name: _frozen(name, arr) for name, arr in fields.items()
        }
        self.snapshots: dict[str, Batch]
        self.metadata: _meta.Storage
        self.batch_size: int
        if not snapshots and not metadata:  # fields only: the common case, checked in short
            self.snapshots = {}
            self.metadata = {}
            self.batch_size = self._check_sizes()
            return
        snaps: dict[str, Batch] = {}
        for name, snap in (snapshots or {}).items():
            if not isinstance(snap, Batch):
                raise IntroscopeError(
                    f"snapshot {name!r} must be a Batch, got {type(snap).__name__}"
                )
            # Snapshots never nest: keep the snapshot's fields and metadata only.
            snaps[name] = snap if not snap._s.snapshots else snap._without_snapshots()
        self.snapshots = snaps
        metadata = metadata if metadata is not None else {}
        if any(isinstance(v, dict) and not v for v in metadata.values()):
            # A DictMetaKey without entries holds no metadata (DNIKit drops it too).
            metadata = {k: v for k, v in metadata.items() if not (isinstance(v, dict) and not v)}
        self.metadata = metadata
        self.batch_size = self._check_sizes()

    def _check_sizes(self) -> int:
        if not self.metadata and not self.snapshots and self.fields:
            # The common case (fields only), without building descriptions.
            first_dims = {a.shape[0] for a in self.fields.values()}
            if len(first_dims) == 1:
                return cast(int, first_dims.pop())
        sizes: list[tuple[str, int]] = [
            (f"field {n!r}", a.shape[0]) for n, a in self.fields.items()
        ]
        sizes += list(_meta.lengths(self.metadata))
        sizes += [(f"snapshot {n!r}", s.batch_size) for n, s in self.snapshots.items()]
        if not self.fields and not self.metadata:
            raise IntroscopeError("a Batch needs at least one field or one metadata entry")
        distinct = {n for _, n in sizes}
        if len(distinct) > 1:
            detail = ", ".join(f"{what}: {n}" for what, n in sizes)
            raise IntroscopeError(
                f"every field, metadata entry and snapshot of a Batch must have the same size "
                f"along dimension 0, got {detail}"
            )
        return sizes[0][1]


class _Element:
    """One element of a batch: ``fields`` (arrays without dim 0), ``snapshots``, ``metadata``."""

    __slots__ = ("_s", "_i")

    def __init__(self, storage: _Storage, index: int) -> None:
        self._s = storage
        self._i = index

    @property
    def fields(self) -> Mapping[str, Any]:
        return _FrozenMapping({n: a[self._i] for n, a in self._s.fields.items()})

    @property
    def snapshots(self) -> Mapping[str, _Element]:
        return _FrozenMapping({n: _Element(s._s, self._i) for n, s in self._s.snapshots.items()})

    @property
    def metadata(self) -> _meta.ElementMetadataView:
        return _meta.ElementMetadataView(self._s.metadata, self._i)

    def __eq__(self, other: object) -> bool:
        """Equal fields (by contents), snapshots and metadata, wherever the elements came from."""
        if not isinstance(other, _Element):
            return NotImplemented
        if self._s is other._s and self._i == other._i:
            return True
        return (
            self.fields == other.fields
            and self.snapshots == other.snapshots
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}: shape={a.shape[1:]}" for n, a in self._s.fields.items())
        return f"Batch.ElementType(index={self._i}, fields={{{fields}}}, metadata={self.metadata})"


class _ElementsView:
    """``batch.elements[i]`` is one element; a slice or index sequence gives a new Batch."""

    __slots__ = ("_batch",)

    def __init__(self, batch: Batch) -> None:
        self._batch = batch

    @overload
    def __getitem__(self, selector: int) -> _Element: ...

    @overload
    def __getitem__(self, selector: slice | Sequence[int] | np.ndarray) -> Batch: ...

    def __getitem__(self, selector: Any) -> Any:
        s = self._batch._s
        n = s.batch_size
        if isinstance(selector, (int, np.integer)) and not isinstance(selector, bool):
            i = int(selector)
            if not -n <= i < n:
                raise IndexError(f"element index {i} out of range for a batch of size {n}")
            return _Element(s, i % n)
        if isinstance(selector, slice):
            index: slice | list[int] = selector
            arr_index: Any = selector
        else:
            arr = np.asarray(selector)
            if arr.dtype == bool:
                if arr.shape != (n,):
                    raise IndexError(
                        f"boolean element mask must have shape ({n},), got {arr.shape}"
                    )
                arr = np.flatnonzero(arr)
            if arr.size and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
                raise IndexError(
                    f"elements[...] takes an int, a slice or a sequence of ints, got {selector!r}"
                )
            arr = arr.astype(np.intp)
            if arr.size and (arr.max() >= n or arr.min() < -n):
                raise IndexError(f"element index out of range for a batch of size {n}: {selector}")
            index = [int(i) % n for i in arr]
            arr_index = np.asarray(index, dtype=np.intp)
        return self._batch._subset(arr_index, index)

    def __iter__(self) -> Iterator[_Element]:
        s = self._batch._s
        return (_Element(s, i) for i in range(s.batch_size))

    def __len__(self) -> int:
        return self._batch.batch_size


class _Builder:
    """Mutable counterpart of [`Batch`][introscope.base.Batch]; ``make_batch()`` freezes it.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> builder = Batch.Builder({"x": np.zeros((2, 3))})
        >>> builder.metadata[Batch.StdKeys.IDENTIFIER] = ["a", "b"]
        >>> batch = builder.make_batch()
        >>> batch.metadata[Batch.StdKeys.IDENTIFIER]
        ['a', 'b']
        >>> more = Batch.Builder(base=batch)  # start from an existing batch
        >>> more.fields["y"] = np.ones(2)
        >>> sorted(more.make_batch().fields)
        ['x', 'y']
    """

    #: DNIKit's name for the type of ``builder.metadata``.
    MutableMetadataType = _meta.MutableMetadata

    def __init__(
        self, fields: Mapping[str, np.ndarray] | None = None, *, base: Batch | None = None
    ) -> None:
        if isinstance(fields, Batch):
            raise IntroscopeValueError(
                "Batch.Builder(batch) is not supported; use Batch.Builder(base=batch)"
            )
        if fields is not None and base is not None:
            raise IntroscopeValueError("pass either fields or base to Batch.Builder, not both")
        self.fields: dict[str, np.ndarray] = dict(fields) if fields is not None else {}
        self.snapshots: dict[str, Batch] = {}
        self.metadata: _meta.MutableMetadata = _meta.MutableMetadata()
        if base is not None:
            self.fields.update(base._s.fields)
            self.snapshots.update(base._s.snapshots)
            self.metadata = _meta.MutableMetadata(_meta.copy_storage(base._s.metadata))

    def make_batch(self) -> Batch:
        return Batch._from_parts(
            dict(self.fields), dict(self.snapshots), _meta.copy_storage(self.metadata.finished())
        )


class _StdKeys:
    """Standard metadata keys.

    Their names are namespaced so that a user's ``Batch.MetaKey("PATH")`` is a different key.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> builder = Batch.Builder({"x": np.zeros((2, 1))})
        >>> builder.metadata[Batch.StdKeys.LABELS] = {"digit": [3, 1]}
        >>> builder.make_batch().metadata[Batch.StdKeys.LABELS]["digit"]
        [3, 1]
    """

    # Typed as Batch.MetaKey / Batch.DictMetaKey, the names users annotate with (the same
    # classes at runtime; see Batch).
    #: a hashable that uniquely identifies each element
    IDENTIFIER: Batch.MetaKey[Hashable] = _meta.MetaKey(_meta.STD_PREFIX + "identifier")  # type: ignore[assignment]
    #: the file each element came from
    PATH: Batch.MetaKey[str | pathlib.Path] = _meta.MetaKey(_meta.STD_PREFIX + "path")  # type: ignore[assignment]
    #: labels of each element by category, e.g. ``{"digit": [3, 1, ...]}``
    LABELS: Batch.DictMetaKey[Hashable] = _meta.DictMetaKey(_meta.STD_PREFIX + "labels")  # type: ignore[assignment]


class Batch:
    """Named numpy arrays (``fields``) that share dimension 0, plus ``snapshots`` and ``metadata``.

    A batch is immutable: its arrays are read-only, and ``Batch.Builder`` makes new batches.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> batch = Batch({"x": np.arange(6.0).reshape(3, 2), "y": np.array([0, 1, 0])})
        >>> batch.batch_size, sorted(batch.fields)
        (3, ['x', 'y'])
        >>> batch.elements[1].fields["x"]
        array([2., 3.])
        >>> batch.elements[[0, 2]].fields["y"]
        array([0, 0])
    """

    __slots__ = ("_s",)

    if TYPE_CHECKING:
        # For type checkers only, subclasses of the key classes: pyright takes a TypeAlias of a
        # bare generic class as its [Unknown] specialisation (``Batch.MetaKey[str]`` refused),
        # mypy a plain class attribute as no type. At runtime these are the _metadata classes.
        class MetaKey(_meta.MetaKey[_T]):
            """Key of metadata holding one value per element."""

        class DictMetaKey(_meta.DictMetaKey[_T]):
            """Key of metadata holding a ``str -> value`` mapping per element."""

    else:
        MetaKey = _meta.MetaKey
        DictMetaKey = _meta.DictMetaKey

    # TypeAlias: type checkers take these as the classes (Batch.Builder in an annotation).
    StdKeys: TypeAlias = _StdKeys
    Builder: TypeAlias = _Builder
    ElementsView: TypeAlias = _ElementsView
    ElementType: TypeAlias = _Element
    MetadataType: TypeAlias = _meta.MetadataView

    def __init__(self, fields: Mapping[str, np.ndarray]) -> None:
        if isinstance(fields, Batch) or not isinstance(fields, Mapping):
            raise IntroscopeError(
                f"Batch(fields) takes a mapping of str to numpy arrays, got {type(fields).__name__}"
            )
        if not fields:
            raise IntroscopeValueError("cannot create a Batch without fields")
        self._s = _Storage(dict(fields))

    @classmethod
    def _from_parts(
        cls,
        fields: Mapping[str, np.ndarray],
        snapshots: Mapping[str, Batch] | None = None,
        metadata: _meta.Storage | None = None,
    ) -> Batch:
        batch = object.__new__(cls)
        batch._s = _Storage(fields, snapshots, metadata)
        return batch

    @property
    def fields(self) -> Mapping[str, np.ndarray]:
        """Read-only mapping of field name to array (dimension 0 is the batch dimension)."""
        return _FrozenMapping(self._s.fields)

    @property
    def snapshots(self) -> Mapping[str, Batch]:
        """Earlier states of this batch saved by ``SnapshotSaver``."""
        return _FrozenMapping(self._s.snapshots)

    @property
    def metadata(self) -> _meta.MetadataView:
        """The batch's metadata: ``batch.metadata[key]`` is one value per element."""
        return _meta.MetadataView(self._s.metadata)

    @property
    def batch_size(self) -> int:
        """Number of elements (the length of dimension 0 of every field)."""
        return self._s.batch_size

    @property
    def elements(self) -> _ElementsView:
        """The elements one by one: ``batch.elements[i]`` has the fields and metadata of element i."""
        return _ElementsView(self)

    def _subset(self, arr_index: Any, index: slice | list[int]) -> Batch:
        s = self._s
        return Batch._from_parts(
            {n: a[arr_index] for n, a in s.fields.items()},
            {n: b._subset(arr_index, index) for n, b in s.snapshots.items()},
            _meta.subset_storage(s.metadata, index),
        )

    def _without_snapshots(self) -> Batch:
        return Batch._from_parts(self._s.fields, None, self._s.metadata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        a, b = self._s, other._s
        return (
            a is b
            or self.fields == other.fields
            and self.snapshots == other.snapshots
            and _meta.storages_equal(a.metadata, b.metadata)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        s = self._s
        return (Batch._from_parts, (s.fields, s.snapshots, s.metadata))

    def __repr__(self) -> str:
        fields = ", ".join(f"{n!r}: {a.dtype}{list(a.shape)}" for n, a in self._s.fields.items())
        extra = ""
        if self._s.snapshots:
            extra += f", snapshots={list(self._s.snapshots)}"
        if self._s.metadata:
            extra += f", metadata={[k.name for k in self._s.metadata]}"
        return f"Batch(batch_size={self.batch_size}, fields={{{fields}}}{extra})"


def concatenate_batches(batches: Sequence[Batch]) -> Batch:
    """Join batches along dimension 0; they must share field names, trailing shapes and metadata.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, concatenate_batches
        >>> a, b = Batch({"x": np.zeros((2, 3))}), Batch({"x": np.ones((1, 3))})
        >>> joined = concatenate_batches([a, b])
        >>> joined.batch_size, joined.fields["x"][:, 0]
        (3, array([0., 0., 1.]))
    """
    if not batches:
        raise IntroscopeError("cannot concatenate an empty list of batches")
    if len(batches) == 1:
        return batches[0]
    first = batches[0]._s
    for i, b in enumerate(batches[1:], start=1):
        s = b._s
        if s.fields.keys() != first.fields.keys():
            raise IntroscopeError(
                f"batch {i} has fields {sorted(s.fields)} but batch 0 has {sorted(first.fields)}"
            )
        for n, a in s.fields.items():
            if a.shape[1:] != first.fields[n].shape[1:]:
                raise IntroscopeError(
                    f"field {n!r} has shape {a.shape[1:]} per element in batch {i} "
                    f"but {first.fields[n].shape[1:]} in batch 0"
                )
        if s.snapshots.keys() != first.snapshots.keys():
            raise IntroscopeError(f"batch {i} has different snapshots than batch 0")
    fields = {n: np.concatenate([b._s.fields[n] for b in batches]) for n in first.fields}
    snapshots = {
        n: concatenate_batches([b._s.snapshots[n] for b in batches]) for n in first.snapshots
    }
    try:
        metadata = _meta.concat_storages([b._s.metadata for b in batches])
    except ValueError as exc:
        raise IntroscopeError(f"cannot concatenate batches: {exc}") from None
    return Batch._from_parts(fields, snapshots, metadata)
