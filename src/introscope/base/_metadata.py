"""Metadata keys and the read-only / mutable views of a batch's metadata.

Storage is a plain dict: a ``MetaKey`` maps to a list with one value per element; a
``DictMetaKey`` maps to a dict of ``str -> list`` (one value per element per entry).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, KeysView, Mapping, Sequence
from typing import Any, Generic, TypeAlias, TypeVar, overload

from introscope.exceptions import IntroscopeValueError

_T = TypeVar("_T")
_D = TypeVar("_D")

#: ``MetaKey -> list`` and ``DictMetaKey -> dict[str, list]``, one value per element.
Storage: TypeAlias = dict[Any, Any]

#: Names of ``Batch.StdKeys`` start with this, so no user key can equal them by accident.
STD_PREFIX = "introscope.base.Batch.StdKeys."


class _KeyBase:
    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a metadata key needs a non-empty str name, got {name!r}")
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.name == self.name

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        if self.name.startswith(STD_PREFIX):
            return f"Batch.StdKeys.{self.name[len(STD_PREFIX) :].upper()}"
        return f"{type(self).__name__}({self.name!r})"

    def __reduce__(self) -> tuple[type[_KeyBase], tuple[str]]:
        return (type(self), (self.name,))


class MetaKey(_KeyBase, Generic[_T]):
    """Key of metadata holding one value per element, e.g. ``Batch.MetaKey[str]("path")``.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> score = Batch.MetaKey("score")
        >>> builder = Batch.Builder({"x": np.zeros((2, 1))})
        >>> builder.metadata[score] = [0.5, 0.25]
        >>> builder.make_batch().elements[1].metadata[score]
        0.25
    """

    __slots__ = ()


class DictMetaKey(_KeyBase, Generic[_T]):
    """Key of metadata holding a ``str -> value`` mapping per element (e.g. labels by category).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> tags = Batch.DictMetaKey("tags")
        >>> builder = Batch.Builder({"x": np.zeros((2, 1))})
        >>> builder.metadata[tags] = {"color": ["red", "blue"], "shape": ["disc", "cube"]}
        >>> builder.make_batch().metadata[tags]["color"]
        ['red', 'blue']
    """

    __slots__ = ()


AnyKey: Any = MetaKey | DictMetaKey  # a runtime union (isinstance); annotations use _Key
_Key: TypeAlias = "MetaKey[Any] | DictMetaKey[Any]"


def check_key(key: object) -> None:
    if not isinstance(key, (MetaKey, DictMetaKey)):
        raise TypeError(
            f"metadata keys must be Batch.MetaKey or Batch.DictMetaKey, got {type(key).__name__}"
        )


def normalise_value(key: _Key, value: Any) -> list[Any] | dict[str, list[Any]]:
    """Copy a user-supplied metadata value into storage form, checking its type."""
    check_key(key)
    if isinstance(key, MetaKey):
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise TypeError(
                f"metadata for {key!r} must be a sequence with one value per element, "
                f"got {type(value).__name__}"
            )
        return list(value)
    if not isinstance(value, Mapping):
        raise TypeError(
            f"metadata for {key!r} must be a mapping of str to per-element sequences, "
            f"got {type(value).__name__}"
        )
    out: dict[str, list[Any]] = {}
    for name, seq in value.items():
        if not isinstance(name, str):
            raise TypeError(f"entries of {key!r} must be keyed by str, got {name!r}")
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise TypeError(
                f"metadata {key!r}[{name!r}] must be a sequence with one value per element, "
                f"got {type(seq).__name__}"
            )
        out[name] = list(seq)
    return out


def lengths(storage: Storage) -> Iterator[tuple[str, int]]:
    """Yield (description, length) for every per-element sequence in ``storage``."""
    for key, value in storage.items():
        if isinstance(value, dict):
            for name, seq in value.items():
                yield f"metadata {key!r}[{name!r}]", len(seq)
        else:
            yield f"metadata {key!r}", len(value)


def copy_storage(storage: Storage) -> Storage:
    return {
        k: ({n: list(s) for n, s in v.items()} if isinstance(v, dict) else list(v))
        for k, v in storage.items()
    }


def subset_storage(storage: Storage, index: Sequence[int] | slice) -> Storage:
    def pick(seq: list[Any]) -> list[Any]:
        if isinstance(index, slice):
            return seq[index]
        return [seq[i] for i in index]

    return {
        k: ({n: pick(s) for n, s in v.items()} if isinstance(v, dict) else pick(v))
        for k, v in storage.items()
    }


def concat_storages(storages: Sequence[Storage]) -> Storage:
    """Concatenate metadata of several batches; every batch must carry the same keys."""
    if not storages:
        return {}
    first = storages[0]
    out: Storage = {}
    for key, value in first.items():
        for i, other in enumerate(storages[1:], start=1):
            if key not in other:
                raise IntroscopeValueError(f"batch {i} lacks metadata {key!r} that batch 0 has")
        if isinstance(value, dict):
            merged: dict[str, list[Any]] = {}
            for name in value:
                merged[name] = []
                for i, s in enumerate(storages):
                    if name not in s[key]:
                        raise IntroscopeValueError(f"batch {i} lacks metadata {key!r}[{name!r}]")
                    merged[name].extend(s[key][name])
            out[key] = merged
        else:
            out[key] = [v for s in storages for v in s[key]]
    for i, other in enumerate(storages[1:], start=1):
        extra = set(other) - set(first)
        if extra:
            raise IntroscopeValueError(
                f"batch {i} has metadata {sorted(map(repr, extra))} that batch 0 lacks"
            )
    return out


def values_equal(a: Any, b: Any) -> bool:
    """``a == b`` as one bool; numpy arrays compare by shape and contents."""
    try:
        import numpy as np

        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return bool(np.array_equal(a, b))
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable payloads are unequal
        return False


def storages_equal(a: Storage, b: Storage) -> bool:
    if set(a) != set(b):
        return False
    for key, va in a.items():
        vb = b[key]
        if isinstance(va, dict):
            if set(va) != set(vb):
                return False
            pairs = [(x, y) for n in va for x, y in zip(va[n], vb[n])]
            if any(len(va[n]) != len(vb[n]) for n in va):
                return False
        else:
            if len(va) != len(vb):
                return False
            pairs = list(zip(va, vb))
        if not all(values_equal(x, y) for x, y in pairs):
            return False
    return True


class MetadataView:
    """Read-only view of a batch's metadata: ``metadata[key]``, ``key in metadata``, ``keys()``."""

    __slots__ = ("_storage",)

    def __init__(self, storage: Storage | None = None) -> None:
        # ``Batch.MetadataType()`` is an empty view, as in DNIKit
        self._storage = storage if storage is not None else {}

    # Typed by key (DNIKit's overloads, with the fresh lists this view returns): a MetaKey[T]
    # gives list[T], a DictMetaKey[T] gives dict[str, list[T]].
    @overload
    def __getitem__(self, key: DictMetaKey[_T]) -> dict[str, list[_T]]: ...

    @overload
    def __getitem__(self, key: MetaKey[_T]) -> list[_T]: ...

    def __getitem__(self, key: _Key) -> Any:
        check_key(key)
        if key not in self._storage:
            raise KeyError(f"no metadata {key!r}; present: {list(self._storage)}")
        value = self._storage[key]
        # Fresh lists (as DNIKit returns): ``== [...]`` and list operations behave the same, and
        # changing the copy cannot change the batch.
        if isinstance(value, dict):
            return {n: list(s) for n, s in value.items()}
        return list(value)

    @overload
    def get(self, key: DictMetaKey[_T]) -> dict[str, list[_T]] | None: ...

    @overload
    def get(self, key: DictMetaKey[_T], default: _D) -> dict[str, list[_T]] | _D: ...

    @overload
    def get(self, key: MetaKey[_T]) -> list[_T] | None: ...

    @overload
    def get(self, key: MetaKey[_T], default: _D) -> list[_T] | _D: ...

    def get(self, key: _Key, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __contains__(self, key: object) -> bool:
        return key in self._storage

    def __bool__(self) -> bool:
        return bool(self._storage)

    def __len__(self) -> int:
        return len(self._storage)

    def __iter__(self) -> Iterator[_Key]:
        return iter(self._storage)

    def keys(self) -> KeysView[_Key]:
        return self._storage.keys()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MetadataView):
            return storages_equal(self._storage, other._storage)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metadata({', '.join(repr(k) for k in self._storage)})"


class ElementMetadataView:
    """Metadata of one element: ``element.metadata[key]`` is that element's value."""

    __slots__ = ("_storage", "_index")

    def __init__(self, storage: Storage, index: int) -> None:
        self._storage = storage
        self._index = index

    @overload
    def __getitem__(self, key: DictMetaKey[_T]) -> dict[str, _T]: ...

    @overload
    def __getitem__(self, key: MetaKey[_T]) -> _T: ...

    def __getitem__(self, key: _Key) -> Any:
        check_key(key)
        if key not in self._storage:
            raise KeyError(f"no metadata {key!r}; present: {list(self._storage)}")
        value = self._storage[key]
        if isinstance(value, dict):
            return {n: s[self._index] for n, s in value.items()}
        return value[self._index]

    def __contains__(self, key: object) -> bool:
        return key in self._storage

    def __bool__(self) -> bool:
        return bool(self._storage)

    def keys(self) -> KeysView[_Key]:
        return self._storage.keys()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ElementMetadataView):
            return NotImplemented
        return self.keys() == other.keys() and all(
            values_equal(self[key], other[key]) for key in self._storage
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {self[k]!r}" for k in self._storage) + "}"


class MutableMetadata:
    """Metadata of a ``Batch.Builder``: assign, read, delete per-element sequences."""

    def __init__(self, storage: Storage | None = None) -> None:
        self._storage: Storage = storage if storage is not None else {}
        self._defaulted: set[Any] = set()  # MetaKeys created empty by a read, to be filled

    def finished(self) -> Storage:
        """The storage for a new batch: keys read into existence are normalised as an
        assignment would, or dropped when they were left empty."""
        for key in self._defaulted:
            if key in self._storage and not isinstance(key, DictMetaKey):
                values = self._storage[key]
                if len(values):
                    self._storage[key] = normalise_value(key, values)
                else:
                    del self._storage[key]
        self._defaulted.clear()
        return self._storage

    # DNIKit's builder idioms type-check: ``metadata[KEY].append(v)`` on a MetaKey[T] (a
    # list[T]), ``metadata[DICT_KEY]["entry"] = [...]`` on a DictMetaKey[T].
    @overload
    def __getitem__(self, key: DictMetaKey[_T]) -> dict[str, list[_T]]: ...

    @overload
    def __getitem__(self, key: MetaKey[_T]) -> list[_T]: ...

    def __getitem__(self, key: _Key) -> Any:
        check_key(key)
        if key not in self._storage:
            if isinstance(key, DictMetaKey):
                # As in DNIKit, ``builder.metadata[KEY]["entry"] = [...]`` works on a new key; a
                # DictMetaKey left without entries is dropped when the batch is made.
                return self._storage.setdefault(key, {})
            # DNIKit's builder metadata is a defaultdict: ``metadata[KEY].append(v)`` fills a
            # new key element by element (an empty list left behind is dropped).
            self._defaulted.add(key)
            return self._storage.setdefault(key, [])
        return self._storage[key]

    # Any iterable (not a str) for a MetaKey, any mapping of str to sized per-element sequences
    # (lists, tuples, numpy arrays) for a DictMetaKey; stored as lists.
    @overload
    def __setitem__(self, key: DictMetaKey[_T], value: Mapping[str, Collection[_T]]) -> None: ...

    @overload
    def __setitem__(self, key: MetaKey[_T], value: Iterable[_T]) -> None: ...

    def __setitem__(self, key: _Key, value: Any) -> None:
        self._storage[key] = normalise_value(key, value)

    def __delitem__(self, key: _Key) -> None:
        check_key(key)
        del self._storage[key]

    def __contains__(self, key: object) -> bool:
        return key in self._storage

    def __bool__(self) -> bool:
        return bool(self._storage)

    def __len__(self) -> int:
        return len(self._storage)

    def __iter__(self) -> Iterator[_Key]:
        return iter(list(self._storage))

    def keys(self) -> KeysView[_Key]:
        return self._storage.keys()

    def __repr__(self) -> str:
        return f"MutableMetadata({', '.join(repr(k) for k in self._storage)})"


# DNIKit's nested names, e.g. in annotations: ``Batch.MetadataType.ElementType``.
MetadataView.ElementType = ElementMetadataView  # type: ignore[attr-defined]
