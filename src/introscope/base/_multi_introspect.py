"""``multi_introspect``: run several introspectors on one pass over a producer."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from introscope.exceptions import IntroscopeError

from ._batch import Batch
from ._producer import Producer, check_batch_size, checked_batches
from ._producer_utils import resize_batches

__all__ = ["multi_introspect"]

_logger = logging.getLogger("introscope.base.multi_introspect")

_R = TypeVar("_R")

#: source batches an introspector may fall behind by before the producer waits for it
_CAPACITY = 2


class _Aborted(IntroscopeError):
    """Raised inside an introspector's reads once another introspector or the producer failed."""


class _View:
    """What one introspector sees: a producer fed, batch by batch, from the shared pass."""

    def __init__(self, hub: _Hub, index: int) -> None:
        self.hub = hub
        self.index = index
        self.requested: int | None = None
        self.queue: deque[tuple[int, Batch]] = deque()
        self.consumed = 0  # source batches handed to the introspector so far
        self.generation = 0  # bumped by every call, so a superseded iterator stops
        self.finished = False

    def __call__(self, batch_size: int) -> Iterator[Batch]:
        check_batch_size(batch_size)
        hub = self.hub
        with hub.cond:
            if hub.abort:
                raise _Aborted("stopped: another introspector or the producer failed")
            if self.requested is None:
                self.requested = batch_size
                hub.cond.notify_all()
            elif self.consumed > 1:
                raise IntroscopeError(
                    f"introspector {self.index} called its producer again after reading "
                    f"{self.consumed} batches; multi_introspect reads the producer only once. "
                    f"Cache the producer with Cacher, or run this introspector on its own"
                )
            self.generation += 1
            generation = self.generation
            replay_first = self.consumed == 1
        return resize_batches(self._stream(generation, replay_first), batch_size)

    def _stream(self, generation: int, replay_first: bool) -> Iterator[Batch]:
        hub = self.hub
        if replay_first:
            # A second call after a peek at the first batch: serve it again from the hub.
            assert hub.first_batch is not None
            yield hub.first_batch
        while True:
            with hub.cond:
                while not self.queue and not hub.source_done and not hub.abort:
                    hub.cond.wait()
                if hub.abort:
                    raise _Aborted("stopped: another introspector or the producer failed")
                if generation != self.generation:
                    raise IntroscopeError(
                        f"introspector {self.index} read from an iterator of its producer "
                        f"after calling the producer again"
                    )
                if not self.queue:
                    return
                seq, batch = self.queue.popleft()
                self.consumed = max(self.consumed, seq + 1)
                hub.cond.notify_all()
            yield batch

    def __repr__(self) -> str:
        return f"multi_introspect view {self.index}"


class _Hub:
    """State shared by the producer side and the introspector threads, under one condition."""

    def __init__(self, count: int) -> None:
        self.cond = threading.Condition()
        self.views = [_View(self, i) for i in range(count)]
        self.first_batch: Batch | None = None
        self.source_done = False
        self.abort = False
        self.errors: dict[int, BaseException] = {}
        self.results: dict[int, Any] = {}

    def run_introspector(self, view: _View, introspector: Callable[[Producer], Any]) -> None:
        try:
            result = introspector(view)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            with self.cond:
                if not (isinstance(exc, _Aborted) and self.abort):
                    self.errors[view.index] = exc
                    self.abort = True
                view.finished = True
                view.queue.clear()
                self.cond.notify_all()
            return
        with self.cond:
            self.results[view.index] = result
            view.finished = True
            view.queue.clear()  # an introspector that stopped early needs no more batches
            self.cond.notify_all()

    def wait_for_requests(self) -> list[int]:
        """Wait until every introspector asked for batches or finished; return the sizes asked."""
        with self.cond:
            while not self.abort and not all(
                v.requested is not None or v.finished for v in self.views
            ):
                self.cond.wait()
            return [v.requested for v in self.views if v.requested is not None]

    def feed(self, producer: Producer, batch_size: int) -> None:
        """Pull ``producer`` once and hand every batch to every introspector still reading."""
        batches = checked_batches(producer, batch_size, allow_empty=True)
        try:
            for seq, batch in enumerate(batches):
                with self.cond:
                    if seq == 0:
                        self.first_batch = batch
                    for view in self.views:
                        while not view.finished and not self.abort and len(view.queue) >= _CAPACITY:
                            self.cond.wait()
                        if self.abort:
                            return
                        if not view.finished:
                            view.queue.append((seq, batch))
                            self.cond.notify_all()
                    if all(v.finished for v in self.views):
                        return
        finally:
            batches.close()
            with self.cond:
                self.source_done = True
                self.cond.notify_all()


def _describe(introspector: Callable[..., Any]) -> str:
    func = getattr(introspector, "func", introspector)  # functools.partial
    name = getattr(func, "__qualname__", None) or type(func).__name__
    return name


def multi_introspect(
    *introspectors: Callable[[Producer], Any],
    producer: Producer,
    batch_size: int | None = None,
) -> tuple[Any, ...]:
    """Run several introspectors on a single pass over ``producer``; return their results in order.

    Each introspector is a callable taking a producer, e.g. ``IUA.introspect`` or
    ``functools.partial(PFA.introspect, batch_size=64)``. ``producer`` is called exactly once;
    each batch is handed to every introspector, which run in their own threads (concurrently,
    unlike DNIKit, which ran them in turn), with at most two batches queued per introspector.

    An introspector that stops reading early is simply no longer fed; one that calls its producer
    a second time after peeking at the first batch gets that batch again.

    Args:
        introspectors: callables of a producer.
        producer: the producer whose batches all introspectors share.
        batch_size: size to pull ``producer`` at; by default the largest size any introspector
            asks for. Introspectors asking for other sizes get re-cut batches.

    Raises:
        IntroscopeError: if the producer or an introspector fails; the original exception is the
            ``__cause__``, and every other introspector is stopped.
    """
    if not introspectors:
        raise IntroscopeError("multi_introspect needs at least one introspector")
    for i, introspector in enumerate(introspectors):
        if not callable(introspector):
            raise IntroscopeError(
                f"introspector {i} must be callable with a producer, "
                f"got {type(introspector).__name__}"
            )
    if not callable(producer):
        raise IntroscopeError(
            f"producer must be callable as producer(batch_size), got {type(producer).__name__}"
        )
    if batch_size is not None:
        check_batch_size(batch_size)

    hub = _Hub(len(introspectors))
    threads = [
        threading.Thread(
            target=hub.run_introspector,
            args=(view, introspector),
            name=f"introscope-multi-introspect-{i}",
            daemon=True,
        )
        for i, (view, introspector) in enumerate(zip(hub.views, introspectors))
    ]
    source_error: BaseException | None = None
    try:
        for thread in threads:
            thread.start()
        sizes = hub.wait_for_requests()
        if sizes and not hub.abort:
            pull = batch_size or max(sizes)
            _logger.debug("feeding %d introspectors at batch size %d", len(threads), pull)
            try:
                hub.feed(producer, pull)
            except Exception as exc:  # noqa: BLE001 - re-raised below once threads stopped
                source_error = exc
                with hub.cond:
                    hub.abort = True
                    hub.cond.notify_all()
    except BaseException:
        # KeyboardInterrupt and the like: stop the introspectors and leave without waiting.
        with hub.cond:
            hub.abort = True
            hub.cond.notify_all()
        raise
    for thread in threads:
        thread.join()

    if source_error is not None:
        raise IntroscopeError(
            f"the producer failed while feeding multi_introspect: "
            f"{type(source_error).__name__}: {source_error}"
        ) from source_error
    if hub.errors:
        index = next(iter(hub.errors))  # the first to fail; later failures may be its echoes
        exc = hub.errors[index]
        for other, err in hub.errors.items():
            if other != index:
                _logger.error("introspector %d also failed: %r", other, err)
        raise IntroscopeError(
            f"introspector {index} ({_describe(introspectors[index])}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return tuple(hub.results[i] for i in range(len(introspectors)))
