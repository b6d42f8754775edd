"""The ``Producer`` protocol and checks applied where batches enter a consumer."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from introscope.exceptions import IntroscopeError, IntroscopeValueError

from ._batch import Batch

__all__ = ["Producer", "peek_first_batch", "check_batch_size", "checked_batches"]


@runtime_checkable
class Producer(Protocol):
    """Anything callable as ``producer(batch_size)`` that yields ``Batch`` objects.

    Examples:
        Any function of a batch size that yields batches is a producer:

        >>> import numpy as np
        >>> from introscope.base import Batch
        >>> def count_to_five(batch_size):
        ...     data = np.arange(5)
        ...     for start in range(0, len(data), batch_size):
        ...         yield Batch({"n": data[start:start + batch_size]})
        >>> [b.batch_size for b in count_to_five(2)]
        [2, 2, 1]
    """

    def __call__(self, batch_size: int) -> Iterable[Batch]: ...


def check_batch_size(batch_size: object, argument: str = "batch_size") -> int:
    """Return ``batch_size`` if it is a positive int, else raise naming the argument."""
    # numpy integers are accepted (DNIKit takes them; sizes are often computed with numpy).
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        raise IntroscopeValueError(f"{argument} must be a positive int, got {batch_size!r}")
    return int(batch_size)


def checked_batches(
    producer: Producer, batch_size: int, *, allow_empty: bool = False, what: str = "producer"
) -> Generator[Batch, None, None]:
    """Iterate ``producer(batch_size)``, raising a clear error for anything that is not a Batch.

    With ``allow_empty=False`` a producer that yields nothing is an error too.
    """
    if not callable(producer):
        raise IntroscopeError(
            f"{what} must be callable as producer(batch_size), got {type(producer).__name__}"
        )
    check_batch_size(batch_size)
    batches = producer(batch_size)
    try:
        batches = iter(batches)
    except TypeError:
        raise IntroscopeError(
            f"{what} returned a {type(batches).__name__}, not an iterable of batches; a producer "
            f"is a function of batch_size that yields Batch objects (a generator with yield, or "
            f"returns an iterator/list of them)"
        ) from None
    count = 0
    for count, batch in enumerate(batches, start=1):
        if not isinstance(batch, Batch):
            raise IntroscopeError(
                f"{what} yielded a {type(batch).__name__} as batch {count - 1}; "
                f"producers must yield introscope.base.Batch objects"
            )
        yield batch
    if count == 0 and not allow_empty:
        raise IntroscopeError(f"{what} yielded no batch; there is no data to process")


def peek_first_batch(producer: Producer, batch_size: int = 1) -> Batch:
    """Return the first batch ``producer(batch_size)`` yields (running only what that needs).

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, peek_first_batch, producer_from_batches
        >>> producer = producer_from_batches(Batch({"x": np.arange(10)}))
        >>> peek_first_batch(producer, batch_size=3).fields["x"]
        array([0, 1, 2])
    """
    it = iter(checked_batches(producer, batch_size))
    try:
        return next(it)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
