"""Producer utilities: accumulate, re-batch, iterate elements, concatenate, subset and shuffle."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from introscope.exceptions import IntroscopeError

from ._batch import Batch, concatenate_batches
from ._producer import Producer, check_batch_size, checked_batches

__all__ = [
    "accumulate_batches",
    "resize_batches",
    "rebatch",
    "producer_from_batches",
    "produce_elements",
    "concatenate_producers",
    "subset_producer",
    "shuffle_producer",
]


def accumulate_batches(producer: Producer, *, batch_size: int = 1024) -> Batch:
    """Join every batch of ``producer`` into one batch (holds the whole data set in memory).

    Raises ``IntroscopeError`` if the producer yields nothing.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, accumulate_batches, producer_from_batches
        >>> producer = producer_from_batches(Batch({"x": np.arange(5)}))
        >>> accumulate_batches(producer, batch_size=2).fields["x"]
        array([0, 1, 2, 3, 4])
    """
    batches = list(checked_batches(producer, batch_size))
    try:
        return concatenate_batches(batches)
    except IntroscopeError as exc:
        raise IntroscopeError(f"cannot accumulate the producer's batches: {exc}") from None


def resize_batches(batches: Iterable[Batch], batch_size: int) -> Iterator[Batch]:
    """Re-cut ``batches`` into batches of exactly ``batch_size`` elements; only the last is short.

    Memory stays at about one output batch plus one input batch. A batch already of the right
    size passes through unchanged (no copy).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, resize_batches
        >>> batches = [Batch({"x": np.arange(3)}), Batch({"x": np.arange(3, 7)})]
        >>> [b.fields["x"].tolist() for b in resize_batches(batches, 5)]
        [[0, 1, 2, 3, 4], [5, 6]]
    """
    size = check_batch_size(batch_size)
    # (batch, first unused element): slicing from an offset keeps splitting a large batch linear.
    pending: deque[tuple[Batch, int]] = deque()
    count = 0
    for batch in batches:
        n = batch.batch_size
        if n == 0:
            continue
        if not pending and n == size:
            yield batch
            continue
        pending.append((batch, 0))
        count += n
        while count >= size:
            parts: list[Batch] = []
            need = size
            while need:
                head, start = pending[0]
                available = head.batch_size - start
                if available <= need:
                    parts.append(head if start == 0 else head.elements[start:])
                    pending.popleft()
                    need -= available
                else:
                    parts.append(head.elements[start : start + need])
                    pending[0] = (head, start + need)
                    need = 0
            count -= size
            yield _join(parts)
    if pending:
        yield _join([b if s == 0 else b.elements[s:] for b, s in pending])


def _join(parts: list[Batch]) -> Batch:
    try:
        return concatenate_batches(parts)
    except IntroscopeError as exc:
        raise IntroscopeError(
            f"cannot re-batch: consecutive batches do not fit together ({exc})"
        ) from None


class _Rebatched:
    def __init__(self, source: Producer, source_batch_size: int | None) -> None:
        if source_batch_size is not None:
            check_batch_size(source_batch_size, "source_batch_size")
        self._source = source
        self._source_batch_size = source_batch_size

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        pull = self._source_batch_size or batch_size
        yield from resize_batches(checked_batches(self._source, pull, allow_empty=True), batch_size)

    def __repr__(self) -> str:
        return f"rebatch({self._source!r}, source_batch_size={self._source_batch_size})"


def rebatch(producer: Producer, source_batch_size: int | None = None) -> Producer:
    """A producer that yields batches of exactly the requested size (only the last one short).

    Args:
        producer: the source; it may yield batches of any size.
        source_batch_size: the batch size to ask ``producer`` for; by default the requested size.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, rebatch
        >>> def uneven(batch_size):  # ignores the requested size
        ...     yield Batch({"x": np.arange(3)})
        ...     yield Batch({"x": np.arange(3, 5)})
        >>> [b.batch_size for b in rebatch(uneven)(batch_size=4)]
        [4, 1]
    """
    return _Rebatched(producer, source_batch_size)


class _FromBatches:
    def __init__(self, batches: Sequence[Batch]) -> None:
        for i, b in enumerate(batches):
            if not isinstance(b, Batch):
                raise IntroscopeError(f"item {i} is a {type(b).__name__}, not a Batch")
        self._batches = tuple(batches)

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        yield from resize_batches(self._batches, batch_size)

    def __repr__(self) -> str:
        return f"producer_from_batches({len(self._batches)} batches)"


def producer_from_batches(batches: Batch | Sequence[Batch]) -> Producer:
    """A re-iterable producer over batches held in memory, cut to whatever size is requested.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, producer_from_batches
        >>> batches = [Batch({"x": np.arange(3)}), Batch({"x": np.arange(3, 5)})]
        >>> producer = producer_from_batches(batches)
        >>> [b.fields["x"].tolist() for b in producer(batch_size=2)]
        [[0, 1], [2, 3], [4]]
    """
    return _FromBatches([batches] if isinstance(batches, Batch) else list(batches))


def produce_elements(producer: Producer, batch_size: int = 32) -> Iterator[Batch.ElementType]:
    """Iterate the elements of every batch of ``producer``, one at a time.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, produce_elements, producer_from_batches
        >>> producer = producer_from_batches(Batch({"x": np.array([7, 8, 9])}))
        >>> [int(element.fields["x"]) for element in produce_elements(producer, batch_size=2)]
        [7, 8, 9]
    """
    for batch in checked_batches(producer, batch_size, allow_empty=True):
        yield from batch.elements


class _Concatenated:
    def __init__(self, producers: Sequence[Producer]) -> None:
        self._producers = tuple(producers)

    def _all(self, batch_size: int) -> Iterator[Batch]:
        for i, p in enumerate(self._producers):
            yield from checked_batches(p, batch_size, allow_empty=True, what=f"producer {i}")

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        yield from resize_batches(self._all(batch_size), batch_size)

    def __repr__(self) -> str:
        return f"concatenate_producers({', '.join(map(repr, self._producers))})"


def concatenate_producers(*producers: Producer) -> Producer:
    """One producer that yields the elements of each producer in turn.

    Batches are re-cut across the boundaries so only the last batch is short; the producers must
    therefore yield the same fields and metadata keys.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, concatenate_producers, producer_from_batches
        >>> first = producer_from_batches(Batch({"x": np.array([1, 2, 3])}))
        >>> second = producer_from_batches(Batch({"x": np.array([4, 5])}))
        >>> [b.fields["x"].tolist() for b in concatenate_producers(first, second)(batch_size=2)]
        [[1, 2], [3, 4], [5]]
    """
    if not producers:
        raise IntroscopeError("concatenate_producers needs at least one producer")
    for i, p in enumerate(producers):
        if not callable(p):
            raise IntroscopeError(
                f"argument {i} of concatenate_producers is a {type(p).__name__}, not a producer"
            )
    return _Concatenated(producers)


class _Subset:
    def __init__(
        self,
        source: Producer,
        indices: np.ndarray | None,
        predicate: Callable[[Batch.ElementType], bool] | None,
    ) -> None:
        self._source = source
        self._indices = indices
        self._predicate = predicate

    def _selected(self, batch_size: int) -> Iterator[Batch]:
        wanted = self._indices
        offset = 0
        pos = 0  # next entry of `wanted` not yet emitted
        for batch in checked_batches(self._source, batch_size, allow_empty=True):
            n = batch.batch_size
            if wanted is not None:
                end = int(np.searchsorted(wanted, offset + n))
                local = wanted[pos:end] - offset
                pos = end
                offset += n
                if local.size:
                    yield batch if local.size == n else batch.elements[local]
                if pos == wanted.size:
                    return
            else:
                assert self._predicate is not None
                mask = [bool(self._predicate(e)) for e in batch.elements]
                if all(mask):
                    yield batch
                elif any(mask):
                    yield batch.elements[np.asarray(mask)]
        if wanted is not None and pos < wanted.size:
            missing = wanted[pos:]
            raise IntroscopeError(
                f"subset_producer: indices {missing[:10].tolist()}"
                f"{' ...' if missing.size > 10 else ''} are out of range; the producer has "
                f"only {offset} elements"
            )

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        yield from resize_batches(self._selected(batch_size), batch_size)

    def __repr__(self) -> str:
        what = "predicate" if self._indices is None else f"{self._indices.size} indices"
        return f"subset_producer({self._source!r}, {what})"


def subset_producer(
    producer: Producer,
    indices: Iterable[int] | None = None,
    *,
    predicate: Callable[[Batch.ElementType], bool] | None = None,
) -> Producer:
    """A producer of the elements of ``producer`` at ``indices``, or for which ``predicate`` holds.

    Give exactly one of them. Elements keep the order of ``producer`` (indices are sorted);
    an index past the end is an error raised when the pass reaches the end.

    Args:
        indices: positions of elements in the whole stream (0-based, no duplicates).
        predicate: called on each ``Batch.ElementType``; the element is kept when it is true.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, accumulate_batches, producer_from_batches
        >>> from introscope.base import subset_producer
        >>> producer = producer_from_batches(Batch({"x": np.arange(10, 20)}))
        >>> accumulate_batches(subset_producer(producer, [1, 3, 5])).fields["x"]
        array([11, 13, 15])
        >>> even = subset_producer(producer, predicate=lambda e: e.fields["x"] % 2 == 0)
        >>> accumulate_batches(even).fields["x"]
        array([10, 12, 14, 16, 18])
    """
    if (indices is None) == (predicate is None):
        raise IntroscopeError("subset_producer takes exactly one of indices= or predicate=")
    arr = None
    if indices is not None:
        arr = np.asarray(list(indices))
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise IntroscopeError(f"indices must be integers, got dtype {arr.dtype}")
        arr = np.sort(arr.astype(np.int64).ravel())
        if arr.size and arr[0] < 0:
            raise IntroscopeError(f"indices must be non-negative, got {int(arr[0])}")
        dup = arr[1:][arr[1:] == arr[:-1]]
        if dup.size:
            raise IntroscopeError(f"indices must not repeat, got {int(dup[0])} more than once")
    elif not callable(predicate):
        raise IntroscopeError(f"predicate must be callable, got {type(predicate).__name__}")
    return _Subset(producer, arr, predicate)


class _Shuffled:
    def __init__(self, source: Producer, seed: int) -> None:
        self._source = source
        self._seed = seed

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        batches = list(checked_batches(self._source, batch_size, allow_empty=True))
        if not batches:
            return
        whole = _join(batches)
        del batches
        order = np.random.default_rng(self._seed).permutation(whole.batch_size)
        for start in range(0, whole.batch_size, batch_size):
            yield whole.elements[order[start : start + batch_size]]

    def __repr__(self) -> str:
        return f"shuffle_producer({self._source!r}, seed={self._seed})"


def shuffle_producer(producer: Producer, seed: int | None = None) -> Producer:
    """A producer of the elements of ``producer`` in a random order, the same on every pass.

    Holds the whole data set in memory while a pass runs. ``seed=None`` draws one seed now, so
    that every pass of the returned producer agrees.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, accumulate_batches, producer_from_batches
        >>> from introscope.base import shuffle_producer
        >>> shuffled = shuffle_producer(producer_from_batches(Batch({"x": np.arange(6)})), seed=0)
        >>> first = accumulate_batches(shuffled).fields["x"]
        >>> sorted(first.tolist()), bool((first == accumulate_batches(shuffled).fields["x"]).all())
        ([0, 1, 2, 3, 4, 5], True)
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise IntroscopeError(f"seed must be an int or None, got {type(seed).__name__}")
    return _Shuffled(producer, int(seed))
