"""``Composer``: filter or transform whole batches with a user function."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from introscope.base import Batch, PipelineStage
from introscope.exceptions import IntroscopeError

__all__ = ["Composer"]


class Composer(PipelineStage):
    """Applies ``filter`` to every batch: it returns a new batch (e.g. a subset) or None.

    A batch for which ``filter`` returns None or an empty batch is dropped from the pipeline
    (DNIKit passes an empty batch on instead).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
        >>> from introscope.processors import Composer
        >>> batch = Batch({"x": np.array([1, 5, 2, 8])})
        >>> large = Composer(lambda b: b.elements[b.fields["x"] > 3])
        >>> peek_first_batch(pipeline(producer_from_batches(batch), large), 4).fields["x"]
        array([5, 8])
    """

    def __init__(self, filter: Callable[[Batch], Batch | None]) -> None:
        if not callable(filter):
            raise TypeError(f"Composer: filter must be callable, got {type(filter).__name__}")
        self._filter = filter

    def _get_batch_processor(self) -> Callable[[Batch], Batch | None]:
        apply = self._filter

        def process(batch: Batch) -> Batch | None:
            result = apply(batch)
            if result is None:
                return None
            if not isinstance(result, Batch):
                raise IntroscopeError(
                    f"Composer: the filter returned a {type(result).__name__}; "
                    f"it must return a Batch or None"
                )
            return result if result.batch_size > 0 else None

        return process

    @classmethod
    def from_element_filter(cls, elem_filter: Callable[[Batch.ElementType], bool]) -> Composer:
        """A Composer that keeps the elements for which ``elem_filter(element)`` is true.

        Examples:
            >>> import numpy as np
            >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
            >>> from introscope.processors import Composer
            >>> batch = Batch({"x": np.array([1, 5, 2, 8])})
            >>> even = Composer.from_element_filter(lambda element: element.fields["x"] % 2 == 0)
            >>> peek_first_batch(pipeline(producer_from_batches(batch), even), 4).fields["x"]
            array([2, 8])
        """
        if not callable(elem_filter):
            raise TypeError(f"elem_filter must be callable, got {type(elem_filter).__name__}")

        def keep(batch: Batch) -> Batch:
            mask = np.fromiter(
                (bool(elem_filter(e)) for e in batch.elements), dtype=bool, count=batch.batch_size
            )
            return batch if mask.all() else batch.elements[mask]

        return cls(keep)

    @classmethod
    def from_dict_metadata(
        cls, metadata_key: Batch.DictMetaKey[Any], label_dimension: str, label: Hashable
    ) -> Composer:
        """A Composer that keeps elements whose ``metadata[metadata_key][label_dimension]``
        equals ``label`` (elements without that metadata are dropped).

        Examples:
            >>> import numpy as np
            >>> from introscope.base import Batch, peek_first_batch, pipeline, producer_from_batches
            >>> from introscope.processors import Composer
            >>> builder = Batch.Builder({"x": np.array([10, 11, 12])})
            >>> builder.metadata[Batch.StdKeys.LABELS] = {"digit": [7, 1, 7]}
            >>> sevens = Composer.from_dict_metadata(Batch.StdKeys.LABELS, "digit", 7)
            >>> source = producer_from_batches(builder.make_batch())
            >>> peek_first_batch(pipeline(source, sevens), batch_size=3).fields["x"]
            array([10, 12])
        """
        if not isinstance(metadata_key, Batch.DictMetaKey):
            raise TypeError(
                f"metadata_key must be a Batch.DictMetaKey, got {type(metadata_key).__name__}"
            )

        def keep(batch: Batch) -> Batch:
            if metadata_key not in batch.metadata:
                return batch.elements[[]]
            entries = batch.metadata[metadata_key]
            if label_dimension not in entries:
                return batch.elements[[]]
            mask = np.fromiter(
                (value == label for value in entries[label_dimension]),
                dtype=bool,
                count=batch.batch_size,
            )
            return batch if mask.all() else batch.elements[mask]

        return cls(keep)

    def __repr__(self) -> str:
        return f"Composer({getattr(self._filter, '__name__', self._filter)!r})"
