"""``multi_introspect``: run several introspectors on one pass over a producer."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeAlias, TypeVar, overload

from introscope.exceptions import IntroscopeError

from ._batch import Batch, concatenate_batches
from ._producer import Producer, check_batch_size, checked_batches
from ._producer_utils import resize_batches

__all__ = ["multi_introspect"]

_logger = logging.getLogger("introscope.base.multi_introspect")

_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)
_R1 = TypeVar("_R1")
_R2 = TypeVar("_R2")
_R3 = TypeVar("_R3")
_R4 = TypeVar("_R4")


class OnePassAccumulator(Protocol[_R_co]):
    """What ``multi_introspect`` takes besides callables: an accumulator such as ``IUA()`` or
    ``PFA.accumulator()``; ``finalize()`` gives the result."""

    def update_batch(self, batch: Batch, index: int, /) -> None: ...

    def finalize(self) -> _R_co: ...


#: A participant of ``multi_introspect``: a callable of a producer, or an accumulator.
IntrospectorArg: TypeAlias = "Callable[[Producer], _R] | OnePassAccumulator[_R]"

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


def _describe(introspector: object) -> str:
    func = getattr(introspector, "func", introspector)  # functools.partial
    name = getattr(func, "__qualname__", None) or type(func).__name__
    return name


def _owner_class(func: Any) -> Any:
    owner = getattr(func, "__self__", None)  # a classmethod bound to its class
    if isinstance(owner, type):
        return owner
    qualname = getattr(func, "__qualname__", "")
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    if module is None or "<" in qualname or "." not in qualname:
        return None
    target: Any = module
    for part in qualname.split(".")[:-1]:
        target = getattr(target, part, None)
    return target if isinstance(target, type) else None


def one_pass_accumulator(introspector: Any) -> tuple[Any, int | None] | None:
    """``(accumulator, batch size asked for)`` when ``introspector`` works in one pass, else None.

    An accumulator (anything with ``update_batch`` and ``finalize``) is one already; so is
    ``Cls.introspect`` or a ``functools.partial`` of it (keywords only) for a class that offers
    ``Cls.accumulator(**options)`` taking the options of ``introspect`` but ``batch_size``
    (IUA, PFA). Known by these names only, so base imports nothing from introspectors.
    """
    if callable(getattr(introspector, "update_batch", None)) and callable(
        getattr(introspector, "finalize", None)
    ):
        return introspector, None
    func: Any = introspector
    keywords: dict[str, Any] = {}
    if isinstance(introspector, functools.partial):
        if introspector.args:
            return None
        func, keywords = introspector.func, dict(introspector.keywords)
    cls = _owner_class(func)
    factory = getattr(cls, "accumulator", None)
    if cls is None or not callable(factory) or getattr(func, "__name__", "") != "introspect":
        return None
    if getattr(cls.introspect, "__func__", cls.introspect) is not getattr(func, "__func__", func):
        return None
    batch_size = keywords.pop("batch_size", None)
    if batch_size is None:
        param = inspect.signature(func).parameters.get("batch_size")
        if param is None or param.default is inspect.Parameter.empty:
            return None
        batch_size = param.default
    return factory(**keywords), check_batch_size(batch_size)


class _Recut:
    """Re-cut pushed batches into batches of exactly ``size`` rows (the last short), with their
    metadata and snapshots (an accumulator such as Duplicates keeps them)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.parts: list[Batch] = []
        self.rows = 0

    def push(self, batch: Batch) -> Iterator[Batch]:
        n, start = batch.batch_size, 0
        while start < n:
            take = min(self.size - self.rows, n - start)
            whole = start == 0 and take == n
            self.parts.append(batch if whole else batch.elements[start : start + take])
            self.rows += take
            start += take
            if self.rows == self.size:
                yield self._emit()

    def flush(self) -> Iterator[Batch]:
        if self.rows:
            yield self._emit()

    def _emit(self) -> Batch:
        parts, self.parts, self.rows = self.parts, [], 0
        if len(parts) == 1:
            return parts[0]
        keys = set(parts[0].fields)
        for part in parts[1:]:
            if set(part.fields) != keys:
                raise IntroscopeError(
                    f"the producer's batches have fields {sorted(keys)} and "
                    f"{sorted(part.fields)}; every batch must carry the same fields"
                )
        return concatenate_batches(parts)


def _single_pass(
    introspectors: tuple[Any, ...],
    plans: list[tuple[Any, int | None]],
    producer: Producer,
    batch_size: int | None,
) -> tuple[Any, ...]:
    """Every participant is an accumulator: one loop over the producer, no threads."""
    asked = [size for _, size in plans if size is not None]
    pull = batch_size or (max(asked) if asked else 32)
    accs = [acc for acc, _ in plans]
    recuts = [None if size in (None, pull) else _Recut(size) for _, size in plans]
    counts = [0] * len(accs)
    _logger.debug("one loop for %d accumulators at batch size %d", len(accs), pull)

    def feed(i: int, batch: Batch) -> None:
        try:
            accs[i].update_batch(batch, counts[i])
        except Exception as exc:
            raise IntroscopeError(
                f"introspector {i} ({_describe(introspectors[i])}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        counts[i] += 1

    for acc in accs:
        acc._defer_warnings = True
    try:
        batches = checked_batches(producer, pull, allow_empty=True)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception as exc:
                raise IntroscopeError(
                    f"the producer failed while feeding multi_introspect: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            for i, recut in enumerate(recuts):
                for piece in [batch] if recut is None else recut.push(batch):
                    feed(i, piece)
        for i, recut in enumerate(recuts):
            for piece in [] if recut is None else recut.flush():
                feed(i, piece)
    finally:
        for acc in accs:
            acc._defer_warnings = False
    for i, count in enumerate(counts):
        if count == 0:
            raise IntroscopeError(
                f"introspector {i} ({_describe(introspectors[i])}) failed: the producer yielded "
                f"no batch; there is no data to process"
            )
    results = []
    for acc in accs:
        warn = getattr(acc, "_warn_summary", None)
        if warn is not None:
            warn(stacklevel=4)
        results.append(acc.finalize())
    return tuple(results)


# Typed results for up to four participants (``iua, pfa = multi_introspect(...)``).
@overload
def multi_introspect(
    introspector: IntrospectorArg[_R1], /, *, producer: Producer, batch_size: int | None = None
) -> tuple[_R1]: ...


@overload
def multi_introspect(
    introspector1: IntrospectorArg[_R1],
    introspector2: IntrospectorArg[_R2],
    /,
    *,
    producer: Producer,
    batch_size: int | None = None,
) -> tuple[_R1, _R2]: ...


@overload
def multi_introspect(
    introspector1: IntrospectorArg[_R1],
    introspector2: IntrospectorArg[_R2],
    introspector3: IntrospectorArg[_R3],
    /,
    *,
    producer: Producer,
    batch_size: int | None = None,
) -> tuple[_R1, _R2, _R3]: ...


@overload
def multi_introspect(
    introspector1: IntrospectorArg[_R1],
    introspector2: IntrospectorArg[_R2],
    introspector3: IntrospectorArg[_R3],
    introspector4: IntrospectorArg[_R4],
    /,
    *,
    producer: Producer,
    batch_size: int | None = None,
) -> tuple[_R1, _R2, _R3, _R4]: ...


@overload
def multi_introspect(
    *introspectors: IntrospectorArg[Any],
    producer: Producer,
    batch_size: int | None = None,
) -> tuple[Any, ...]: ...


def multi_introspect(
    *introspectors: IntrospectorArg[Any],
    producer: Producer,
    batch_size: int | None = None,
) -> tuple[Any, ...]:
    """Run several introspectors on a single pass over ``producer``; return their results in order.

    Each introspector is a callable taking a producer, e.g. ``IUA.introspect`` or
    ``functools.partial(PFA.introspect, batch_size=64)``, or an accumulator (``IUA()``,
    ``PFA.accumulator()``). ``producer`` is called exactly once. When every introspector works
    in one pass (accumulators, and the ``introspect`` of IUA, PFA and other accumulator-based
    introspectors), one loop feeds each batch to each of them, re-cut to the batch size each
    asks for. Otherwise each runs in its own thread (concurrently, unlike DNIKit, which ran
    them in turn), with at most two batches queued per introspector.

    An introspector that stops reading early is simply no longer fed; one that calls its producer
    a second time after peeking at the first batch gets that batch again.

    Args:
        introspectors: callables of a producer, or accumulators.
        producer: the producer whose batches all introspectors share.
        batch_size: size to pull ``producer`` at; by default the largest size any introspector
            asks for. Introspectors asking for other sizes get re-cut batches.

    Raises:
        IntroscopeError: if the producer or an introspector fails; the original exception is the
            ``__cause__``, and every other introspector is stopped.

    Examples:
        >>> import numpy as np
        >>> from introscope.base import Batch, multi_introspect, producer_from_batches
        >>> from introscope.introspectors import IUA, DimensionReduction
        >>> rng = np.random.default_rng(0)
        >>> producer = producer_from_batches(Batch({"r": rng.normal(size=(20, 4))}))
        >>> pca = DimensionReduction.Strategy.PCA(2)
        >>> iua, dr = multi_introspect(
        ...     IUA.introspect,
        ...     lambda p: DimensionReduction.introspect(p, strategies=pca),
        ...     producer=producer,
        ...     batch_size=8,
        ... )
        >>> sorted(iua.results), type(dr).__name__
        (['r'], 'DimensionReduction')
    """
    if not introspectors:
        raise IntroscopeError("multi_introspect needs at least one introspector")
    plans = [one_pass_accumulator(introspector) for introspector in introspectors]
    for i, introspector in enumerate(introspectors):
        if not callable(introspector) and plans[i] is None:
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
    if all(plan is not None for plan in plans):
        return _single_pass(introspectors, plans, producer, batch_size)  # type: ignore[arg-type]
    for i, introspector in enumerate(introspectors):
        if not callable(introspector):
            raise IntroscopeError(
                f"introspector {i} is an accumulator; multi_introspect can mix accumulators only "
                f"with other one-pass introspectors. Pass its introspect function instead"
            )

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
        first_error = hub.errors[index]
        for other, err in hub.errors.items():
            if other != index:
                _logger.error("introspector %d also failed: %r", other, err)
        raise IntroscopeError(
            f"introspector {index} ({_describe(introspectors[index])}) failed: "
            f"{type(first_error).__name__}: {first_error}"
        ) from first_error
    return tuple(hub.results[i] for i in range(len(introspectors)))
