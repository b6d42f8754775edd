"""multi_introspect: one pass, results in order, early stop, failures, no deadlock."""

import functools
import threading

import numpy as np
import pytest

from introscope.base import Batch, multi_introspect, peek_first_batch
from introscope.exceptions import IntroscopeError

pytestmark = pytest.mark.timeout(60)


class Source:
    """n elements 0..n-1 in field "x"; records every call and every batch it yields."""

    def __init__(self, n: int = 100, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.calls: list[int] = []
        self.yielded = 0

    def __call__(self, batch_size: int):
        self.calls.append(batch_size)
        for i, start in enumerate(range(0, self.n, batch_size)):
            if i == self.fail_at:
                raise OSError("disk on fire")
            self.yielded += 1
            yield Batch({"x": np.arange(start, min(start + batch_size, self.n), dtype=np.int64)})


def _bounded(fn, timeout: float = 20.0):
    """Run fn() in a thread; fail the test (instead of hanging) if it does not finish."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "multi_introspect deadlocked"
    if "error" in box:
        raise box["error"]
    return box["value"]


def total(producer, batch_size=10):
    return int(sum(int(b.fields["x"].sum()) for b in producer(batch_size)))


def sizes(producer, batch_size=10):
    return [b.batch_size for b in producer(batch_size)]


def maximum(producer, batch_size=10):
    return int(max(int(b.fields["x"].max()) for b in producer(batch_size)))


def test_results_in_order_and_producer_called_once():
    source = Source(95)
    result = _bounded(lambda: multi_introspect(total, sizes, maximum, producer=source))
    assert result == (sum(range(95)), [10] * 9 + [5], 94)
    assert source.calls == [10]
    assert source.yielded == 10


def test_different_batch_sizes_are_recut_from_one_pass():
    source = Source(10)
    result = _bounded(
        lambda: multi_introspect(
            functools.partial(sizes, batch_size=4),
            functools.partial(sizes, batch_size=3),
            producer=source,
        )
    )
    assert result == ([4, 4, 2], [3, 3, 3, 1])
    assert source.calls == [4]  # the largest size asked
    source2 = Source(10)
    result = _bounded(
        lambda: multi_introspect(
            functools.partial(sizes, batch_size=4), producer=source2, batch_size=7
        )
    )
    assert result == ([4, 4, 2],)
    assert source2.calls == [7]


def test_introspector_that_stops_early_does_not_block_the_others():
    source = Source(1000)

    def first_only(producer):
        for b in producer(10):
            return int(b.fields["x"][0])

    result = _bounded(lambda: multi_introspect(first_only, total, producer=source))
    assert result == (0, sum(range(1000)))
    assert source.calls == [10] and source.yielded == 100


def test_introspector_that_never_reads():
    source = Source(20)
    result = _bounded(lambda: multi_introspect(lambda p: "idle", total, producer=source))
    assert result == ("idle", sum(range(20)))
    nothing = Source(20)
    assert _bounded(lambda: multi_introspect(lambda p: 1, producer=nothing)) == (1,)
    assert nothing.calls == []


def test_failure_surfaces_with_cause_and_stops_the_others():
    source = Source(10_000)
    seen = []

    def failing(producer):
        for i, _ in enumerate(producer(10)):
            if i == 2:
                raise ValueError("bad statistics")

    def slow_reader(producer):
        for b in producer(10):
            seen.append(b.batch_size)
        return "finished"

    with pytest.raises(IntroscopeError, match="introspector 0 .*failing.*bad statistics") as info:
        _bounded(lambda: multi_introspect(failing, slow_reader, producer=source))
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "bad statistics"
    assert source.yielded < 20  # the pass stopped soon after the failure
    assert len(seen) < 20


def test_failure_before_reading():
    source = Source(10)

    def broken(producer):
        raise KeyError("config")

    with pytest.raises(IntroscopeError, match="introspector 1") as info:
        _bounded(lambda: multi_introspect(total, broken, producer=source))
    assert isinstance(info.value.__cause__, KeyError)


def test_producer_failure():
    source = Source(100, fail_at=3)
    with pytest.raises(IntroscopeError, match="producer failed.*disk on fire") as info:
        _bounded(lambda: multi_introspect(total, sizes, producer=source))
    assert isinstance(info.value.__cause__, OSError)


def test_peek_then_full_pass():
    source = Source(25)

    def peeking(producer):
        first = peek_first_batch(producer, batch_size=2)
        return first.fields["x"].tolist(), total(producer, 10)

    result = _bounded(lambda: multi_introspect(peeking, sizes, producer=source))
    assert result == (([0, 1], sum(range(25))), [10, 10, 5])
    assert source.calls == [10]


def test_second_pass_is_a_clear_error():
    source = Source(50)

    def two_passes(producer):
        return total(producer), total(producer)

    with pytest.raises(IntroscopeError, match="introspector 0") as info:
        _bounded(lambda: multi_introspect(two_passes, total, producer=source))
    assert "only once" in str(info.value.__cause__)
    assert "Cacher" in str(info.value.__cause__)


def test_argument_errors():
    with pytest.raises(IntroscopeError, match="at least one"):
        multi_introspect(producer=Source())
    with pytest.raises(IntroscopeError, match="introspector 1 must be callable"):
        multi_introspect(total, 3, producer=Source())
    with pytest.raises(IntroscopeError, match="producer must be callable"):
        multi_introspect(total, producer=[1])
    with pytest.raises(IntroscopeError, match="batch_size"):
        multi_introspect(total, producer=Source(), batch_size=0)


def test_batches_are_shared_not_copied():
    source = Source(6)
    seen: dict[int, list] = {0: [], 1: []}

    def keep(i):
        def run(producer):
            seen[i].extend(producer(3))

        return run

    _bounded(lambda: multi_introspect(keep(0), keep(1), producer=source))
    assert len(seen[0]) == len(seen[1]) == 2
    assert all(a is b for a, b in zip(seen[0], seen[1], strict=True))


def test_recut_batches_keep_their_metadata_in_the_single_loop():
    # Duplicates keeps each set's identifiers; re-cut from batches of 7 into batches of 10,
    # they must be those of a Duplicates pass of its own.
    from introscope.introspectors import IUA, Duplicates

    rng = np.random.default_rng(0)
    x = rng.random((60, 4)).astype(np.float32)
    x[30:40] = x[:10] + 1e-6  # ten near-copies

    def producer(batch_size):
        for lo in range(0, len(x), batch_size):
            builder = Batch.Builder({"x": x[lo : lo + batch_size]})
            ids = [f"id{i}" for i in range(lo, min(lo + batch_size, len(x)))]
            builder.metadata[Batch.StdKeys.IDENTIFIER] = ids
            yield builder.make_batch()

    dup = functools.partial(Duplicates.introspect, batch_size=10)
    together, _ = multi_introspect(dup, IUA.introspect, producer=producer, batch_size=7)
    alone = Duplicates.introspect(producer, batch_size=10)

    def ids(result):
        return [s.batch.metadata[Batch.StdKeys.IDENTIFIER] for s in result.results["x"]]

    assert ids(together) == ids(alone) and len(ids(alone)) >= 10
