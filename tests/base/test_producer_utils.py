"""Producer utilities: accumulate, re-batch, elements, concatenate, subset, shuffle."""

import numpy as np
import pytest

from introscope.base import (
    Batch,
    accumulate_batches,
    concatenate_producers,
    produce_elements,
    producer_from_batches,
    rebatch,
    resize_batches,
    shuffle_producer,
    subset_producer,
)
from introscope.exceptions import IntroscopeError

ID = Batch.StdKeys.IDENTIFIER


def _data(n: int, start: int = 0) -> Batch:
    b = Batch.Builder({"x": np.arange(start, start + n, dtype=np.int64) * 2})
    b.metadata[ID] = [f"e{i}" for i in range(start, start + n)]
    return b.make_batch()


def _ragged(sizes, start: int = 0):
    """A producer that ignores the batch size asked and yields batches of ``sizes``."""

    def produce(batch_size):
        s = start
        for n in sizes:
            yield _data(n, s)
            s += n

    return produce


def _ids(batches):
    return [list(b.metadata[ID]) for b in batches]


def test_resize_batches_only_last_is_short():
    batches = [_data(3, 0), _data(1, 3), _data(7, 4), _data(2, 11)]
    out = list(resize_batches(batches, 4))
    assert [b.batch_size for b in out] == [4, 4, 4, 1]
    np.testing.assert_array_equal(np.concatenate([b.fields["x"] for b in out]), np.arange(13) * 2)
    assert sum(_ids(out), []) == [f"e{i}" for i in range(13)]


def test_resize_batches_passes_right_sized_batches_through_and_skips_empty():
    a = _data(4)
    empty = a.elements[0:0]
    out = list(resize_batches([a, empty, a], 4))
    assert out[0] is a and out[1] is a
    assert list(resize_batches([], 4)) == []
    with pytest.raises(IntroscopeError, match="batch_size"):
        list(resize_batches([a], 0))


def test_resize_batches_splits_one_large_batch():
    out = list(resize_batches([_data(10)], 3))
    assert [b.batch_size for b in out] == [3, 3, 3, 1]
    assert _ids(out)[-1] == ["e9"]


def test_resize_batches_mismatched_fields_is_a_clear_error():
    with pytest.raises(IntroscopeError, match="re-batch"):
        list(resize_batches([_data(1), Batch({"y": np.zeros(1)})], 2))


def test_rebatch_fixes_ragged_producer():
    calls = []

    def produce(batch_size):
        calls.append(batch_size)
        yield from _ragged([5, 1, 6])(batch_size)

    out = list(rebatch(produce)(4))
    assert [b.batch_size for b in out] == [4, 4, 4]
    assert calls == [4]
    list(rebatch(produce, source_batch_size=100)(3))
    assert calls == [4, 100]


def test_accumulate_batches():
    whole = accumulate_batches(_ragged([2, 3]), batch_size=2)
    assert whole.batch_size == 5
    np.testing.assert_array_equal(whole.fields["x"], [0, 2, 4, 6, 8])
    assert whole.metadata[ID] == ["e0", "e1", "e2", "e3", "e4"]
    with pytest.raises(IntroscopeError, match="no batch"):
        accumulate_batches(lambda n: iter(()))


def test_producer_from_batches_is_re_iterable():
    p = producer_from_batches([_data(3), _data(2, 3)])
    assert [b.batch_size for b in p(2)] == [2, 2, 1]
    assert [b.batch_size for b in p(10)] == [5]
    assert _ids(producer_from_batches(_data(2))(1)) == [["e0"], ["e1"]]
    with pytest.raises(IntroscopeError, match="item 1"):
        producer_from_batches([_data(1), "x"])


def test_produce_elements():
    elements = list(produce_elements(_ragged([2, 3]), batch_size=2))
    assert [e.metadata[ID] for e in elements] == ["e0", "e1", "e2", "e3", "e4"]
    assert [int(e.fields["x"]) for e in elements] == [0, 2, 4, 6, 8]


def test_concatenate_producers_rebatches_across_the_boundary():
    p = concatenate_producers(producer_from_batches(_data(3)), producer_from_batches(_data(4, 3)))
    out = list(p(2))
    assert [b.batch_size for b in out] == [2, 2, 2, 1]
    assert sum(_ids(out), []) == [f"e{i}" for i in range(7)]
    with pytest.raises(IntroscopeError, match="at least one"):
        concatenate_producers()
    with pytest.raises(IntroscopeError, match="argument 1"):
        concatenate_producers(p, 3)


def test_subset_by_indices_keeps_stream_order():
    p = subset_producer(_ragged([4, 4, 4]), [9, 0, 5, 6, 7])
    out = list(p(2))
    assert [b.batch_size for b in out] == [2, 2, 1]
    assert sum(_ids(out), []) == ["e0", "e5", "e6", "e7", "e9"]
    np.testing.assert_array_equal(np.concatenate([b.fields["x"] for b in out]), [0, 10, 12, 14, 18])


def test_subset_stops_pulling_once_all_indices_are_found():
    pulled = []

    def produce(batch_size):
        for i in range(100):
            pulled.append(i)
            yield _data(batch_size, i * batch_size)

    assert sum(_ids(subset_producer(produce, [1, 4])(3)), []) == ["e1", "e4"]
    assert pulled == [0, 1]


def test_subset_index_errors():
    with pytest.raises(IntroscopeError, match=r"\[12, 40\] are out of range.*only 12"):
        list(subset_producer(_ragged([6, 6]), [1, 12, 40])(4))
    with pytest.raises(IntroscopeError, match="non-negative"):
        subset_producer(_ragged([1]), [-1])
    with pytest.raises(IntroscopeError, match="repeat"):
        subset_producer(_ragged([1]), [0, 0])
    with pytest.raises(IntroscopeError, match="exactly one"):
        subset_producer(_ragged([1]))
    with pytest.raises(IntroscopeError, match="exactly one"):
        subset_producer(_ragged([1]), [0], predicate=lambda e: True)
    with pytest.raises(IntroscopeError, match="integers"):
        subset_producer(_ragged([1]), [0.5])


def test_subset_by_predicate():
    p = subset_producer(_ragged([3, 5]), predicate=lambda e: int(e.fields["x"]) % 3 == 0)
    out = list(p(2))
    assert sum(_ids(out), []) == ["e0", "e3", "e6"]
    assert [b.batch_size for b in out] == [2, 1]
    assert list(subset_producer(_ragged([3]), predicate=lambda e: False)(2)) == []


def test_shuffle_is_a_seeded_permutation_stable_across_passes():
    p = shuffle_producer(_ragged([5, 5]), seed=3)
    first = sum(_ids(p(4)), [])
    assert [b.batch_size for b in p(4)] == [4, 4, 2]
    assert sorted(first) == sorted(f"e{i}" for i in range(10))
    assert first != [f"e{i}" for i in range(10)]
    expected = [f"e{i}" for i in np.random.default_rng(3).permutation(10)]
    assert first == expected
    assert sum(_ids(p(3)), []) == first  # same order whatever the batch size
    # fields move with their metadata
    for b in p(4):
        assert [f"e{x // 2}" for x in b.fields["x"]] == list(b.metadata[ID])
    unseeded = shuffle_producer(_ragged([5, 5]))
    assert sum(_ids(unseeded(4)), []) == sum(_ids(unseeded(10)), [])
    assert list(shuffle_producer(lambda n: iter(()), seed=1)(2)) == []
    with pytest.raises(IntroscopeError, match="seed"):
        shuffle_producer(_ragged([1]), seed="a")
