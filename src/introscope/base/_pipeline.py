"""``PipelineStage`` and ``pipeline``: lazy composition of a producer with processing stages."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Iterator

from introscope.exceptions import IntroscopeError

from ._batch import Batch
from ._producer import Producer, checked_batches

__all__ = ["PipelineStage", "pipeline"]

BatchProcessor = Callable[[Batch], "Batch | None"]


class PipelineStage(abc.ABC):  # noqa: B024 - either of two methods may be overridden
    """A step of a pipeline: turns a producer into another producer, lazily.

    Subclasses implement ``_get_batch_processor`` (a function from one batch to a batch, or
    ``None`` to drop it) or, for stages that change batching, override ``_pipeline``.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, PipelineStage, pipeline, producer_from_batches
        >>> class AddOne(PipelineStage):
        ...     def _get_batch_processor(self):
        ...         def process(batch):
        ...             builder = Batch.Builder(base=batch)
        ...             builder.fields["x"] = batch.fields["x"] + 1
        ...             return builder.make_batch()
        ...         return process
        >>> source = producer_from_batches(Batch({"x": np.arange(3)}))
        >>> next(iter(pipeline(source, AddOne())(batch_size=3))).fields["x"]
        array([1, 2, 3])
    """

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the stage's class (DNIKit stages have ``self.logger`` too)."""
        return logging.getLogger(f"{type(self).__module__}.{type(self).__qualname__}")

    def _get_batch_processor(self) -> BatchProcessor:
        raise NotImplementedError(
            f"{type(self).__name__} must implement _get_batch_processor() or _pipeline()"
        )

    def _pipeline(self, producer: Producer) -> Producer:
        return _StageProducer(producer, self)


class _StageProducer:
    """The producer made by applying one stage's batch processor to every upstream batch."""

    def __init__(self, upstream: Producer, stage: PipelineStage) -> None:
        self._upstream = upstream
        self._stage = stage

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        # A fresh processor per pass so stages may keep per-pass state.
        process = self._stage._get_batch_processor()
        name = type(self._stage).__name__
        for i, batch in enumerate(
            checked_batches(self._upstream, batch_size, allow_empty=True, what="upstream producer")
        ):
            result = process(batch)
            if result is None:
                continue
            if not isinstance(result, Batch):
                raise IntroscopeError(
                    f"pipeline stage {name} returned a {type(result).__name__} for batch {i}; "
                    f"a stage must return a Batch or None"
                )
            yield result

    def __repr__(self) -> str:
        return f"{self._upstream!r} -> {type(self._stage).__name__}"


def _flatten(stages: Iterable[object]) -> Iterator[PipelineStage]:
    for stage in stages:
        if isinstance(stage, (list, tuple)):
            yield from _flatten(stage)
        elif stage is None:
            continue
        elif isinstance(stage, PipelineStage):
            yield stage
        else:
            raise IntroscopeError(
                f"pipeline() takes PipelineStage objects after the producer, got "
                f"{type(stage).__name__}: {stage!r}"
            )


class _Pipeline:
    """A producer built from a source producer and a sequence of stages."""

    def __init__(self, source: Producer, stages: tuple[PipelineStage, ...]) -> None:
        self.source = source
        self.stages = stages
        producer = source
        for stage in stages:
            producer = stage._pipeline(producer)
        self._producer = producer

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        yield from checked_batches(self._producer, batch_size, allow_empty=True, what="pipeline")

    def __repr__(self) -> str:
        chain = " -> ".join([type(self.source).__name__] + [type(s).__name__ for s in self.stages])
        return f"pipeline({chain})"


def pipeline(producer: Producer, *stages: PipelineStage | Iterable[PipelineStage]) -> Producer:
    """Compose ``producer`` with ``stages`` (nested lists/tuples allowed) into a lazy producer.

    Nothing runs until the returned producer is called with a batch size and iterated.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, pipeline, producer_from_batches
        >>> from introscope.processors import Processor
        >>> source = producer_from_batches(Batch({"x": np.arange(4.0)}))
        >>> doubled = pipeline(source, Processor(lambda a: 2 * a))
        >>> [b.fields["x"] for b in doubled(batch_size=2)]
        [array([0., 2.]), array([4., 6.])]
    """
    if not callable(producer):
        raise IntroscopeError(
            f"pipeline()'s first argument must be a producer (callable as producer(batch_size)), "
            f"got {type(producer).__name__}"
        )
    if isinstance(producer, PipelineStage):
        raise IntroscopeError("pipeline()'s first argument must be a producer, not a stage")
    return _Pipeline(producer, tuple(_flatten(stages)))
