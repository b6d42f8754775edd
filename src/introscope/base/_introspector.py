"""The ``Introspector`` protocol."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._producer import Producer

__all__ = ["Introspector"]


@runtime_checkable
class Introspector(Protocol):
    """An algorithm that consumes a producer: ``Cls.introspect(producer, batch_size=...)``."""

    @classmethod
    def introspect(cls, producer: Producer, *args: Any, **kwargs: Any) -> Any:
        """Pull the producer's batches and return the introspector's result."""
        ...
