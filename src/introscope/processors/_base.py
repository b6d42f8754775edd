"""``Processor`` (a function applied to selected fields) and the field checks every stage shares."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Collection, Iterable

import numpy as np

from introscope.base import Batch, PipelineStage
from introscope.exceptions import IntroscopeError
from introscope.typing import OneManyOrNone, resolve_one_many_or_none

__all__ = ["Processor", "check_names_present", "check_numeric", "resolve_fields"]

_log = logging.getLogger("introscope.processors")


def resolve_fields(fields: OneManyOrNone[str], argument: str = "fields") -> frozenset[str] | None:
    """``fields`` as a frozenset of names (None stays None), with a clear error for bad types."""
    try:
        return resolve_one_many_or_none(fields, str)
    except TypeError as exc:
        raise TypeError(f"{argument} must be a str, a collection of str or None: {exc}") from None


def check_names_present(
    stage: str, names: Iterable[str], present: Collection[str], kind: str = "field"
) -> None:
    """Raise naming ``stage`` and the names present if any of ``names`` is not in ``present``."""
    missing = sorted(n for n in names if n not in present)
    if missing:
        parts = []
        for name in missing:
            close = difflib.get_close_matches(name, list(present), n=2, cutoff=0.6)
            parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise IntroscopeError(
            f"{stage}: the batch has no {kind} {', '.join(parts)}; "
            f"{kind}s present: {sorted(present)}"
        )


def check_numeric(stage: str, name: str, array: np.ndarray) -> None:
    """Raise if ``array`` (field ``name``) does not hold numbers (bool counts as a number)."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise IntroscopeError(
            f"{stage}: field {name!r} has dtype {array.dtype}, but numbers are needed; "
            f"convert or remove that field first (FieldRemover) or select fields with fields=..."
        )


class Processor(PipelineStage):
    """Applies ``func`` to the array of each selected field of every batch.

    Args:
        func: array -> array; dimension 0 (the batch) must keep its size.
        fields: field name(s) to process; None processes every field, and so does an empty
            collection (``fields=[]``, as in DNIKit: check a computed selection is not empty).
            A name the batch does not have is an error.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Processor
        >>> batch = Batch({"x": np.array([[1.0, 2.0], [3.0, 4.0]]), "y": np.array([1, 2])})
        >>> doubled = pipeline(producer_from_batches(batch), Processor(lambda a: a * 2, fields="x"))
        >>> out = peek_first_batch(doubled, batch_size=2)
        >>> out.fields["x"]
        array([[2., 4.],
               [6., 8.]])
        >>> out.fields["y"]  # not selected: unchanged
        array([1, 2])
    """

    #: Subclasses that do arithmetic set this so non-numeric fields give a clear error.
    _needs_numbers = False

    def __init__(
        self, func: Callable[[np.ndarray], np.ndarray], *, fields: OneManyOrNone[str] = None
    ) -> None:
        if not callable(func):
            raise TypeError(f"Processor's func must be callable, got {type(func).__name__}")
        self._func = func
        self._fields = resolve_fields(fields)

    @property
    def _stage_name(self) -> str:
        return type(self).__name__

    def _apply(self, name: str, array: np.ndarray) -> np.ndarray:
        """Process one field's array; subclasses override to use the field name in errors."""
        return self._func(array)

    def _get_batch_processor(self) -> Callable[[Batch], Batch]:
        apply, selected, stage = self._apply, self._fields, self._stage_name
        needs_numbers = self._needs_numbers

        def process(batch: Batch) -> Batch:
            if selected:
                check_names_present(stage, selected, batch.fields.keys())
                names = [n for n in batch.fields if n in selected]
            else:
                names = list(batch.fields)
            builder = Batch.Builder(base=batch)
            for name in names:
                array = batch.fields[name]
                if needs_numbers:
                    check_numeric(stage, name, array)
                result = apply(name, array)
                if not isinstance(result, np.ndarray):
                    raise IntroscopeError(
                        f"{stage}: the function returned a {type(result).__name__} for field "
                        f"{name!r}; it must return a numpy array"
                    )
                if result.ndim == 0 or result.shape[0] != array.shape[0]:
                    raise IntroscopeError(
                        f"{stage}: the function changed the batch dimension of field {name!r} "
                        f"from {array.shape[0]} to {result.shape[:1] or 'a 0-d array'}; "
                        f"dimension 0 must keep its size"
                    )
                builder.fields[name] = result
            return builder.make_batch()

        return process

    def __repr__(self) -> str:
        fields = sorted(self._fields) if self._fields else "all"
        return f"{self._stage_name}(fields={fields})"
