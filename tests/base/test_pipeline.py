"""pipeline(): laziness, stage order, flattening and the errors for bad producers and stages."""

import numpy as np
import pytest

from introscope.base import Batch, PipelineStage, peek_first_batch, pipeline
from introscope.exceptions import IntroscopeError


class CountingProducer:
    def __init__(self, n: int = 10) -> None:
        self.data = np.arange(n, dtype=np.float64)
        self.calls: list[int] = []
        self.yielded = 0

    def __call__(self, batch_size: int):
        self.calls.append(batch_size)
        for start in range(0, len(self.data), batch_size):
            self.yielded += 1
            yield Batch({"x": self.data[start : start + batch_size]})


class Affine(PipelineStage):
    """x -> x * scale + shift, recording how many batches it saw."""

    def __init__(self, scale: float = 1.0, shift: float = 0.0) -> None:
        self.scale, self.shift = scale, shift
        self.seen = 0
        self.processors_made = 0

    def _get_batch_processor(self):
        self.processors_made += 1

        def process(batch: Batch) -> Batch:
            self.seen += 1
            b = Batch.Builder(base=batch)
            b.fields["x"] = batch.fields["x"] * self.scale + self.shift
            return b.make_batch()

        return process


class DropOdd(PipelineStage):
    def _get_batch_processor(self):
        counter = iter(range(10**6))
        return lambda batch: batch if next(counter) % 2 == 0 else None


def _xs(producer, batch_size):
    return [b.fields["x"].tolist() for b in producer(batch_size)]


def test_pipeline_is_lazy():
    source = CountingProducer()
    stage = Affine(2.0)
    piped = pipeline(source, stage)
    assert source.calls == [] and stage.processors_made == 0
    it = piped(4)
    assert source.calls == [] and stage.seen == 0  # calling makes an iterator, nothing runs
    first = next(iter(it))
    assert first.fields["x"].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert source.calls == [4] and source.yielded == 1 and stage.seen == 1


def test_stages_apply_in_order():
    source = CountingProducer(4)
    # (x * 2) + 1 then (.. * 10): order matters
    assert _xs(pipeline(source, Affine(2.0, 1.0), Affine(10.0)), 4) == [[10.0, 30.0, 50.0, 70.0]]
    assert _xs(pipeline(source, Affine(10.0), Affine(2.0, 1.0)), 4) == [[1.0, 21.0, 41.0, 61.0]]


def test_nested_lists_are_flattened_and_none_skipped():
    source = CountingProducer(2)
    piped = pipeline(source, [Affine(2.0), (None, [Affine(1.0, 1.0)])], None, Affine(3.0))
    assert _xs(piped, 2) == [[3.0, 9.0]]
    assert "Affine -> Affine -> Affine" in repr(piped)


def test_pipelines_can_be_re_run_and_nested():
    source = CountingProducer(6)
    inner = pipeline(source, Affine(2.0))
    outer = pipeline(inner, Affine(1.0, 1.0))
    assert _xs(outer, 4) == [[1.0, 3.0, 5.0, 7.0], [9.0, 11.0]]
    assert _xs(outer, 3) == [[1.0, 3.0, 5.0], [7.0, 9.0, 11.0]]
    assert source.calls == [4, 3]


def test_stage_returning_none_drops_the_batch():
    assert _xs(pipeline(CountingProducer(5), DropOdd()), 2) == [[0.0, 1.0], [4.0]]


def test_non_batch_item_error_names_the_batch_index():
    def bad(batch_size):
        yield Batch({"x": np.zeros(batch_size)})
        yield Batch({"x": np.zeros(batch_size)})
        yield {"x": np.zeros(batch_size)}

    with pytest.raises(IntroscopeError, match=r"dict as batch 2"):
        list(pipeline(bad, Affine())(2))


def test_stage_returning_a_non_batch_names_the_stage_and_batch():
    class Bad(PipelineStage):
        def _get_batch_processor(self):
            return lambda batch: batch.fields["x"]

    with pytest.raises(IntroscopeError, match=r"stage Bad returned a ndarray for batch 0"):
        list(pipeline(CountingProducer(3), Bad())(2))


def test_empty_producer():
    def empty(batch_size):
        return iter(())

    piped = pipeline(empty, Affine())
    assert list(piped(4)) == []  # a pipeline just passes "nothing" on...
    with pytest.raises(IntroscopeError, match="yielded no batch"):
        peek_first_batch(piped)  # ...and the consumer says there is no data


def test_a_producer_that_returns_no_iterable_is_named():
    from introscope.introspectors import IUA

    with pytest.raises(IntroscopeError, match="producer returned a NoneType, not an iterable"):
        peek_first_batch(lambda batch_size: None)  # forgot to yield or return
    with pytest.raises(IntroscopeError, match="IUA producer returned a NoneType"):
        IUA.introspect(lambda batch_size: None)


def test_bad_arguments():
    with pytest.raises(IntroscopeError, match="first argument must be a producer"):
        pipeline([1, 2, 3])
    with pytest.raises(IntroscopeError, match="first argument must be a producer.*got Affine"):
        pipeline(Affine(), Affine())
    with pytest.raises(IntroscopeError, match="takes PipelineStage objects.*int"):
        pipeline(CountingProducer(), Affine(), 3)
    with pytest.raises(IntroscopeError, match="batch_size must be a positive int"):
        list(pipeline(CountingProducer(), Affine())(0))


def test_stage_without_processor_says_what_to_implement():
    class Empty(PipelineStage):
        pass

    with pytest.raises(NotImplementedError, match="_get_batch_processor"):
        list(pipeline(CountingProducer(2), Empty())(2))


def test_peek_first_batch_runs_only_what_it_needs():
    source = CountingProducer(10)
    stage = Affine(1.0, 1.0)
    first = peek_first_batch(pipeline(source, stage), batch_size=3)
    assert first.fields["x"].tolist() == [1.0, 2.0, 3.0]
    assert source.yielded == 1 and stage.seen == 1
