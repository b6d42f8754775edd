"""The ``Introspector`` protocol."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._producer import Producer

__all__ = ["Introspector"]


@runtime_checkable
class Introspector(Protocol):
    """An algorithm that consumes a producer: ``Cls.introspect(producer, batch_size=...)``.

    Examples:
        Any class with an ``introspect`` class method that takes a producer is an introspector:

        >>> import numpy as np
        >>> from introscope.base import Batch, Introspector, producer_from_batches
        >>> class Mean:
        ...     @classmethod
        ...     def introspect(cls, producer, batch_size=32):
        ...         values = np.concatenate([b.fields["x"] for b in producer(batch_size)])
        ...         return float(values.mean())
        >>> isinstance(Mean(), Introspector)
        True
        >>> Mean.introspect(producer_from_batches(Batch({"x": np.arange(5.0)})))
        2.0
    """

    @classmethod
    def introspect(cls, producer: Producer, *args: Any, **kwargs: Any) -> Any:
        """Pull the producer's batches and return the introspector's result."""
        ...
