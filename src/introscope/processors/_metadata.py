"""Stages that remove or rename metadata."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from introscope.base import Batch, PipelineStage
from introscope.exceptions import IntroscopeError, IntroscopeValueError
from introscope.typing import OneManyOrNone

from ._base import resolve_fields
from ._fields import check_rename_mapping, rename_keys

__all__ = ["MetadataRemover", "MetadataRenamer"]

_AnyKey: Any = Batch.MetaKey | Batch.DictMetaKey  # a runtime union, for isinstance


def _split_meta_keys(
    value: Any, argument: str
) -> tuple[frozenset[Batch.MetaKey[Any]], frozenset[Batch.DictMetaKey[Any]]]:
    """(MetaKeys, DictMetaKeys) named by ``value`` (one key, a collection of keys, or None)."""
    if value is None:
        return frozenset(), frozenset()
    items = [value] if isinstance(value, _AnyKey) else value
    if not isinstance(items, Collection) or isinstance(items, (str, bytes)):
        raise TypeError(f"{argument} must be Batch.MetaKey/DictMetaKey objects, got {value!r}")
    simple: set[Batch.MetaKey[Any]] = set()
    nested: set[Batch.DictMetaKey[Any]] = set()
    for key in items:
        if isinstance(key, Batch.DictMetaKey):
            nested.add(key)
        elif isinstance(key, Batch.MetaKey):
            simple.add(key)
        else:
            raise TypeError(
                f"{argument} must hold Batch.MetaKey or Batch.DictMetaKey objects, got {key!r}"
            )
    return frozenset(simple), frozenset(nested)


def _check_keys_present(stage: str, wanted: Collection[Any], metadata: Any) -> None:
    missing = [k for k in wanted if k not in metadata]
    if missing:
        present = [repr(k) for k in metadata.keys()]
        raise IntroscopeError(
            f"{stage}: the batch has no metadata {', '.join(map(repr, missing))}; "
            f"metadata present: [{', '.join(present)}]"
        )


def _check_entries_present(stage: str, names: Collection[str], entries: Mapping[Any, Any]) -> None:
    """Every name must be an entry of at least one of the selected DictMetaKeys."""
    known = {n for value in entries.values() for n in value}
    missing = sorted(n for n in names if n not in known)
    if missing:
        raise IntroscopeError(
            f"{stage}: no entry {missing} in metadata {[repr(k) for k in entries]}; "
            f"entries present: {sorted(known)}"
        )


class MetadataRemover(PipelineStage):
    """Removes metadata: whole keys (``meta_keys``) and/or entries of DictMetaKeys (``keys``).

    With no selection everything is removed; with ``keep=True`` the selection is what stays.

    Args:
        meta_keys: MetaKey / DictMetaKey object(s) to remove; None selects all of them.
        keys: entry name(s) of DictMetaKey metadata (e.g. ``"label"``) to remove.
        keep: keep the selection and remove everything else.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import MetadataRemover
        >>> builder = Batch.Builder({"x": np.zeros(2)})
        >>> builder.metadata[Batch.StdKeys.LABELS] = {"digit": [3, 1], "writer": ["a", "b"]}
        >>> source = producer_from_batches(builder.make_batch())
        >>> out = peek_first_batch(pipeline(source, MetadataRemover(keys="writer")), batch_size=2)
        >>> sorted(out.metadata[Batch.StdKeys.LABELS])
        ['digit']
    """

    def __init__(
        self,
        *,
        meta_keys: OneManyOrNone[Any] = None,
        keys: OneManyOrNone[str] = None,
        keep: bool = False,
    ) -> None:
        if keys is not None and (
            isinstance(keys, _AnyKey)
            or (isinstance(keys, Collection) and any(isinstance(k, _AnyKey) for k in keys))
        ):
            raise IntroscopeValueError(
                "MetadataRemover: keys holds metadata keys; pass them as meta_keys"
            )
        self._simple, self._nested = _split_meta_keys(meta_keys, "meta_keys")
        self._keys = resolve_fields(keys, "keys")
        self._keep = bool(keep)

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        simple, nested, keys, keep = self._simple, self._nested, self._keys, self._keep
        stage = "MetadataRemover"
        nothing_selected = not simple and not nested and keys is None

        def process(batch: Batch) -> Batch:
            _check_keys_present(stage, simple | nested, batch.metadata)
            builder = Batch.Builder(base=batch)
            meta = builder.metadata
            all_simple = [k for k in meta if isinstance(k, Batch.MetaKey)]
            all_nested = [k for k in meta if isinstance(k, Batch.DictMetaKey)]
            target = list(nested) if nested else all_nested
            if keys is not None:
                _check_entries_present(stage, keys, {k: meta[k] for k in target})
            if nothing_selected:
                if not keep:
                    for key in list(meta):
                        del meta[key]
                return builder.make_batch()
            if keep:
                for key in all_simple:
                    if key not in simple:
                        del meta[key]
                dict_selected = bool(nested) or keys is not None
                for key in all_nested:
                    if not dict_selected or key not in target:
                        del meta[key]
                    elif keys is not None:
                        meta[key] = {n: v for n, v in meta[key].items() if n in keys}
            else:
                for key in simple:
                    del meta[key]
                for key in target if (nested or keys is not None) else ():
                    if keys is None:
                        del meta[key]
                    else:
                        meta[key] = {n: v for n, v in meta[key].items() if n not in keys}
            for key in [k for k in meta if isinstance(k, Batch.DictMetaKey)]:
                if not meta[key]:
                    del meta[key]  # a DictMetaKey with no entries left is no metadata
            return builder.make_batch()

        return process


class MetadataRenamer(PipelineStage):
    """Renames entries of DictMetaKey metadata (e.g. the ``"label"`` of ``StdKeys.LABELS``); an
    entry a rename lands on is replaced, as in DNIKit.

    Args:
        mapping: old entry name -> new entry name.
        meta_keys: DictMetaKey(s) whose entries to rename; None renames in all of them.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import MetadataRenamer
        >>> builder = Batch.Builder({"x": np.zeros(2)})
        >>> builder.metadata[Batch.StdKeys.LABELS] = {"digit": [3, 1]}
        >>> source = producer_from_batches(builder.make_batch())
        >>> out = peek_first_batch(pipeline(source, MetadataRenamer({"digit": "class"})), 2)
        >>> out.metadata[Batch.StdKeys.LABELS]["class"]
        [3, 1]
    """

    def __init__(
        self, mapping: Mapping[str, str], *, meta_keys: OneManyOrNone[Batch.DictMetaKey[Any]] = None
    ) -> None:
        self._mapping = check_rename_mapping("MetadataRenamer", mapping)
        simple, self._meta_keys = _split_meta_keys(meta_keys, "meta_keys")
        if simple:
            raise TypeError(
                f"MetadataRenamer renames entries of Batch.DictMetaKey metadata; "
                f"{sorted(map(repr, simple))} are Batch.MetaKey"
            )

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        mapping, selected, stage = self._mapping, self._meta_keys, "MetadataRenamer"

        def process(batch: Batch) -> Batch:
            _check_keys_present(stage, selected, batch.metadata)
            builder = Batch.Builder(base=batch)
            meta = builder.metadata
            target = list(selected) or [k for k in meta if isinstance(k, Batch.DictMetaKey)]
            _check_entries_present(stage, mapping, {k: meta[k] for k in target})
            for key in target:
                meta[key] = rename_keys(mapping, meta[key])
            return builder.make_batch()

        return process
